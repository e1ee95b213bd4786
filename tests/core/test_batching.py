"""Concurrent enqueues share statements (`polyqueue.batching`): each caller gets its own job,
durable when the call returns, and a refusal reaches only the call it belongs to."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

import asyncpg
import pytest
from pydantic import BaseModel

from polyqueue import InvalidPayloadError, JobStatus, Polyqueue, StoreError

if TYPE_CHECKING:
    from collections.abc import Sequence

    from polyqueue.job import NewJobs
    from polyqueue.store import InsertedJob

CALLS = 100


class Item(BaseModel):
    n: int


def build(make_app, backend: str, ran: list[int] | None = None) -> Polyqueue:
    app = make_app(queue_backend=backend)

    @app.register("items.one", queue="q1", max_attempts=4)
    async def one(payload: Item) -> None:
        if ran is not None:
            ran.append(payload.n)

    @app.register("items.two", queue="q2")
    async def two(payload: Item) -> None:
        if ran is not None:
            ran.append(payload.n)

    return app


def count_statements(app: Polyqueue) -> list[int]:
    """The size of every shared statement the app's store runs from now on."""
    sizes: list[int] = []
    store = app.store
    original = store.job_insert_batch

    async def counted(
        batch: Sequence[NewJobs], executor: object, announce_channel: str | None = None
    ) -> list[InsertedJob]:
        sizes.append(len(batch))
        return await original(batch, executor, announce_channel)  # type: ignore[arg-type]

    store.job_insert_batch = counted  # type: ignore[method-assign]
    return sizes


@pytest.mark.parametrize("backend", ["postgres", "none"])
async def test_concurrent_callers_share_statements_and_each_gets_its_own_durable_job(
    make_app, clean_database: str, backend: str
) -> None:
    ran: list[int] = []
    app = build(make_app, backend, ran)
    seen = await asyncpg.create_pool(clean_database, min_size=1, max_size=4)
    statuses: dict[int, str] = {}

    async def call(n: int) -> int:
        handler = "items.one" if n % 2 else "items.two"
        job_id = await app.enqueue(
            handler, Item(n=n), priority=n % 5, delay=10 if n % 10 == 0 else None
        )
        # Durable before the call returned: another connection sees the committed row now.
        statuses[n] = await seen.fetchval("SELECT status FROM polyqueue.jobs WHERE id = $1", job_id)
        return job_id

    try:
        async with app:
            sizes = count_statements(app)
            ids = await asyncio.gather(*(call(n) for n in range(CALLS)))
            rows = await seen.fetch(
                "SELECT id, name, queue, priority, payload, max_attempts FROM polyqueue.jobs"
            )
            await app.run_until_idle(concurrency=10)
    finally:
        await seen.close()

    assert len(set(ids)) == CALLS
    assert sum(sizes) == CALLS
    assert max(sizes) > 1  # calls that arrived while a statement was in flight shared the next
    by_id = {row["id"]: row for row in rows}
    for n, job_id in enumerate(ids):
        row = by_id[job_id]
        assert row["payload"] == f'{{"n": {n}}}'
        assert (row["name"], row["queue"], row["max_attempts"]) == (
            ("items.one", "q1", 4) if n % 2 else ("items.two", "q2", 3)
        )
        assert row["priority"] == n % 5
        assert statuses[n] == ("scheduled" if n % 10 == 0 else "queued")
    assert sorted(ran) == [n for n in range(CALLS) if n % 10]  # every notice was published


async def test_a_bad_payload_fails_only_its_own_call(make_app) -> None:
    app = build(make_app, "postgres")
    async with app:
        payloads = [{"n": n} for n in range(20)]
        payloads[7] = {"n": "not a number"}
        results = await asyncio.gather(
            *(app.enqueue("items.one", payload) for payload in payloads), return_exceptions=True
        )
    assert isinstance(results[7], InvalidPayloadError)
    assert all(isinstance(result, int) for n, result in enumerate(results) if n != 7)


async def test_a_job_the_database_refuses_fails_only_its_own_call(make_app, db) -> None:
    app = build(make_app, "postgres")
    async with app:
        sizes = count_statements(app)
        results = await asyncio.gather(
            *(
                app.enqueue("items.one", Item(n=n), queue="bad\x00queue" if n == 5 else None)
                for n in range(20)
            ),
            return_exceptions=True,
        )
    assert isinstance(results[5], StoreError)
    assert "enqueue" in str(results[5])
    good = [result for n, result in enumerate(results) if n != 5]
    assert all(isinstance(result, int) for result in good)
    assert max(sizes) > 1
    stored = await db.fetch("SELECT id, payload FROM polyqueue.jobs ORDER BY id")
    assert sorted(row["id"] for row in stored) == sorted(good)


async def test_keyed_and_transactional_calls_keep_their_own_statements(make_app, db) -> None:
    app = build(make_app, "postgres")
    async with app:
        sizes = count_statements(app)
        first, again, *plain = await asyncio.gather(
            app.enqueue("items.one", Item(n=1), idempotency_key="k"),
            app.enqueue("items.one", Item(n=1), idempotency_key="k"),
            *(app.enqueue("items.one", Item(n=n)) for n in range(10)),
        )
        unique = await asyncio.gather(
            *(app.enqueue("items.two", Item(n=9), unique=True) for _ in range(5))
        )
        async with app.store.pool.acquire() as connection, connection.transaction():
            in_transaction = await app.enqueue("items.one", Item(n=2), connection=connection)
    assert first == again
    assert [first.created, again.created].count(True) == 1
    assert len({*unique}) == 1
    assert [job_id.created for job_id in unique].count(True) == 1
    assert sum(sizes) == len(plain)  # only the unkeyed calls outside a transaction shared
    status = await db.fetchval("SELECT status FROM polyqueue.jobs WHERE id = $1", in_transaction)
    assert status == JobStatus.QUEUED.value


async def test_a_cancelled_caller_does_not_stop_the_others(make_app, db) -> None:
    app = build(make_app, "postgres")
    async with app:
        first = asyncio.ensure_future(app.enqueue("items.one", Item(n=0)))
        await asyncio.sleep(0)  # its statement is in flight
        waiting = [asyncio.ensure_future(app.enqueue("items.one", Item(n=n))) for n in range(1, 6)]
        await asyncio.sleep(0)
        waiting[0].cancel()
        ids = await asyncio.gather(first, *waiting[1:])
    assert len(set(ids)) == 5
    count = await db.fetchval("SELECT count(*) FROM polyqueue.jobs WHERE id = ANY($1)", ids)
    assert count == 5
