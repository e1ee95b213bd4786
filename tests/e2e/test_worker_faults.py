"""A worker never dies, stalls or hangs, whatever the database does: PostgreSQL stopped fast
or crashed under load (twice), a black-holed connection, a claim whose reply never arrives,
shutdown with the database gone. Each runs against a PostgreSQL server of its own, which
the test stops and starts; `running_worker` fails the test the moment a worker task ends.
"""

from __future__ import annotations

import asyncio
import collections
from typing import TYPE_CHECKING, Any, Literal
from urllib.parse import urlsplit

import asyncpg
import pytest
from pydantic import BaseModel
from recovery_support import FAST

from polyqueue import DatabaseUnavailableError, JobContext, Polyqueue
from polyqueue.embedded import EmbeddedPostgres
from polyqueue.producer import EnqueueOptions
from polyqueue.testing.helpers import eventually, running_worker
from polyqueue.testing.proxy import FaultProxy

if TYPE_CHECKING:
    from collections.abc import AsyncIterator
    from pathlib import Path

pytestmark = pytest.mark.slow

FAULTS: dict[str, Any] = {
    **FAST,
    "concurrency": 10,
    "worker_stale_after": 3.0,
    "max_reclaims": 10,
    "connect_timeout": 2.0,
    "statement_timeout": 1.0,
}
OUTAGE_SECONDS = 2.0  # the fault itself: how long the server is away


class Item(BaseModel):
    n: int


@pytest.fixture
async def server(tmp_path: Path) -> AsyncIterator[EmbeddedPostgres]:
    """A PostgreSQL server of this test's own, which it may stop, crash and start. Durable
    (fsync and synchronous commits on): a crash must not lose what it acknowledged."""
    embedded = EmbeddedPostgres(tmp_path / "pg", fsync=True)
    await asyncio.to_thread(embedded.start)
    try:
        yield embedded
    finally:
        await asyncio.to_thread(embedded.stop, force=True)


def port_of(server: EmbeddedPostgres) -> int:
    port = urlsplit(server.url).port
    assert port is not None
    return port


def counting_app(url: str, runs: collections.Counter[int], **settings: Any) -> Polyqueue:
    """An app whose `faults.work` handler counts its executions per item."""
    app = Polyqueue(database_url=url, queue_backend="postgres", **{**FAULTS, **settings})

    @app.register("faults.work", max_attempts=10)
    async def work(payload: Item, ctx: JobContext) -> int:
        runs[payload.n] += 1
        await asyncio.sleep(0.02)
        return payload.n

    return app


async def succeeded(app: Polyqueue, ids: list[int]) -> int:
    try:
        statuses = await app.store.job_status_many(ids)
    except DatabaseUnavailableError:
        return -1
    return list(statuses.values()).count("succeeded")


async def final_rows(url: str) -> dict[int, asyncpg.Record]:
    connection = await asyncpg.connect(url)
    try:
        rows = await connection.fetch(
            "SELECT id, status::text AS status, result::text AS result, attempt, reclaims"
            " FROM polyqueue.jobs"
        )
    finally:
        await connection.close()
    return {row["id"]: row for row in rows}


# -- PostgreSQL stopped under load, twice in a row ---------------------------------------------

JOBS = 300


@pytest.mark.parametrize("mode", ["fast", "immediate"])
async def test_postgres_stopped_twice_under_load_loses_nothing(
    server: EmbeddedPostgres, mode: Literal["fast", "immediate"]
) -> None:
    """`fast` sends FATAL 57P01 to every session (asyncpg then hands out a connection in an
    error state once: `InternalClientError`); `immediate` is a crash, so a claim or an outcome
    in flight may commit without its reply, and the last claims, which do not wait for the
    disk, may be lost (their jobs run again: docs/decisions.md). Either way the worker stays
    up (running_worker fails the test at once otherwise), every job ends succeeded, and a
    job whose outcome was stored never runs again."""
    runs: collections.Counter[int] = collections.Counter()
    app = counting_app(server.url, runs)
    async with app, running_worker(app) as worker:
        ids = await app.enqueue_many("faults.work", [Item(n=n) for n in range(JOBS)])
        runs_when_finished: dict[int, int] = {}
        for share in (0.2, 0.5):  # the second outage hits a worker recovered from the first

            async def under_way(share: float = share) -> bool:
                return await succeeded(app, ids) >= share * JOBS

            await eventually(under_way, timeout=60)
            statuses = await app.store.job_status_many(ids)
            finished = [i for i, s in statuses.items() if s == "succeeded"]
            runs_when_finished |= {i: runs[ids.index(i)] for i in finished}
            assert len(runs_when_finished) < JOBS  # the outage hits a running workload
            await asyncio.to_thread(server.stop, force=True, mode=mode)
            await asyncio.sleep(OUTAGE_SECONDS)
            await asyncio.to_thread(server.start)

        async def all_succeeded() -> bool:
            return await succeeded(app, ids) == JOBS

        await eventually(all_succeeded, timeout=90)
        assert worker.running_jobs == 0

    rows = await final_rows(server.url)
    assert len(rows) == JOBS
    for n, job_id in enumerate(ids):
        assert rows[job_id]["status"] == "succeeded", dict(rows[job_id])
        assert rows[job_id]["result"] == str(n)
        assert runs[n] >= 1
    for job_id, runs_then in runs_when_finished.items():  # a stored outcome is final
        assert runs[ids.index(job_id)] == runs_then


# -- a claim whose reply never arrives --------------------------------------------------------


async def test_a_claim_committed_without_its_reply_is_reclaimed_and_run(
    server: EmbeddedPostgres,
) -> None:
    """The database commits a claim for a live worker, and the reply is lost with the
    connection (here the claim is made by the test in the worker's name, exactly as the
    worker's statement would have; the crash tests above hit the same state by chance). The
    job sits `running` under a worker that never heard of it and never heartbeats it:
    maintenance reclaims it and it runs, once."""
    runs: collections.Counter[int] = collections.Counter()
    app = counting_app(server.url, runs, worker_stale_after=2.0)
    async with app, running_worker(app) as worker:
        worker_id = worker.id
        # The job without a notice: the worker could not find it on its own.
        jobs = app.producer.build("faults.work", [Item(n=7)], EnqueueOptions())
        (job,) = await app.store.job_insert_many(jobs, app.store.pool)
        (in_doubt,) = await app.store.job_claim_many([job.id], worker.id, 0.0)
        assert worker.running_jobs == 0  # it never heard of the claim

        async def done() -> bool:
            return await succeeded(app, [in_doubt.id]) == 1

        await eventually(done, timeout=60)
        assert worker.id == worker_id  # the worker itself was never declared dead

    rows = await final_rows(server.url)
    assert (rows[job.id]["attempt"], rows[job.id]["reclaims"]) == (2, 1)
    assert runs[7] == 1  # a claim in doubt costs a reclaim, not a second execution


# -- a black-holed connection -----------------------------------------------------------------


async def test_a_black_holed_database_fails_calls_instead_of_hanging(
    server: EmbeddedPostgres,
) -> None:
    """Bytes vanish without a reset: only the statement timeout can end the wait."""
    async with FaultProxy(port_of(server)) as proxy:
        app = Polyqueue(database_url=proxy.url_for(server.url), **FAULTS)
        async with app:
            proxy.set_mode("pause")
            with pytest.raises(DatabaseUnavailableError, match="database unavailable"):
                await app.store.job_status_many([1])
            proxy.set_mode("pass")
            assert await app.store.job_status_many([1]) == {}


async def test_a_worker_survives_a_black_hole_longer_than_its_lease(
    server: EmbeddedPostgres,
) -> None:
    runs: collections.Counter[int] = collections.Counter()
    async with FaultProxy(port_of(server)) as proxy:
        app = counting_app(proxy.url_for(server.url), runs)
        producer = counting_app(server.url, runs)
        async with app, producer, running_worker(app):
            ids = await producer.enqueue_many("faults.work", [Item(n=n) for n in range(100)])

            async def under_way() -> bool:
                return await succeeded(producer, ids) >= 10

            await eventually(under_way, timeout=30)
            proxy.set_mode("pause")
            await asyncio.sleep(FAULTS["worker_stale_after"] + FAULTS["lease_seconds"])
            proxy.set_mode("pass")

            async def all_succeeded() -> bool:
                return await succeeded(producer, ids) == len(ids)

            await eventually(all_succeeded, timeout=90)
    assert all(runs[n] >= 1 for n in range(100))


# -- shutdown with the database gone ----------------------------------------------------------


async def test_shutdown_with_the_database_gone_is_bounded_and_loses_nothing(
    server: EmbeddedPostgres,
) -> None:
    """The worker holds finished outcomes it cannot store and running jobs it cannot give
    back; it still stops (the grace period, then a few seconds) and the jobs are reclaimed
    by the next worker once the database is back."""
    release = asyncio.Event()
    runs: collections.Counter[int] = collections.Counter()
    app = Polyqueue(database_url=server.url, **{**FAULTS, "shutdown_grace_seconds": 1.0})

    @app.register("faults.held")
    async def held(payload: Item, ctx: JobContext) -> int:
        runs[payload.n] += 1
        if ctx.attempt == 1:
            await release.wait()
        return payload.n

    async with app:
        ids = await app.enqueue_many("faults.held", [Item(n=n) for n in range(6)])
        worker = app.worker(concurrency=6)
        task = asyncio.create_task(worker.run())

        async def all_running() -> bool:
            return worker.running_jobs == len(ids)

        await eventually(all_running, timeout=30)
        await asyncio.to_thread(server.stop, force=True, mode="immediate")
        release.set()  # every handler returns: no outcome can be stored
        worker.stop()
        await asyncio.wait_for(task, timeout=60)  # a bound against hanging, not a timing
        await asyncio.to_thread(server.start)
    second = Polyqueue(database_url=server.url, **FAULTS)
    second.handlers.update(app.handlers)
    async with second, running_worker(second):

        async def all_succeeded() -> bool:
            return await succeeded(second, ids) == len(ids)

        await eventually(all_succeeded, timeout=60)
