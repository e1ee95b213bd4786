"""Faults with real processes and a real PostgreSQL: a killed worker, a poison job, a wedged
event loop, and the database itself going away for ten seconds. Nothing is lost or stuck."""

from __future__ import annotations

import asyncio
import collections
import os
import signal
from typing import TYPE_CHECKING, Any

import asyncpg
import pytest
from pydantic import BaseModel
from recovery_app import CREATE_RUNS_TABLE, RUNS_TABLE, Block, Work, register_handlers
from recovery_support import FAST, require_alive, worker_processes

from polyqueue import JobContext, Polyqueue
from polyqueue.embedded import EmbeddedPostgres
from polyqueue.testing.helpers import eventually, running_worker

if TYPE_CHECKING:
    from pathlib import Path

pytestmark = pytest.mark.slow


@pytest.fixture
async def runs_table(db: asyncpg.Connection) -> None:
    """An empty side table where `recovery.work` records each execution."""
    await db.execute(CREATE_RUNS_TABLE)
    await db.execute(f"TRUNCATE {RUNS_TABLE}")


def producer(make_app, **settings: Any) -> Polyqueue:
    app = make_app(queue_backend="postgres", **settings)
    register_handlers(app)
    return app


async def statuses(db: asyncpg.Connection) -> collections.Counter[str]:
    rows = await db.fetch("SELECT status::text AS status FROM polyqueue.jobs")
    return collections.Counter(r["status"] for r in rows)


async def worker_id_of(db: asyncpg.Connection, pid: int) -> str:
    worker_id: str | None = await db.fetchval(
        "SELECT id FROM polyqueue.workers WHERE pid = $1", pid
    )
    assert worker_id is not None, f"no worker row for pid {pid}"
    return worker_id


# -- a worker killed mid-run ------------------------------------------------------------------

JOBS = 200


async def test_a_killed_worker_s_jobs_are_reclaimed_and_all_succeed_once(
    make_app, db, runs_table, clean_database, tmp_path: Path
) -> None:
    app = producer(make_app)
    async with app:
        ids = await app.enqueue_many(
            "recovery.work", [Work(n=n, ms=20 + (n * 7) % 31) for n in range(JOBS)]
        )
    with worker_processes("recovery_app.py", clean_database, tmp_path) as processes:
        a = processes.spawn(concurrency=8, **FAST)

        async def midway() -> bool:
            require_alive(a)
            counts = await statuses(db)
            return counts["succeeded"] >= 30 and counts["running"] >= 1

        await eventually(midway, timeout=30)
        os.kill(a.pid, signal.SIGKILL)
        assert await a.exited() == -signal.SIGKILL
        a_id = await worker_id_of(db, a.pid)
        frozen = await db.fetch("SELECT id, status::text AS status, worker_id FROM polyqueue.jobs")
        in_flight = {r["id"] for r in frozen if r["status"] == "running"}
        done_before = {r["id"] for r in frozen if r["status"] == "succeeded"}
        assert in_flight, "no job was running when the worker was killed"
        assert {r["worker_id"] for r in frozen if r["status"] == "running"} == {a_id}
        assert len(done_before) < JOBS

        b = processes.spawn(concurrency=8, worker_stale_after=2.0, **FAST)

        async def all_succeeded() -> bool:
            require_alive(b)
            return (await statuses(db))["succeeded"] == JOBS

        await eventually(all_succeeded, timeout=60)
        b.process.send_signal(signal.SIGTERM)
        assert await b.exited() == 0

    rows = {
        r["id"]: r
        for r in await db.fetch(
            "SELECT id, status::text AS status, attempt, reclaims, result::text AS result"
            " FROM polyqueue.jobs"
        )
    }
    runs = collections.Counter(
        r["job_id"] for r in await db.fetch(f"SELECT job_id FROM {RUNS_TABLE}")
    )
    assert len(rows) == JOBS
    for n, job_id in enumerate(ids):
        row = rows[job_id]
        assert row["status"] == "succeeded", dict(row)
        assert row["result"] == str(n)
        assert runs[job_id] >= 1
    assert await db.fetchval("SELECT status FROM polyqueue.workers WHERE id = $1", a_id) == "dead"
    for job_id in in_flight:  # reclaimed from the dead worker and run again
        assert rows[job_id]["reclaims"] == 1, dict(rows[job_id])
        assert rows[job_id]["attempt"] >= 2, dict(rows[job_id])
    for job_id in set(ids) - in_flight:
        assert rows[job_id]["reclaims"] == 0, dict(rows[job_id])
    for job_id in done_before:  # finished before the kill: never run again
        assert runs[job_id] == 1, job_id


# -- a poison job -----------------------------------------------------------------------------

MAX_RECLAIMS = 3


async def test_a_job_that_keeps_killing_its_worker_fails_as_poison(
    make_app, db, runs_table, clean_database, tmp_path: Path
) -> None:
    app = producer(make_app)
    async with app:
        before = await app.enqueue_many("recovery.work", [Work(n=n, ms=5) for n in range(10)])
        poison = await app.enqueue("recovery.poison", Work(n=-1, ms=0))
        after = await app.enqueue_many("recovery.work", [Work(n=n, ms=5) for n in range(10, 20)])
    settings = {"worker_stale_after": 1.0, "max_reclaims": MAX_RECLAIMS, **FAST}
    with worker_processes("recovery_app.py", clean_database, tmp_path) as processes:
        # One job at a time, so the poison job is the only one its death takes down.
        current = processes.spawn(concurrency=1, **settings)
        died: list[int] = []

        async def poison_failed() -> bool:
            nonlocal current
            if not current.alive:
                died.append(current.pid)
                assert len(processes.started) <= 2 * MAX_RECLAIMS, "the poison job loops"
                current = processes.spawn(concurrency=1, **settings)
            status = await db.fetchval(
                "SELECT status::text FROM polyqueue.jobs WHERE id = $1", poison
            )
            return status == "failed"

        await eventually(poison_failed, timeout=60)

        async def others_succeeded() -> bool:
            require_alive(current)
            (count,) = await db.fetchrow(
                "SELECT count(*) FROM polyqueue.jobs WHERE id = ANY($1::bigint[])"
                " AND status = 'succeeded'",
                before + after,
            )
            return count == len(before) + len(after)

        await eventually(others_succeeded, timeout=30)
        current.process.send_signal(signal.SIGTERM)
        assert await current.exited() == 0

    job = await db.fetchrow(
        "SELECT status::text AS status, error_type, error_message, reclaims, attempt"
        " FROM polyqueue.jobs WHERE id = $1",
        poison,
    )
    assert job["status"] == "failed"
    assert job["error_type"] == "PoisonJobError"
    assert f"killed its worker {MAX_RECLAIMS} times" in job["error_message"]
    assert "max_reclaims" in job["error_message"]
    assert job["reclaims"] == MAX_RECLAIMS
    assert job["attempt"] == MAX_RECLAIMS
    assert len(died) == MAX_RECLAIMS
    assert all(p.process.returncode == 1 for p in processes.started if p.pid in died)
    dead = await db.fetch("SELECT pid FROM polyqueue.workers WHERE status = 'dead'")
    assert sorted(r["pid"] for r in dead) == sorted(died)


# -- a handler that blocks the event loop past its time limit ---------------------------------


async def test_the_backstop_fails_a_wedged_job_and_fences_its_late_outcome(
    make_app, db, clean_database, tmp_path: Path
) -> None:
    release = tmp_path / "release"
    with worker_processes("recovery_app.py", clean_database, tmp_path) as processes:
        wedged, job_id, other = await _wedge(
            make_app, db, processes, "recovery.block_fail", release
        )
        async with other, running_worker(other):

            async def failed() -> bool:
                require_alive(wedged)
                job = await other.get_job(job_id)
                return job.status.value == "failed"

            await eventually(failed, timeout=30)
            job = await other.get_job(job_id)
            # Decided by the database while the worker was still blocked in the handler.
            assert not release.exists()
            assert wedged.alive
            assert job.attempt == 1
            assert job.error is not None
            assert job.error.type == "TimeoutError"
            assert "backstop" in job.error.message

            await _unwedge_and_stop(wedged, release)  # its late outcome is written
            final = await other.get_job(job_id)

    assert final.status.value == "failed"
    assert final.attempt == 1
    assert final.result is None  # the late success was fenced off
    assert final.error is not None
    assert final.error.type == "TimeoutError"


async def test_the_backstop_retries_a_wedged_job_elsewhere_and_fences_the_late_outcome(
    make_app, db, clean_database, tmp_path: Path
) -> None:
    release = tmp_path / "release"
    with worker_processes("recovery_app.py", clean_database, tmp_path) as processes:
        wedged, job_id, other = await _wedge(
            make_app, db, processes, "recovery.block_retry", release
        )
        async with other, running_worker(other):

            async def succeeded_elsewhere() -> bool:
                require_alive(wedged)
                job = await other.get_job(job_id)
                return job.status.value == "succeeded"

            await eventually(succeeded_elsewhere, timeout=30)
            retried = await other.get_job(job_id)
            assert not release.exists()
            assert wedged.alive
            assert retried.attempt == 2
            assert retried.result == {"attempt": 2, "pid": os.getpid()}

            await _unwedge_and_stop(wedged, release)  # its late outcome is written
            final = await other.get_job(job_id)

    assert final.status.value == "succeeded"
    assert final.attempt == 2
    assert final.result == {"attempt": 2, "pid": os.getpid()}  # not the wedged worker's


async def test_a_wedged_maintenance_leader_does_not_stop_maintenance(
    make_app, db, clean_database, tmp_path: Path
) -> None:
    """The worker that wedges may be the one leading a maintenance round at that moment.

    Its round's transaction holds the maintenance advisory lock, and only its blocked event
    loop can end that transaction. Other workers must still get to run maintenance (and so
    the backstop that exists for exactly this wedge), not skip every round for as long as the
    handler blocks.
    """
    release = tmp_path / "release"
    settings = {**FAST, "worker_stale_after": 60, "timeout_backstop_seconds": 0.5}
    # A stale worker row, locked by the test: A's first round takes the maintenance lock,
    # then waits in `worker_reap` until the test lets go, by which time A is wedged.
    await db.execute(
        "INSERT INTO polyqueue.workers (id, hostname, pid, queues, concurrency, heartbeat_at)"
        " VALUES ('ghost', 'nowhere', 1, '{}', 1, now() - interval '1 hour')"
    )
    holder = await asyncpg.connect(clean_database)
    row_lock = holder.transaction()
    await row_lock.start()
    await holder.execute("SELECT 1 FROM polyqueue.workers WHERE id = 'ghost' FOR UPDATE")
    enqueuer = producer(make_app)
    async with enqueuer:
        job_id = await enqueuer.enqueue("recovery.block_fail", Block(release_file=str(release)))
    try:
        with worker_processes("recovery_app.py", clean_database, tmp_path) as processes:
            wedged = processes.spawn(concurrency=2, **settings)

            async def wedged_mid_round() -> bool:
                require_alive(wedged)
                running = await db.fetchval(
                    "SELECT count(*) FROM polyqueue.jobs WHERE id = $1 AND status = 'running'",
                    job_id,
                )
                waiting = await db.fetchval(
                    "SELECT count(*) FROM pg_stat_activity"
                    " WHERE wait_event_type = 'Lock' AND query LIKE '%workers%dead%'"
                )
                return running == 1 and waiting == 1

            await eventually(wedged_mid_round, timeout=30)
            await row_lock.commit()  # A's reap completes, but A cannot end its transaction
            other = producer(make_app, **settings)
            async with other, running_worker(other):
                deadline = asyncio.get_running_loop().time() + 20
                while (await other.get_job(job_id)).status.value != "failed":
                    if asyncio.get_running_loop().time() > deadline:
                        holders = await db.fetch(
                            "SELECT a.state, a.xact_start, a.query FROM pg_locks l"
                            " JOIN pg_stat_activity a USING (pid)"
                            " WHERE l.locktype = 'advisory' AND l.granted"
                        )
                        pytest.fail(
                            "the backstop never fired: no worker could lead maintenance;"
                            f" advisory lock held by {[dict(h) for h in holders]}"
                        )
                    await asyncio.sleep(0.05)
            assert not release.exists()
            require_alive(wedged)
            release.touch()
    finally:
        release.touch()
        await holder.close()


async def _wedge(make_app, db, processes, handler: str, release: Path):
    """Start worker A, enqueue `handler`'s job and wait until A runs it (and blocks).

    Returns A, the job id, and a second app (not started) whose worker runs maintenance.
    """
    settings = {
        **FAST,
        "worker_stale_after": 60,  # the reaper must not act first: this is the backstop's job
        "timeout_backstop_seconds": 0.5,
    }
    # A takes no part in maintenance: a wedged leader holding the maintenance lock is the
    # separate test `test_a_wedged_maintenance_leader_does_not_stop_maintenance` below.
    wedged = processes.spawn(concurrency=2, maintenance=False, **settings)
    enqueuer = producer(make_app)
    async with enqueuer:
        job_id = await enqueuer.enqueue(handler, Block(release_file=str(release)))

    async def running_in_a() -> bool:
        require_alive(wedged)
        pid = await db.fetchval(
            "SELECT w.pid FROM polyqueue.jobs j JOIN polyqueue.workers w ON w.id = j.worker_id"
            " WHERE j.id = $1 AND j.status = 'running'",
            job_id,
        )
        return pid == wedged.pid

    await eventually(running_in_a, timeout=30)
    other = producer(make_app, **settings)
    return wedged, job_id, other


async def _unwedge_and_stop(wedged, release: Path) -> None:
    """Let the blocked handler return, then stop its worker gracefully: a clean exit means the
    late outcome of attempt 1 has been offered to the database (and fenced off)."""
    release.touch()
    wedged.process.send_signal(signal.SIGTERM)
    assert await wedged.exited() == 0


# -- PostgreSQL down for ten seconds ----------------------------------------------------------

OUTAGE_SECONDS = 10.0  # the fault itself: the server is away this long
PG_JOBS = 300


class Item(BaseModel):
    n: int


@pytest.mark.parametrize("stale_after", [30.0, 3.0], ids=["workers-kept", "workers-reaped"])
async def test_postgres_down_for_ten_seconds_under_load_loses_nothing(
    tmp_path: Path, stale_after: float
) -> None:
    """With `workers-reaped`, the outage outlasts `worker_stale_after`: once the server is
    back, maintenance declares the silent workers dead and reclaims their jobs under them."""
    server = EmbeddedPostgres(tmp_path / "pg", fsync=False)  # ours alone: we stop it
    url = await asyncio.to_thread(server.start)
    try:
        await _run_through_an_outage(server, url, stale_after)
    finally:
        await asyncio.to_thread(server.stop, force=True)


async def _run_through_an_outage(server: EmbeddedPostgres, url: str, stale_after: float) -> None:
    runs: collections.Counter[int] = collections.Counter()
    apps = [_outage_app(url, stale_after, runs) for _ in range(2)]
    async with apps[0], apps[1], running_worker(apps[0]), running_worker(apps[1]):
        ids = await apps[0].enqueue_many("outage.work", [Item(n=n) for n in range(PG_JOBS)])

        async def under_way() -> bool:
            statuses = await apps[0].store.job_status_many(ids)
            return list(statuses.values()).count("succeeded") >= 60

        await eventually(under_way, timeout=30)
        before = await apps[0].store.job_status_many(ids)
        await asyncio.to_thread(server.stop, force=True)
        await asyncio.sleep(OUTAGE_SECONDS)
        assert await asyncio.to_thread(server.start) == url  # same port: clients reconnect
        done_before = [i for i in ids if before[i] == "succeeded"]
        assert len(done_before) < PG_JOBS  # the outage hit a running workload

        async def all_succeeded() -> bool:
            try:
                statuses = await apps[0].store.job_status_many(ids)
            except Exception:  # the pool may still hand out a dead connection once
                return False
            return list(statuses.values()).count("succeeded") == PG_JOBS

        await eventually(all_succeeded, timeout=60)

    connection = await asyncpg.connect(url)
    try:
        rows = await connection.fetch(
            "SELECT id, status::text AS status, result::text AS result FROM polyqueue.jobs"
        )
        workers = await connection.fetch("SELECT status FROM polyqueue.workers")
    finally:
        await connection.close()
    jobs = {r["id"]: r for r in rows}
    assert len(jobs) == PG_JOBS
    for n, job_id in enumerate(ids):
        assert jobs[job_id]["status"] == "succeeded", dict(jobs[job_id])
        assert jobs[job_id]["result"] == str(n)
        assert runs[n] >= 1
    assert all(runs[ids.index(i)] == 1 for i in done_before)  # finished: never run again
    assert {r["status"] for r in workers} <= {"stopped", "dead"}  # clean exits after recovery


def _outage_app(url: str, stale_after: float, runs: collections.Counter[int]) -> Polyqueue:
    app = Polyqueue(
        database_url=url,
        queue_backend="postgres",
        concurrency=10,
        heartbeat_interval=0.2,
        maintenance_interval=0.2,
        scheduler_interval=0.1,
        lease_seconds=2.0,
        retry_backoff_base=0.01,
        retry_backoff_max=0.05,
        shutdown_grace_seconds=5.0,
        worker_stale_after=stale_after,
        max_reclaims=10,
    )

    @app.register("outage.work", max_attempts=10)
    async def work(payload: Item, ctx: JobContext) -> int:
        runs[payload.n] += 1
        await asyncio.sleep(0.05)
        return payload.n

    return app
