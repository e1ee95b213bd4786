"""Faults, end to end on `queue_backend="azure"` with the fake namespace (the test seam)."""

from __future__ import annotations

import asyncio
from collections import Counter

from azure.servicebus.exceptions import (
    OperationTimeoutError,
    ServiceBusConnectionError,
    ServiceBusServerBusyError,
)
from azure_fake import FakeNamespace
from azure_support import running_worker
from pydantic import BaseModel

from polyqueue import JobStatus, Polyqueue
from polyqueue.testing.helpers import eventually
from polyqueue_azure import AzureBroker

RECOVERY = {"republish_after": 1.0, "maintenance_interval": 0.2}


class Item(BaseModel):
    n: int


def build(make_app, runs: Counter[int], seconds: float = 0.0) -> Polyqueue:
    app = make_app(queue_backend="azure", **RECOVERY)

    @app.register("items.work")
    async def work(payload: Item) -> int:
        runs[payload.n] += 1
        await asyncio.sleep(seconds)
        return payload.n

    return app


async def test_jobs_run_through_the_azure_broker(make_app, azure_env: FakeNamespace) -> None:
    runs: Counter[int] = Counter()
    async with build(make_app, runs) as app, running_worker(app, concurrency=4):
        assert isinstance(app.broker, AzureBroker)
        ids = await app.enqueue_many("items.work", [Item(n=n) for n in range(20)])
        for n, job_id in enumerate(ids):
            assert (await app.wait_for(job_id, timeout=30)).status is JobStatus.SUCCEEDED
            assert await app.get_job_result(job_id) == n
    assert runs == Counter(range(20))
    assert azure_env.messages("default") == []
    assert azure_env.calls["renew"] == 0  # quick jobs never needed their lock renewed


async def test_a_lock_lost_mid_job_still_writes_one_outcome(
    make_app, azure_env: FakeNamespace
) -> None:
    runs: Counter[int] = Counter()
    first, second = build(make_app, runs, seconds=2.5), build(make_app, runs, seconds=2.5)
    async with first, second, running_worker(first, concurrency=2):
        job_id = await first.enqueue("items.work", Item(n=1))
        await eventually(lambda: runs[1] == 1)
        await eventually(lambda: azure_env.calls["renew"] >= 1)  # the heartbeat renews the lock
        assert azure_env.expire_locks() == 1  # renewal fails from now on: the lock is lost
        async with running_worker(second):  # the redelivered notice may land on either worker
            job = await first.wait_for(job_id, timeout=30)
            await eventually(lambda: azure_env.messages("default") == [])
    assert job.status is JobStatus.SUCCEEDED
    assert job.attempt == 1  # one claim: the redelivery found the job running, then finished
    assert runs == Counter({1: 1})
    assert azure_env.delivered >= 2  # the notice did come back while the job ran
    assert not azure_env.dead_letters


async def test_transient_sdk_errors_are_retried_and_every_job_runs_once(
    make_app, azure_env: FakeNamespace
) -> None:
    runs: Counter[int] = Counter()
    for operation in ("send", "receive", "complete", "create_batch"):
        azure_env.fail(
            operation,
            ServiceBusConnectionError(message="link detached"),
            OperationTimeoutError(message="timed out"),
            ServiceBusServerBusyError(message="busy"),
        )
    async with build(make_app, runs) as app, running_worker(app, concurrency=4):
        ids = await app.enqueue_many("items.work", [Item(n=n) for n in range(10)])
        for job_id in ids:
            assert (await app.wait_for(job_id, timeout=30)).status is JobStatus.SUCCEEDED
    assert runs == Counter(range(10))
    assert azure_env.calls["send"] >= 4
    assert azure_env.calls["complete"] >= 13


async def test_a_broker_down_longer_than_the_retries_loses_no_job(
    make_app, azure_env: FakeNamespace
) -> None:
    runs: Counter[int] = Counter()
    azure_env.fail("send", *[ServiceBusConnectionError(message="down")] * 12)
    async with build(make_app, runs) as app:
        job_id = await app.enqueue("items.work", Item(n=5))
        assert app.publisher.pending == 1  # kept for the publisher's own retry loop
        async with running_worker(app):
            assert (await app.wait_for(job_id, timeout=30)).status is JobStatus.SUCCEEDED
    assert runs == Counter({5: 1})
