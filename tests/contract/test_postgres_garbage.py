"""Garbage rows written by hand into `broker_messages` never stop the `postgres` broker.

The broker's own `receive` and a worker's `receive_claiming` (which leases notices and
claims their jobs in one statement) both read the table; each must lease, drop and go past
whatever is there.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import AsyncIterator

import asyncpg
import pytest
from pydantic import BaseModel

from polyqueue import JobStatus, Polyqueue
from polyqueue.brokers.postgres import PostgresBroker
from polyqueue.notices import encode_notice
from polyqueue.testing.helpers import eventually, running_worker

LEASE = 1.0
INT_MAX = 2**31 - 1

BODIES = [
    b"\x00\xffnot a notice",
    b"",
    b"[" * 100_000,
    b"x" * (1 << 20),
    b'{"job_id":0}',
    b'{"job_id":-4}',
    b'{"job_id":987654321}',  # no such job
    b'{"job_id":999999999999999999}',  # 18 digits: parsed by message_receive_claiming's pattern
    b'{"job_id":9223372036854775807}',  # the largest bigint, no such job
    b'{"job_id":99999999999999999999999}',  # beyond bigint
    b'{"job_id": 1e400}',
]
"""Bodies that are not notices of existing jobs."""

ROWS = "INSERT INTO polyqueue.broker_messages (queue, body) SELECT $1, unnest($2::bytea[])"


class Item(BaseModel):
    n: int


@pytest.fixture
async def broker(clean_database: str) -> AsyncIterator[PostgresBroker]:
    async with PostgresBroker(clean_database, "polyqueue", lease_seconds=LEASE) as broker:
        yield broker


async def test_odd_columns_are_leased_like_any_row(
    broker: PostgresBroker, db: asyncpg.Connection
) -> None:
    """Receipt counters at the integer limits, availability at +-infinity, huge priorities."""
    await db.execute(
        "INSERT INTO polyqueue.broker_messages (queue, body, deliveries, priority, available_at)"
        " VALUES ('q', 'max', $1, 0, '-infinity'), ('q', 'min', $2, $1, now()),"
        " ('q', 'never', 0, $1, 'infinity'), ('q', 'low', 0, $2, now())",
        INT_MAX,
        -INT_MAX - 1,
    )
    got = await broker.receive(["q"], max_messages=10, wait_seconds=5)
    assert [d.body for d in got] == [b"min", b"max", b"low"]  # by priority; "never" is not due
    await broker.extend(got, LEASE)
    await broker.nack(got)
    again = await broker.receive(["q"], max_messages=10, wait_seconds=5)
    assert sorted(d.body for d in again) == [b"low", b"max", b"min"]
    await broker.ack(again)
    assert await db.fetchval("SELECT array_agg(body) FROM polyqueue.broker_messages") == [b"never"]


def counting_app(make_app) -> tuple[Polyqueue, Counter[int]]:
    app = make_app()
    runs: Counter[int] = Counter()

    @app.register("count")
    async def count(payload: Item) -> None:
        runs[payload.n] += 1

    return app, runs


async def test_a_worker_drops_garbage_rows_and_runs_the_job_behind_them(
    make_app, db: asyncpg.Connection, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    app, runs = counting_app(make_app)
    async with app:
        queue = app.settings.default_queue
        await db.execute(ROWS, queue, BODIES)
        job_id = await app.enqueue("count", Item(n=1))
        await db.execute(ROWS, queue, BODIES[:3])  # garbage behind the notice too
        async with running_worker(app) as worker:
            job = await app.wait_for(job_id, timeout=30)
            await eventually(lambda: _table_empty(db))
            again = await app.enqueue("count", Item(n=2))  # the worker still takes jobs
            assert (await app.wait_for(again, timeout=30)).status is JobStatus.SUCCEEDED
            assert worker.running_jobs == 0
    assert job.status is JobStatus.SUCCEEDED
    assert runs == Counter({1: 1, 2: 1})
    warned = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert sum("not a notice" in message for message in warned) >= 7


async def test_a_worker_goes_past_a_row_at_the_receipt_counter_limit(
    make_app, db: asyncpg.Connection
) -> None:
    app, runs = counting_app(make_app)
    async with app:
        queue = app.settings.default_queue
        await db.execute(
            "INSERT INTO polyqueue.broker_messages (queue, body, deliveries) VALUES ($1, $2, $3)",
            queue,
            encode_notice(987654321),
            INT_MAX,
        )
        job_id = await app.enqueue("count", Item(n=1))
        async with running_worker(app):
            job = await app.wait_for(job_id, timeout=10)
            await eventually(lambda: _table_empty(db), timeout=10)
    assert job.status is JobStatus.SUCCEEDED
    assert runs == Counter({1: 1})


async def _table_empty(db: asyncpg.Connection) -> bool:
    return await db.fetchval("SELECT count(*) FROM polyqueue.broker_messages") == 0
