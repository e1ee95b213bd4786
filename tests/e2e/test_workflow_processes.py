"""Fan-in across 4 worker processes against a real PostgreSQL: a chord of 1,000 jobs fires
its callback exactly once, 20 runs in a row, with a worker SIGKILLed mid-group, and with
PostgreSQL restarted mid-group. The callback records each of its runs; the test counts them
and checks that it saw every member's result."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

import asyncpg
import pytest
from recovery_support import FAST, require_alive, worker_processes
from workflow_app import CALLBACKS_TABLE, CREATE_CALLBACKS_TABLE, Member, register_handlers

from polyqueue.testing.helpers import eventually

if TYPE_CHECKING:
    from pathlib import Path

    from recovery_support import WorkerProcess
    from tests.conftest import AppFactory

    from polyqueue import EnqueuedWorkflow, Polyqueue
    from polyqueue.testing.servers import PostgresServer

pytestmark = pytest.mark.slow

PROCESSES = 4
MEMBERS = 1_000
RUNS = 20
PROCESS_SETTINGS = {**FAST, "worker_stale_after": 2.0}
PATIENCE = 60.0  # under the test timeout (120 s): a wait that fails says which, with the logs
TOTAL = sum(range(MEMBERS))


@pytest.fixture
async def producer(make_app: AppFactory, clean_database: str) -> Polyqueue:
    """The test's own app (not started), with an empty callbacks table."""
    connection = await asyncpg.connect(clean_database)
    try:
        await connection.execute(CREATE_CALLBACKS_TABLE)
        await connection.execute(f"TRUNCATE {CALLBACKS_TABLE}")
    finally:
        await connection.close()
    app = make_app()
    register_handlers(app)
    return app


async def chord(app: Polyqueue, ms: int = 0) -> EnqueuedWorkflow:
    members = [Member(n=n, ms=ms) for n in range(MEMBERS)]
    return await app.chord("wf.member", members, "wf.callback")


async def finished(app: Polyqueue, done: EnqueuedWorkflow) -> None:
    """Until the callback has succeeded (it can only once every member has)."""

    async def callback_succeeded() -> bool:
        try:
            statuses = await app.store.job_status_many([done.job_ids[-1]])
        except Exception:  # the pool may hand out a connection the restart killed, once
            return False
        return statuses.get(done.job_ids[-1]) == "succeeded"

    await eventually(callback_succeeded, PATIENCE)


async def assert_fired_once(app: Polyqueue, db: asyncpg.Connection, done: EnqueuedWorkflow) -> None:
    callback = done.job_ids[-1]
    fired = await db.fetch(
        f"SELECT attempt, results, total FROM {CALLBACKS_TABLE} WHERE job_id = $1", callback
    )
    assert [tuple(row) for row in fired] == [(1, MEMBERS, TOTAL)]
    workflow = await app.get_workflow(done.id or 0)
    assert workflow.counts == {"succeeded": MEMBERS + 1}
    assert await app.get_job_result(callback) == TOTAL


async def test_a_chord_fires_its_callback_exactly_once_in_every_run(
    producer: Polyqueue, db: asyncpg.Connection, tmp_path: Path
) -> None:
    app = producer
    async with app:
        with worker_processes("workflow_app.py", app.database_url, tmp_path) as processes:
            for _ in range(PROCESSES):
                processes.spawn(**PROCESS_SETTINGS)
            for _ in range(RUNS):
                done = await chord(app)
                await finished(app, done)
                await assert_fired_once(app, db, done)
        pids = await db.fetchval(f"SELECT count(DISTINCT pid) FROM {CALLBACKS_TABLE}")
    assert await db.fetchval(f"SELECT count(*) FROM {CALLBACKS_TABLE}") == RUNS
    assert pids > 1  # the callbacks ran on more than one process: the members did too


async def test_a_worker_killed_mid_group_does_not_lose_or_double_the_callback(
    producer: Polyqueue, db: asyncpg.Connection, tmp_path: Path
) -> None:
    app = producer
    async with app:
        with worker_processes("workflow_app.py", app.database_url, tmp_path) as processes:
            workers = [processes.spawn(**PROCESS_SETTINGS) for _ in range(PROCESSES)]
            await all_registered(db, workers)
            done = await chord(app, ms=50)
            victim: int | None = None

            async def a_third_done_and_a_victim_busy() -> bool:
                # One cheap statement per look (reading the whole workflow takes long enough
                # for the group to finish between two looks). Whichever worker holds members
                # now: one slow to start may hold none.
                nonlocal victim
                victim = await db.fetchval(
                    "SELECT w.pid FROM polyqueue.jobs AS j"
                    " JOIN polyqueue.workers AS w ON w.id = j.worker_id"
                    " WHERE j.status = 'running' AND j.workflow_id = $1"
                    " AND (SELECT count(*) FROM polyqueue.jobs"
                    "      WHERE workflow_id = $1 AND status = 'succeeded') >= $2"
                    " LIMIT 1",
                    done.id,
                    MEMBERS // 3,
                )
                return victim is not None

            await eventually(a_third_done_and_a_victim_busy, PATIENCE)
            killed = next(worker for worker in workers if worker.pid == victim)
            killed.process.kill()  # SIGKILL: its running members are reclaimed
            await asyncio.to_thread(killed.process.wait, 30)
            processes.spawn(**PROCESS_SETTINGS)
            await finished(app, done)
            await assert_fired_once(app, db, done)
        reclaimed = await db.fetchval(
            "SELECT count(*) FROM polyqueue.jobs WHERE workflow_id = $1 AND reclaims > 0", done.id
        )
    assert reclaimed > 0  # the victim held members when it died: they ran again elsewhere


async def all_registered(db: asyncpg.Connection, workers: list[WorkerProcess]) -> None:
    """Until every worker process has registered, so that each one takes part in the chord."""
    pids = [worker.pid for worker in workers]

    async def registered() -> bool:
        require_alive(*workers)
        return await db.fetchval(
            "SELECT count(DISTINCT pid) FROM polyqueue.workers"
            " WHERE status = 'running' AND pid = ANY($1)",
            pids,
        ) == len(pids)

    await eventually(registered, PATIENCE)


async def test_postgres_restarted_mid_group_does_not_lose_or_double_the_callback(
    producer: Polyqueue, tmp_path: Path, polyqueue_postgres: PostgresServer
) -> None:
    if not polyqueue_postgres.can_restart:
        pytest.skip("the test server is external (POLYQUEUE_TEST_DATABASE_URL): cannot restart")
    app = producer
    async with app:
        with worker_processes("workflow_app.py", app.database_url, tmp_path) as processes:
            for _ in range(PROCESSES):
                processes.spawn(**PROCESS_SETTINGS)
            done = await chord(app, ms=50)

            async def a_third_done() -> bool:
                counts = (await app.get_workflow(done.id or 0)).counts
                return counts.get("succeeded", 0) >= MEMBERS // 3

            await eventually(a_third_done, PATIENCE)
            before = (await app.get_workflow(done.id or 0)).counts
            await asyncio.to_thread(polyqueue_postgres.restart)
            await finished(app, done)
    # The test's own connection died with the server: read through the app's pool again.
    async with app:
        connection = await app.store.pool.acquire()
        try:
            fired = await connection.fetch(
                f"SELECT attempt, results, total FROM {CALLBACKS_TABLE} WHERE job_id = $1",
                done.job_ids[-1],
            )
        finally:
            await app.store.pool.release(connection)
        workflow = await app.get_workflow(done.id or 0)
    assert before.get("succeeded", 0) < MEMBERS  # the restart came mid-group
    assert [tuple(row) for row in fired] == [(1, MEMBERS, TOTAL)]
    assert workflow.counts == {"succeeded": MEMBERS + 1}
