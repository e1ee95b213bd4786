"""Faults: messages deleted or archived by hand, and garbage in the queue."""

from __future__ import annotations

import asyncio
import logging
from collections import Counter

import asyncpg
import pytest
from pgmq_support import count_messages, running_worker
from pydantic import BaseModel

from polyqueue import JobStatus, Polyqueue
from polyqueue.testing.helpers import eventually

RECOVERY = {"republish_after": 1.0, "maintenance_interval": 0.2, "heartbeat_interval": 0.2}
JOBS = 40


class Item(BaseModel):
    n: int


def build(make_app, runs: Counter[int]) -> Polyqueue:
    app = make_app(queue_backend="pgmq", **RECOVERY)

    @app.register("items.slow")
    async def slow(payload: Item) -> None:
        runs[payload.n] += 1
        await asyncio.sleep(0.05)

    return app


async def all_succeeded(app: Polyqueue, ids: list[int]) -> bool:
    jobs = [await app.get_job(job_id) for job_id in ids]
    return all(job.status is JobStatus.SUCCEEDED for job in jobs)


async def test_messages_deleted_or_archived_by_hand_still_end_in_one_outcome(
    make_app, pgmq_env: str, pgmq_database: str, db: asyncpg.Connection
) -> None:
    queue = pgmq_env + "default"
    runs: Counter[int] = Counter()
    async with build(make_app, runs) as app:
        ids = await app.enqueue_many("items.slow", [Item(n=n) for n in range(JOBS)])
        msg_ids = [r["msg_id"] for r in await db.fetch(f'SELECT msg_id FROM pgmq."q_{queue}"')]
        await db.execute("SELECT pgmq.delete($1, $2::bigint[])", queue, msg_ids[:10])
        await db.execute("SELECT pgmq.archive($1, $2::bigint[])", queue, msg_ids[10:20])
        async with running_worker(app, concurrency=4):
            await eventually(lambda: _some_ran(runs))
            await db.execute("SELECT pgmq.purge_queue($1)", queue)  # mid-run, in flight too
            await eventually(lambda: all_succeeded(app, ids))
            await eventually(lambda: _queue_empty(pgmq_database, queue))
        jobs = [await app.get_job(job_id) for job_id in ids]
    assert {job.status for job in jobs} == {JobStatus.SUCCEEDED}
    assert {job.attempt for job in jobs} == {1}  # one claim each: exactly one outcome
    assert sorted(runs) == list(range(JOBS))


async def _some_ran(runs: Counter[int]) -> bool:
    return len(runs) >= 3


async def _queue_empty(where: str | asyncpg.Connection, queue: str) -> bool:
    return await count_messages(where, queue) == 0


GARBAGE = [  # (message, headers) as JSON texts
    ('"not a notice"', None),
    ('{"job_id": "seven"}', None),
    ('{"job_id": 987654321}', None),  # a notice of a job that does not exist
    ("[1, 2, 3]", None),
    ('"%%% not base64"', '{"polyqueue_encoding": "base64"}'),
    ("42", '{"polyqueue_encoding": "text"}'),
]


@pytest.fixture(params=[False, True], ids=["delete", "archive"])
def archive(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> bool:
    """Acks delete, or archive (`POLYQUEUE_PGMQ_ARCHIVE`)."""
    monkeypatch.setenv("POLYQUEUE_PGMQ_ARCHIVE", str(request.param).lower())
    return bool(request.param)


async def test_garbage_is_logged_and_removed_and_the_worker_lives(
    make_app,
    pgmq_env: str,
    db: asyncpg.Connection,
    caplog: pytest.LogCaptureFixture,
    archive: bool,
) -> None:
    caplog.set_level(logging.INFO, logger="polyqueue.worker")
    queue = pgmq_env + "default"
    runs: Counter[int] = Counter()
    async with build(make_app, runs) as app:
        await db.execute("SELECT pgmq.create($1)", queue)
        for message, headers in GARBAGE:
            await db.execute(
                "SELECT pgmq.send($1, $2::text::jsonb, $3::text::jsonb)", queue, message, headers
            )
        async with running_worker(app):
            await eventually(lambda: _queue_empty(db, queue))
            job_id = await app.enqueue("items.slow", Item(n=1))
            assert (await app.wait_for(job_id, timeout=30)).status is JobStatus.SUCCEEDED
    assert runs == Counter({1: 1})
    archived = await count_messages(db, queue, kind="a")
    assert archived == (len(GARBAGE) + 1 if archive else 0)
    dropped = [r.getMessage() for r in caplog.records if "dropping" in r.getMessage()]
    assert sum("not a notice" in m for m in dropped) == len(GARBAGE) - 1
    assert any("987654321 (unknown job id)" in m for m in dropped)
