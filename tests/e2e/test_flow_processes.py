"""Flow-control limits across 4 worker processes x concurrency 10, for the postgres, redis
and pgmq brokers, against real servers. Each handler records when it ran; the test counts
how many ran at once (never more than the limit, globally or per key), checks the starts of
the rate-limited handler in every window of its length (where PostgreSQL records them), and
kills a worker that holds slots: they come back when its jobs are reclaimed."""

from __future__ import annotations

import asyncio
import uuid
from typing import TYPE_CHECKING, Any

import asyncpg
import pytest
from flow_app import CREATE_RUNS_TABLE, GLOBAL_LIMIT, RUNS_TABLE, Work, register_handlers
from recovery_support import FAST, worker_processes

from polyqueue.testing.helpers import eventually

if TYPE_CHECKING:
    from pathlib import Path

    from tests.conftest import AppFactory

    from polyqueue import Polyqueue

PROCESSES = 4
PROCESS_SETTINGS = {**FAST, "worker_stale_after": 2.0}
PATIENCE = 120.0


@pytest.fixture(params=["postgres", "redis", "pgmq"])
async def backend(
    request: pytest.FixtureRequest, clean_database: str, monkeypatch: pytest.MonkeyPatch
) -> dict[str, Any]:
    """The broker's settings, for the test's own app (environment) and the workers (these)."""
    name: str = request.param
    settings: dict[str, Any] = {"queue_backend": name}
    if name == "redis":
        url = request.getfixturevalue("redis_url")
        settings |= {"redis_url": url, "redis_key_prefix": f"pqflow:{uuid.uuid4().hex}:"}
    elif name == "pgmq":
        from polyqueue_pgmq import install  # noqa: PLC0415  (only this parameter needs it)

        connection = await asyncpg.connect(clean_database)
        try:
            await install(connection)
        finally:
            await connection.close()
        settings |= {"pgmq_queue_prefix": f"f{uuid.uuid4().hex[:8]}_", "pgmq_poll_interval": 0.2}
    for key, value in settings.items():
        if key != "queue_backend":
            monkeypatch.setenv(f"POLYQUEUE_{key.upper()}", str(value))
    return settings


async def runs(db: asyncpg.Connection, handler: str) -> list[asyncpg.Record]:
    return await db.fetch(
        f"SELECT job_id, key, pid, started, ended FROM {RUNS_TABLE} WHERE handler = $1", handler
    )


def most_at_once(intervals: list[tuple[float, float]]) -> int:
    """The largest number of intervals that overlap at one instant (ends before starts)."""
    events = sorted([(start, 1) for start, _ in intervals] + [(end, -1) for _, end in intervals])
    running = most = 0
    for _, step in events:
        running += step
        most = max(most, running)
    return most


@pytest.fixture
async def producer(
    make_app: AppFactory, backend: dict[str, Any], db: asyncpg.Connection
) -> Polyqueue:
    """The test's own app (not started), with an empty runs table for its handlers."""
    await db.execute(CREATE_RUNS_TABLE)
    await db.execute(f"TRUNCATE {RUNS_TABLE}")
    app = make_app(queue_backend=backend["queue_backend"])
    register_handlers(app)
    return app


async def drain(app: Polyqueue, job_ids: list[int]) -> None:
    async def finished() -> bool:
        statuses = await app.store.job_status_many(job_ids)
        return all(statuses.get(i) == "succeeded" for i in job_ids)

    await eventually(finished, PATIENCE)


async def test_limits_hold_across_worker_processes(
    producer: Polyqueue, backend: dict[str, Any], db: asyncpg.Connection, tmp_path: Path
) -> None:
    app = producer
    async with app:
        with worker_processes("flow_app.py", app.database_url, tmp_path) as processes:
            for _ in range(PROCESSES):
                processes.spawn(**PROCESS_SETTINGS, **backend)
            ids = await app.enqueue_many("flow.global", [Work(ms=60) for _ in range(60)])
            accounts = [f"acct-{n % 4}" for n in range(48)]
            ids += await app.enqueue_many("flow.keyed", [Work(account=a, ms=40) for a in accounts])
            ids += await app.enqueue_many("flow.rated", [Work(ms=1) for _ in range(30)])
            await drain(app, ids)

        global_runs = await runs(db, "flow.global")
        keyed_runs = await runs(db, "flow.keyed")
        starts = [
            row["at"]
            for row in await db.fetch(
                "SELECT extract(epoch FROM started_at)::float8 AS at FROM polyqueue.flow_starts"
                " WHERE scope = 'handler:flow.rated'"
            )
        ]

    assert len(global_runs) == 60
    assert len({row["pid"] for row in global_runs}) > 1  # the limit held across processes
    assert most_at_once([(r["started"], r["ended"]) for r in global_runs]) <= GLOBAL_LIMIT
    per_key = {
        key: most_at_once([(r["started"], r["ended"]) for r in keyed_runs if r["key"] == key])
        for key in set(accounts)
    }
    assert per_key == dict.fromkeys(set(accounts), 1)  # one at a time per account
    assert most_at_once([(r["started"], r["ended"]) for r in keyed_runs]) > 1  # keys in parallel
    assert len(starts) == 30
    assert max(sum(1 for t in starts if first <= t < first + 1.0) for first in starts) <= 10


async def test_a_killed_worker_does_not_leak_its_slots(
    producer: Polyqueue, backend: dict[str, Any], db: asyncpg.Connection, tmp_path: Path
) -> None:
    app = producer
    async with app:
        with worker_processes("flow_app.py", app.database_url, tmp_path) as processes:
            victim = processes.spawn(**PROCESS_SETTINGS, **backend)
            ids = await app.enqueue_many("flow.global", [Work(ms=1500) for _ in range(9)])

            async def victim_holds_the_slots() -> bool:
                held = await db.fetchval(
                    f"SELECT count(*) FROM {RUNS_TABLE} WHERE pid = $1", victim.pid
                )
                return held == GLOBAL_LIMIT

            await eventually(victim_holds_the_slots, PATIENCE)
            victim.process.kill()
            await asyncio.to_thread(victim.process.wait, 30)
            for _ in range(PROCESSES - 1):
                processes.spawn(**PROCESS_SETTINGS, **backend)
            await drain(app, ids)

        finished = [r for r in await runs(db, "flow.global") if r["ended"] is not None]
    assert len(finished) == 9  # every job, the victim's three again once reclaimed
    assert most_at_once([(r["started"], r["ended"]) for r in finished]) <= GLOBAL_LIMIT
