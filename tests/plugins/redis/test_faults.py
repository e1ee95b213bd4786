"""Faults against real servers: Redis flushed mid-run, killed and restarted, garbage notices."""

from __future__ import annotations

import asyncio
import collections
from typing import TYPE_CHECKING, Any

import pytest
from pydantic import BaseModel
from redis.asyncio import Redis

from polyqueue.broker import Message
from polyqueue.testing.helpers import eventually, running_worker

if TYPE_CHECKING:
    from collections.abc import Callable

    from redis_support import RedisServer

    from polyqueue import Polyqueue

pytestmark = pytest.mark.slow

RECOVERY = {
    "queue_backend": "redis",
    "republish_after": 1.0,
    "maintenance_interval": 0.2,
    "heartbeat_interval": 0.2,
}


class Item(BaseModel):
    n: int


def counting_app(make_app: Callable[..., Polyqueue], **settings: Any) -> tuple[Polyqueue, Any]:
    """An app whose `count` handler records how often each item ran."""
    app = make_app(**RECOVERY, **settings)
    runs: collections.Counter[int] = collections.Counter()

    @app.register("count")
    async def count(payload: Item) -> None:
        runs[payload.n] += 1
        await asyncio.sleep(0.001)

    return app, runs


async def statuses(app: Polyqueue) -> collections.Counter[str]:
    rows = await app.store.pool.fetch("SELECT status, count(*) AS n FROM polyqueue.jobs GROUP BY 1")
    return collections.Counter({row["status"]: row["n"] for row in rows})


async def assert_each_succeeded_once(app: Polyqueue, ids: list[int], runs: Any) -> None:
    rows = await app.store.pool.fetch(
        "SELECT status, attempt FROM polyqueue.jobs WHERE id = any($1::bigint[])", ids
    )
    assert len(rows) == len(ids)
    assert {row["status"] for row in rows} == {"succeeded"}
    assert {row["attempt"] for row in rows} == {1}  # one attempt, one outcome each
    assert all(runs[n] >= 1 for n in range(len(ids)))


async def test_flushall_mid_run_loses_no_job(
    make_app, dedicated_redis: RedisServer, monkeypatch, redis_prefix: str
) -> None:
    dedicated_redis.start()
    monkeypatch.setenv("POLYQUEUE_REDIS_URL", dedicated_redis.url)
    monkeypatch.setenv("POLYQUEUE_REDIS_KEY_PREFIX", redis_prefix)
    app, runs = counting_app(make_app)
    total = 5000
    async with app:
        ids = []
        for start in range(0, total, 500):
            ids += await app.enqueue_many("count", [Item(n=n) for n in range(start, start + 500)])
        async with running_worker(app, concurrency=20):
            await eventually(lambda: _succeeded_at_least(app, 1000), timeout=60)
            client = Redis.from_url(dedicated_redis.url)
            assert await client.flushall()
            await client.aclose()
            await eventually(lambda: _succeeded_at_least(app, total), timeout=120)
        await assert_each_succeeded_once(app, ids, runs)
        assert sum(runs.values()) >= total


async def _succeeded_at_least(app: Polyqueue, count: int) -> bool:
    return (await statuses(app))["succeeded"] >= count


async def test_redis_killed_and_restarted_under_load(
    make_app, dedicated_redis: RedisServer, monkeypatch, redis_prefix: str
) -> None:
    dedicated_redis.start()
    monkeypatch.setenv("POLYQUEUE_REDIS_URL", dedicated_redis.url)
    monkeypatch.setenv("POLYQUEUE_REDIS_KEY_PREFIX", redis_prefix)
    worker_app, runs = counting_app(make_app)
    producer, _ = counting_app(make_app)
    ids: list[int] = []
    async with worker_app, producer, running_worker(worker_app, concurrency=10):
        for n in range(0, 300, 50):
            ids += await producer.enqueue_many("count", [Item(n=i) for i in range(n, n + 50)])
            await asyncio.sleep(0.05)
        dedicated_redis.kill()
        for n in range(300, 600, 50):  # enqueue commits while Redis is down
            ids += await producer.enqueue_many("count", [Item(n=i) for i in range(n, n + 50)])
        assert producer.publisher.pending > 0  # the notices wait for Redis to come back
        await asyncio.sleep(1.0)
        dedicated_redis.start()  # same port, empty: leased notices are gone too
        for n in range(600, 900, 50):
            ids += await producer.enqueue_many("count", [Item(n=i) for i in range(n, n + 50)])
        await eventually(lambda: _succeeded_at_least(worker_app, 900), timeout=90)
        await eventually(lambda: _no_pending(producer), timeout=30)
    await assert_each_succeeded_once_after_close(make_app, ids, runs)


async def _no_pending(app: Polyqueue) -> bool:
    return app.publisher.pending == 0


async def assert_each_succeeded_once_after_close(make_app, ids: list[int], runs: Any) -> None:
    async with make_app() as app:  # a plain app, just to read the rows
        await assert_each_succeeded_once(app, ids, runs)


async def test_garbage_notices_are_dropped_and_the_worker_lives(
    make_app, redis_url: str, redis_prefix: str, redis_client: Redis, monkeypatch
) -> None:
    monkeypatch.setenv("POLYQUEUE_REDIS_URL", redis_url)
    monkeypatch.setenv("POLYQUEUE_REDIS_KEY_PREFIX", redis_prefix)
    app, runs = counting_app(make_app)
    async with app:
        queue = app.settings.default_queue
        garbage = [b"not json", b"[1, 2]", b'{"job_id": "seven"}', b'{"job_id": 987654321}']
        await app.broker.publish([Message(queue, body) for body in garbage])
        keys = app.broker.keys.queue(queue)  # type: ignore[attr-defined]
        await redis_client.zadd(keys.ready, {"9999999999999999": 0})  # an id without a body
        async with running_worker(app, concurrency=2):
            job_id = await app.enqueue("count", Item(n=0))
            job = await app.wait_for(job_id, timeout=20)
            assert job.status == "succeeded"
            await eventually(lambda: _queue_empty(redis_client, keys), timeout=20)
        assert runs[0] == 1


async def _queue_empty(client: Redis, keys: Any) -> bool:
    sizes = [
        await client.zcard(keys.ready),
        await client.zcard(keys.leased),
        await client.zcard(keys.delayed),
        await client.hlen(keys.bodies),
    ]
    return sizes == [0, 0, 0, 0]
