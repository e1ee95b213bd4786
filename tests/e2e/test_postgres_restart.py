"""PostgreSQL restarted under a running worker: it reconnects and every job ends exactly once."""

from __future__ import annotations

import asyncio
import collections

import asyncpg
import pytest
from pydantic import BaseModel

from polyqueue import JobContext
from polyqueue.testing.helpers import eventually, running_worker

pytestmark = pytest.mark.slow

JOBS = 200
HELD = range(50, 55)  # held in flight until the server is back
FLOWING_SECONDS = 0.05  # jobs after HELD take a little time, so some run during the restart


class Item(BaseModel):
    n: int


async def test_worker_survives_a_postgres_restart(
    make_app, queue_backend, polyqueue_postgres, clean_database
) -> None:
    if not polyqueue_postgres.can_restart:
        pytest.skip("the test server is external (POLYQUEUE_TEST_DATABASE_URL): cannot restart")
    app = make_app(queue_backend=queue_backend)
    runs: collections.Counter[int] = collections.Counter()
    restarted = asyncio.Event()

    @app.register("e2e.across_restart", max_attempts=10)
    async def across_restart(payload: Item, ctx: JobContext) -> dict[str, int]:
        runs[payload.n] += 1
        if payload.n in HELD:
            await restarted.wait()  # certainly in flight while the server goes down
        elif payload.n > HELD.stop:
            await asyncio.sleep(FLOWING_SECONDS)
        return {"n": payload.n}

    async with app, running_worker(app, concurrency=10):
        ids = await app.enqueue_many("e2e.across_restart", [Item(n=n) for n in range(JOBS)])
        by_n = dict(enumerate(ids))

        async def held_jobs_in_flight() -> bool:
            held = [by_n[n] for n in HELD]
            statuses = await app.store.job_status_many(held)
            return list(statuses.values()) == ["running"] * len(held)

        await eventually(held_jobs_in_flight, timeout=30)
        before = await app.store.job_status_many(ids)
        finished_before = [n for n, i in by_n.items() if before[i] == "succeeded"]
        assert len(finished_before) < JOBS - len(HELD)  # the rest still flow: restart now
        await asyncio.to_thread(polyqueue_postgres.restart)
        restarted.set()

        async def all_succeeded() -> bool:
            try:
                statuses = await app.store.job_status_many(ids)
            except Exception:  # the pool may still hand out a dead connection once
                return False
            return list(statuses.values()).count("succeeded") == JOBS

        await eventually(all_succeeded, timeout=60)

    connection = await asyncpg.connect(clean_database)
    try:
        rows = await connection.fetch(
            "SELECT id, status::text, result::text, attempt, worker_id FROM polyqueue.jobs"
        )
    finally:
        await connection.close()

    jobs = {row["id"]: row for row in rows}
    assert len(jobs) == JOBS
    for n, job_id in by_n.items():
        row = jobs[job_id]
        assert row["status"] == "succeeded", (n, dict(row))
        assert row["result"] == f'{{"n": {n}}}', (n, dict(row))
        assert runs[n] >= 1  # at-least-once execution...
        assert row["attempt"] >= 1
    # ...and the jobs finished before the restart were not run again.
    assert all(runs[n] == 1 for n in finished_before)
    assert all(runs[n] == 1 for n in HELD)  # their outcomes were written after the restart
