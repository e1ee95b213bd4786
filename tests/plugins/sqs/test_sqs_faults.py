"""Faults over real HTTP: SQS unreachable then back empty, visibility expiring mid-job, garbage."""

from __future__ import annotations

import asyncio
import collections
import logging
import time
from typing import TYPE_CHECKING, Any

import pytest
from pydantic import BaseModel
from sqs_support import CallCounter

from polyqueue.broker import Message
from polyqueue.testing.helpers import eventually, running_worker

if TYPE_CHECKING:
    from collections.abc import Callable

    from sqs_support import MotoProcess

    from polyqueue import Polyqueue

pytestmark = pytest.mark.slow

RECOVERY = {
    "queue_backend": "sqs",
    "republish_after": 5.0,  # moto slows down as duplicate notices pile up: not too eager
    "maintenance_interval": 0.5,
    "heartbeat_interval": 0.2,
}


class Item(BaseModel):
    n: int


def counting_app(
    make_app: Callable[..., Polyqueue], hold: float = 0.0, **settings: Any
) -> tuple[Polyqueue, collections.Counter[int]]:
    """An app whose `count` handler records how often each item ran (holding `hold` s)."""
    app = make_app(**{**RECOVERY, **settings})
    runs: collections.Counter[int] = collections.Counter()

    @app.register("count")
    async def count(payload: Item) -> None:
        runs[payload.n] += 1
        await asyncio.sleep(hold)

    return app, runs


async def succeeded(app: Polyqueue) -> int:
    return int(
        await app.store.pool.fetchval(
            "SELECT count(*) FROM polyqueue.jobs WHERE status = 'succeeded'"
        )
    )


async def assert_each_succeeded_once(app: Polyqueue, ids: list[int], runs: Any) -> None:
    rows = await app.store.pool.fetch(
        "SELECT status, attempt FROM polyqueue.jobs WHERE id = any($1::bigint[])", ids
    )
    assert len(rows) == len(ids)
    assert {row["status"] for row in rows} == {"succeeded"}
    assert {row["attempt"] for row in rows} == {1}
    assert set(runs.values()) == {1}  # each ran exactly once
    assert len(runs) == len(ids)


async def test_sqs_unreachable_then_back_empty(
    make_app, moto_process: MotoProcess, sqs_prefix: str, monkeypatch
) -> None:
    moto_process.start()
    monkeypatch.setenv("POLYQUEUE_SQS_ENDPOINT_URL", moto_process.url)
    monkeypatch.setenv("POLYQUEUE_SQS_REGION", "us-east-1")
    monkeypatch.setenv("POLYQUEUE_SQS_QUEUE_PREFIX", sqs_prefix)
    monkeypatch.setenv("POLYQUEUE_SQS_CREATE_QUEUES", "true")  # the restarted server is empty
    monkeypatch.setenv("POLYQUEUE_SQS_MAX_ATTEMPTS", "1")
    monkeypatch.setenv("POLYQUEUE_SQS_CONNECT_TIMEOUT", "1")
    worker_app, runs = counting_app(make_app)
    producer, _ = counting_app(make_app)
    ids: list[int] = []
    async with worker_app, producer, running_worker(worker_app, concurrency=10):
        for n in range(0, 100, 20):
            ids += await producer.enqueue_many("count", [Item(n=i) for i in range(n, n + 20)])
        moto_process.kill()
        for n in range(100, 200, 20):  # enqueue commits while SQS is unreachable
            ids += await producer.enqueue_many("count", [Item(n=i) for i in range(n, n + 20)])
        assert producer.publisher.pending > 0  # the notices wait for SQS to come back
        await asyncio.sleep(1.5)  # workers back off meanwhile
        moto_process.start()  # same port, no queues, no messages
        for n in range(200, 300, 20):
            ids += await producer.enqueue_many("count", [Item(n=i) for i in range(n, n + 20)])
        await eventually(lambda: _at_least(worker_app, 300), timeout=120)
        await eventually(lambda: _none_pending(producer), timeout=30)
        await assert_each_succeeded_once(worker_app, ids, runs)


async def _at_least(app: Polyqueue, count: int) -> bool:
    return await succeeded(app) >= count


async def _none_pending(app: Polyqueue) -> bool:
    return app.publisher.pending == 0


async def test_visibility_expiring_mid_job_does_not_run_it_twice(
    make_app, sqs_env: str, monkeypatch, caplog
) -> None:
    monkeypatch.setenv("POLYQUEUE_SQS_VISIBILITY_TIMEOUT", "1")  # SQS's, whatever the lease
    # No heartbeat, so no visibility extension, while the job holds; the lease and the stale
    # limit must exceed the heartbeat interval (the settings refuse anything else).
    slow = {"heartbeat_interval": 30.0, "lease_seconds": 60.0, "worker_stale_after": 90.0}
    first, runs = counting_app(make_app, hold=4.0, **slow)
    second, second_runs = counting_app(make_app, hold=4.0, **slow)
    runs_total = collections.Counter[int]()
    caplog.set_level(logging.INFO, logger="polyqueue.worker")
    async with first, second:
        job_id = await first.enqueue("count", Item(n=1))
        async with running_worker(first, concurrency=1):  # busy: it receives nothing more
            await eventually(lambda: _status_is(first, job_id, "running"), timeout=20)
            async with running_worker(second, concurrency=1):
                job = await first.wait_for(job_id, timeout=30)
        runs_total.update(runs)
        runs_total.update(second_runs)
        assert job.status == "succeeded"
        assert runs_total == {1: 1}  # the redelivered notice ran nothing
        assert f"dropping notice of job {job_id} (running)" in caplog.text


async def _status_is(app: Polyqueue, job_id: int, status: str) -> bool:
    return (await app.get_job(job_id)).status == status


async def test_garbage_and_unknown_job_ids_are_deleted_and_the_worker_lives(
    make_app, sqs_env: str
) -> None:
    app, runs = counting_app(make_app)
    async with app:
        queue = app.settings.default_queue
        garbage = [b"not json", b"[1, 2]", b'{"job_id": "seven"}', b'{"job_id": 987654321}']
        await app.broker.publish([Message(queue, body) for body in garbage])
        async with running_worker(app, concurrency=2):
            job_id = await app.enqueue("count", Item(n=0))
            assert (await app.wait_for(job_id, timeout=20)).status == "succeeded"
            await eventually(lambda: _sqs_queue_empty(app, queue), timeout=20)
        assert runs == {0: 1}


async def _sqs_queue_empty(app: Polyqueue, queue: str) -> bool:
    client = app.broker.client  # type: ignore[attr-defined]
    reply = await client.raw.get_queue_attributes(
        QueueUrl=await client.queue_url(queue),
        AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"],
    )
    return all(value == "0" for value in reply["Attributes"].values())


@pytest.mark.timeout(300)
async def test_sqs_calls_per_job_during_a_drain(make_app, sqs_env: str) -> None:
    deployed = {"lease_seconds": 30.0}  # the default lease, so visibility behaves as deployed
    producer, _ = counting_app(make_app, **deployed)
    worker_app, runs = counting_app(make_app, heartbeat_interval=1.0, **deployed)
    total = 300
    async with producer, worker_app:
        produced, consumed = CallCounter(), CallCounter()
        produced.attach(producer.broker.client.raw)  # type: ignore[attr-defined]
        consumed.attach(worker_app.broker.client.raw)  # type: ignore[attr-defined]
        for start in range(0, total, 100):
            await producer.enqueue_many("count", [Item(n=n) for n in range(start, start + 100)])
        started = time.monotonic()
        async with running_worker(worker_app, concurrency=10):
            await eventually(lambda: _at_least(worker_app, total), timeout=120)
        elapsed = time.monotonic() - started
    calls = produced.calls + consumed.calls
    per_job = sum(calls.values()) / total
    setup = calls["CreateQueue"] + calls["GetQueueUrl"]  # once per queue and process
    print(  # noqa: T201  (the figure is the point of this test; run with -s to see it)
        f"\nSQS calls per job: producer {produced.total / total:.2f} {dict(produced.calls)};"
        f" worker {consumed.total / total:.2f} {dict(consumed.calls)}; total {per_job:.2f}"
        f" ({(sum(calls.values()) - setup) / total:.2f} without queue setup);"
        f" {total / elapsed:.0f} jobs/s on moto"
    )
    assert len(runs) == total
    assert produced.calls["SendMessageBatch"] == total / 10  # batches of ten
    # One SendMessageBatch, ReceiveMessage and DeleteMessageBatch per ten jobs is the floor
    # (0.3); 0.31 here with the queue setup and the last, empty long poll. A machine too slow
    # to run ten jobs a second makes smaller receives and deletes: hence the margin.
    assert per_job < 0.6
