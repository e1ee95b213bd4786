"""Garbage rows written by hand into PGMQ's tables: logged, dropped, never raising or blocking."""

from __future__ import annotations

import logging

import asyncpg
import pytest
from pgmq_support import count_messages, queue_table, running_worker
from pydantic import BaseModel

from polyqueue import JobStatus, Message
from polyqueue.testing.helpers import eventually
from polyqueue_pgmq import PgmqBroker

LEASE = 1.0
QUEUE = "work"
DEEP = "[" * 5000 + "]" * 5000  # fine for JSONB, deeper than Python's json recursion limit
ROWS = [  # (message, headers) as JSON texts, or NULL
    (None, None),
    ("null", "null"),
    (None, '{"polyqueue_encoding": "base64"}'),
    ('"%%% not base64"', '{"polyqueue_encoding": "base64"}'),
    ("[1, 2]", '{"polyqueue_encoding": "base64"}'),
    ("42", '{"polyqueue_encoding": "text"}'),
    ('{"job_id": "seven"}', '{"polyqueue_encoding": 7}'),
    ('{"job_id": 1}', "[1, 2, 3]"),
    ('"plain"', '"a string"'),
    (DEEP, '{"polyqueue_encoding": "text"}'),
    (DEEP, None),
    ('"x"', '{"polyqueue_encoding": "text", "deep": ' + DEEP + "}"),
    ('"' + "y" * (1 << 20) + '"', '{"polyqueue_encoding": "text"}'),
]


async def test_garbage_rows_are_delivered_raw_and_settle(
    broker: PgmqBroker, db: asyncpg.Connection, pgmq_prefix: str
) -> None:
    table = queue_table(pgmq_prefix + QUEUE)
    await broker.publish([Message(QUEUE, b"first")])
    await db.executemany(
        f"INSERT INTO {table} (vt, message, headers) VALUES (now(), $1::jsonb, $2::jsonb)", ROWS
    )
    await broker.publish([Message(QUEUE, b"last")])
    got = await broker.receive([QUEUE], max_messages=100, wait_seconds=5)
    assert len(got) == len(ROWS) + 2
    await broker.extend(got, LEASE)
    await broker.nack(got)
    again = await broker.receive([QUEUE], max_messages=100, wait_seconds=5)
    assert len(again) == len(ROWS) + 2
    await broker.ack(again)
    assert await count_messages(db, pgmq_prefix + QUEUE) == 0


@pytest.fixture
def warnings(caplog: pytest.LogCaptureFixture) -> pytest.LogCaptureFixture:
    caplog.set_level(logging.WARNING, logger="polyqueue_pgmq")
    return caplog


def warned(caplog: pytest.LogCaptureFixture) -> str:
    return "\n".join(r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING)


async def test_a_read_count_at_the_integer_limit_is_dropped_not_fatal(
    broker: PgmqBroker, db: asyncpg.Connection, pgmq_prefix: str, warnings
) -> None:
    """`pgmq.read` adds one to read_ct: at 2^31 - 1 every read of the queue would fail."""
    table = queue_table(pgmq_prefix + QUEUE)
    await broker.publish([Message(QUEUE, b"before")])
    stuck = await db.fetchval(
        f"INSERT INTO {table} (vt, read_ct, message) VALUES (now(), 2147483647, '{{}}')"
        " RETURNING msg_id"
    )
    await broker.publish([Message(QUEUE, b"after")])
    got = await broker.receive([QUEUE], max_messages=10, wait_seconds=5)
    assert sorted(d.body for d in got) == [b"after", b"before"]
    await broker.ack(got)
    assert await count_messages(db, pgmq_prefix + QUEUE) == 0
    assert f"dropping messages [{stuck}]" in warned(warnings)


@pytest.mark.parametrize("how", ["table", "queue"])
async def test_a_queue_table_dropped_by_hand_is_created_again_at_once(
    broker: PgmqBroker, db: asyncpg.Connection, pgmq_prefix: str, warnings, how: str
) -> None:
    await broker.publish([Message(QUEUE, b"lost")])
    got = await broker.receive([QUEUE], max_messages=10, wait_seconds=5)
    if how == "table":  # pgmq.meta still lists the queue
        await db.execute(f"DROP TABLE {queue_table(pgmq_prefix + QUEUE)}")
    else:
        await db.execute("SELECT pgmq.drop_queue($1)", pgmq_prefix + QUEUE)
    await broker.extend(got, LEASE)  # their messages are gone: nothing to settle, no error
    await broker.nack(got)
    await broker.ack(got)
    assert await broker.receive([QUEUE], max_messages=10, wait_seconds=0.2) == []
    await broker.publish([Message(QUEUE, b"new")])
    again = await broker.receive([QUEUE], max_messages=10, wait_seconds=5)
    assert [d.body for d in again] == [b"new"]
    await broker.ack(again)
    assert "has no table" in warned(warnings)


class Item(BaseModel):
    n: int


async def test_a_worker_goes_past_garbage_rows(
    make_app, pgmq_env: str, db: asyncpg.Connection
) -> None:
    queue = pgmq_env + "default"
    table = queue_table(queue)
    app = make_app(queue_backend="pgmq")
    runs: list[int] = []

    @app.register("count")
    async def count(payload: Item) -> None:
        runs.append(payload.n)

    async with app:
        await db.execute("SELECT pgmq.create($1)", queue)
        await db.executemany(
            f"INSERT INTO {table} (vt, message, headers) VALUES (now(), $1::jsonb, $2::jsonb)",
            ROWS,
        )
        await db.execute(f"INSERT INTO {table} (vt, read_ct) VALUES (now(), 2147483647)")
        async with running_worker(app):
            job_id = await app.enqueue("count", Item(n=1))
            assert (await app.wait_for(job_id, timeout=30)).status is JobStatus.SUCCEEDED
            await eventually(lambda: _empty(db, queue))
    assert runs == [1]


async def _empty(db: asyncpg.Connection, queue: str) -> bool:
    return await count_messages(db, queue) == 0
