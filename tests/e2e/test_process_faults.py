"""Worker processes under faults only a process can have: frozen with SIGSTOP past
`worker_stale_after` and thawed, a sync handler stuck in its thread at shutdown, a loop
that keeps crashing. Each ends with every job accounted for and a process that either
carries on or exits with a status its supervisor can act on."""

from __future__ import annotations

import collections
import signal
from typing import TYPE_CHECKING, Any

import asyncpg
import pytest
from recovery_app import CREATE_RUNS_TABLE, RUNS_TABLE, Block, Work, register_handlers
from recovery_support import FAST, require_alive, worker_processes

from polyqueue.testing.helpers import eventually

if TYPE_CHECKING:
    from pathlib import Path

    from polyqueue import Polyqueue

pytestmark = pytest.mark.slow

FAULTS: dict[str, Any] = {
    **FAST,
    "shutdown_grace_seconds": 1.0,
    "worker_stale_after": 2.0,
    "max_reclaims": 10,
}


@pytest.fixture
async def runs_table(db: asyncpg.Connection) -> None:
    await db.execute(CREATE_RUNS_TABLE)
    await db.execute(f"TRUNCATE {RUNS_TABLE}")


def producer(make_app: Any) -> Polyqueue:
    app: Polyqueue = make_app(queue_backend="postgres")
    register_handlers(app)
    return app


async def worker_rows(db: asyncpg.Connection, pid: int) -> list[asyncpg.Record]:
    return list(
        await db.fetch(
            "SELECT id, status FROM polyqueue.workers WHERE pid = $1 ORDER BY started_at", pid
        )
    )


JOBS = 60


async def test_a_frozen_worker_is_fenced_off_and_carries_on_under_a_new_id(
    make_app, db, runs_table, clean_database, tmp_path: Path
) -> None:
    """A is frozen (SIGSTOP) with jobs in hand for longer than `worker_stale_after`: B's
    maintenance declares it dead and B runs its jobs. Thawed, A must not record the stale
    outcomes of the jobs it lost (fencing), must register a new id before it claims again,
    and goes on working. Every job succeeds once as an outcome."""
    app = producer(make_app)
    async with app:
        ids = await app.enqueue_many("recovery.work", [Work(n=n, ms=300) for n in range(JOBS)])
    with worker_processes("recovery_app.py", clean_database, tmp_path) as processes:
        a = processes.spawn(concurrency=4, **FAULTS)

        async def a_busy() -> bool:
            require_alive(a)
            rows = await worker_rows(db, a.pid)
            running: int = await db.fetchval(
                "SELECT count(*) FROM polyqueue.jobs WHERE status = 'running'"
            )
            return bool(rows) and running > 0

        await eventually(a_busy, timeout=30)
        a.process.send_signal(signal.SIGSTOP)
        (first,) = await worker_rows(db, a.pid)
        held = {
            r["id"]
            for r in await db.fetch(
                "SELECT id FROM polyqueue.jobs WHERE status = 'running' AND worker_id = $1",
                first["id"],
            )
        }
        b = processes.spawn(concurrency=4, **FAULTS)

        async def a_declared_dead_and_its_jobs_taken() -> bool:
            require_alive(b)
            status = await db.fetchval(
                "SELECT status FROM polyqueue.workers WHERE id = $1", first["id"]
            )
            taken = await db.fetchval(
                "SELECT count(*) FROM polyqueue.jobs WHERE id = ANY($1::bigint[])"
                " AND (worker_id IS DISTINCT FROM $2 OR status <> 'running')",
                list(held),
                first["id"],
            )
            return status == "dead" and taken == len(held)

        await eventually(a_declared_dead_and_its_jobs_taken, timeout=60)
        a.process.send_signal(signal.SIGCONT)

        async def a_registered_again() -> bool:
            require_alive(a)
            return [r["status"] for r in await worker_rows(db, a.pid)] == ["dead", "running"]

        await eventually(a_registered_again, timeout=30)

        async def all_succeeded() -> bool:
            require_alive(a, b)
            done = await db.fetchval(
                "SELECT count(*) FROM polyqueue.jobs WHERE status = 'succeeded'"
            )
            return bool(done == JOBS)

        await eventually(all_succeeded, timeout=90)
        assert a.logged(r"was declared dead")
        for worker in (a, b):
            worker.process.send_signal(signal.SIGTERM)
        assert await a.exited() == 0
        assert await b.exited() == 0

    rows = await db.fetch(
        "SELECT id, status::text AS status, result::text AS result, attempt FROM polyqueue.jobs"
    )
    assert {r["status"] for r in rows} == {"succeeded"}
    results = {r["id"]: r["result"] for r in rows}
    assert [results[i] for i in ids] == [str(n) for n in range(JOBS)]
    runs = collections.Counter(
        r["job_id"] for r in await db.fetch(f"SELECT job_id FROM {RUNS_TABLE}")
    )
    assert all(runs[i] >= 1 for i in ids)
    for job_id in held:  # taken from the frozen worker: a later attempt wrote the outcome
        attempt = next(r["attempt"] for r in rows if r["id"] == job_id)
        assert attempt >= 2


async def test_a_sync_handler_stuck_in_its_thread_does_not_keep_the_process_alive(
    make_app, db, clean_database, tmp_path: Path
) -> None:
    """SIGTERM: the grace period passes, the stuck job is given back to the queue, and the
    process exits 0 although the handler's thread never returns."""
    release = tmp_path / "never"
    app = producer(make_app)
    async with app:
        job_id = await app.enqueue("recovery.stuck_sync", Block(release_file=str(release)))
    with worker_processes("recovery_app.py", clean_database, tmp_path) as processes:
        a = processes.spawn(concurrency=2, **FAULTS)

        async def running() -> bool:
            require_alive(a)
            status = await db.fetchval("SELECT status FROM polyqueue.jobs WHERE id = $1", job_id)
            return bool(status == "running")

        await eventually(running, timeout=30)
        a.process.send_signal(signal.SIGTERM)
        assert await a.exited(timeout=60) == 0
    row = await db.fetchrow(
        "SELECT status::text AS status, attempt, attempt_base FROM polyqueue.jobs WHERE id = $1",
        job_id,
    )
    assert (row["status"], row["attempt"], row["attempt_base"]) == ("queued", 1, 1)
    assert not release.exists()


async def test_a_worker_whose_loop_keeps_crashing_exits_non_zero(
    make_app, db, clean_database, tmp_path: Path
) -> None:
    with worker_processes("recovery_app.py", clean_database, tmp_path) as processes:
        broken = processes.spawn(concurrency=2, test_break_scheduler=1, **FAULTS)
        assert await broken.exited(timeout=90) == 1
        assert broken.logged(r"the scheduler crashed \(1 in a row\)")
        assert broken.logged(r"Traceback")
        assert broken.logged(r"the scheduler kept crashing")
    statuses = [r["status"] for r in await worker_rows(db, broken.pid)]
    assert statuses == ["stopped"]
