"""What a worker does with surprises from its own side: a handler that raises
`CancelledError` or `SystemExit`, a sync handler stuck past its time limit, a loop that
crashes, and the worker being declared dead while it runs."""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from typing import TYPE_CHECKING

import pytest
from pydantic import BaseModel

from polyqueue import JobContext, WorkerLoopError
from polyqueue.scheduler import Scheduler
from polyqueue.testing.helpers import eventually, running_worker

if TYPE_CHECKING:
    from polyqueue import Polyqueue


class Item(BaseModel):
    n: int


async def status_of(app: Polyqueue, job_id: int) -> str:
    return (await app.get_job(job_id)).status.value


# -- exceptions from handler code -------------------------------------------------------------


@pytest.mark.parametrize("kind", ["async", "sync"])
async def test_a_handler_raising_cancelled_error_fails_its_attempt(make_app, kind) -> None:
    """Not a cancellation Polyqueue asked for: an outcome like any other error, so the job is
    neither stranded `running` nor lost, and the worker goes on."""
    app = make_app(queue_backend="postgres")

    if kind == "async":

        @app.register("res.cancels", max_attempts=2)
        async def cancels(payload: Item) -> None:
            raise asyncio.CancelledError("raised by the handler's own code")
    else:

        @app.register("res.cancels", max_attempts=2)
        def cancels(payload: Item) -> None:
            raise asyncio.CancelledError("raised by the handler's own code")

    @app.register("res.fine")
    async def fine(payload: Item) -> int:
        return payload.n

    async with app, running_worker(app, concurrency=2):
        job_id = await app.enqueue("res.cancels", Item(n=1))
        after = await app.enqueue("res.fine", Item(n=2))
        job = await app.wait_for(job_id, timeout=60)
        assert job.status.value == "failed"
        assert job.attempt == 2  # retried once like any failure, then failed
        assert job.error is not None
        assert job.error.type == "CancelledError"
        assert (await app.wait_for(after, timeout=60)).status.value == "succeeded"


async def test_a_handler_raising_system_exit_fails_and_the_worker_goes_on(make_app) -> None:
    app = make_app(queue_backend="postgres")

    @app.register("res.exits", max_attempts=1)
    def exits(payload: Item) -> None:
        raise SystemExit(3)

    @app.register("res.fine")
    async def fine(payload: Item) -> int:
        return payload.n

    async with app, running_worker(app):
        job_id = await app.enqueue("res.exits", Item(n=1))
        job = await app.wait_for(job_id, timeout=60)
        assert (job.status.value, job.error.type if job.error else None) == ("failed", "SystemExit")
        after = await app.enqueue("res.fine", Item(n=2))
        assert (await app.wait_for(after, timeout=60)).status.value == "succeeded"


# -- sync handlers and their time limit -------------------------------------------------------

STUCK_SECONDS = 1.5  # how long the stuck handler holds its thread after its time limit


async def test_a_timed_out_sync_handler_keeps_its_slot_and_the_next_job_gets_its_full_time(
    make_app,
) -> None:
    """Concurrency 1. The first job's sync handler ignores its time limit and holds the only
    thread well past it. The second job may not start until that thread returns; its own
    time limit then starts when its thread does, so it runs and succeeds instead of timing
    out while it waited for a thread."""
    app = make_app(queue_backend="postgres")
    release = threading.Event()
    events: list[str] = []

    @app.register("res.stuck", max_run_seconds=0.3, timeout_strategy="fail")
    def stuck(payload: Item) -> None:
        release.wait(60)
        events.append("stuck returned")

    @app.register("res.next", max_run_seconds=0.5, timeout_strategy="fail")
    def next_job(payload: Item) -> int:
        events.append("next started")
        time.sleep(0.05)
        return payload.n

    async with app, running_worker(app, concurrency=1):
        first = await app.enqueue("res.stuck", Item(n=1))
        assert (await app.wait_for(first, timeout=60)).status.value == "failed"
        second = await app.enqueue("res.next", Item(n=2))
        await asyncio.sleep(STUCK_SECONDS)  # the fault: the thread stays stuck this long
        assert await status_of(app, second) == "queued"  # no slot while the thread is stuck
        release.set()
        job = await app.wait_for(second, timeout=60)
        assert job.status.value == "succeeded", job.error
        assert events == ["stuck returned", "next started"]


# -- supervised loops -------------------------------------------------------------------------


async def test_a_loop_that_crashes_is_logged_with_its_traceback_and_goes_on(
    make_app, monkeypatch, caplog
) -> None:
    app = make_app(queue_backend="postgres")
    crashes = 0
    promote = Scheduler.promote_due

    async def flaky(self: Scheduler) -> int:
        nonlocal crashes
        if crashes < 3:
            crashes += 1
            raise RuntimeError(f"surprise {crashes}")
        return await promote(self)

    monkeypatch.setattr(Scheduler, "promote_due", flaky)

    @app.register("res.later")
    async def later(payload: Item) -> int:
        return payload.n

    async with app, running_worker(app):
        job_id = await app.enqueue("res.later", Item(n=1), delay=0.2)
        assert (await app.wait_for(job_id, timeout=60)).status.value == "succeeded"
    logged = [r for r in caplog.records if "the scheduler crashed" in r.getMessage()]
    assert len(logged) == 3
    assert all(r.exc_info and "surprise" in str(r.exc_info[1]) for r in logged)


async def test_a_loop_that_keeps_crashing_stops_the_worker_with_an_error(
    make_app, monkeypatch
) -> None:
    app = make_app(queue_backend="postgres")
    monkeypatch.setattr("polyqueue.supervision.MAX_CRASHES", 3)

    async def broken(self: Scheduler) -> int:
        raise RuntimeError("always")

    monkeypatch.setattr(Scheduler, "promote_due", broken)

    @app.register("res.any")
    async def anything(payload: Item) -> None:
        return None

    async with app:
        worker = app.worker()
        with pytest.raises(WorkerLoopError, match="the scheduler kept crashing") as raised:
            await asyncio.wait_for(worker.run(), timeout=60)
        assert isinstance(raised.value.cause, RuntimeError)
        rows = await app.store.worker_list(10)
        assert [row["status"] for row in rows] == ["stopped"]  # a clean exit, then non-zero


# -- declared dead while alive ----------------------------------------------------------------


async def test_a_worker_declared_dead_registers_a_new_id_before_it_claims_again(
    make_app, db, caplog
) -> None:
    app = make_app(queue_backend="postgres")

    @app.register("res.work")
    async def work(payload: Item, ctx: JobContext) -> str:
        return ctx.worker_id

    async with app, running_worker(app) as worker:
        old = worker.id

        async def declared_dead() -> bool:
            done = await db.execute(
                "UPDATE polyqueue.workers SET status = 'dead' WHERE id = $1", old
            )
            return bool(done == "UPDATE 1")

        await eventually(declared_dead, timeout=30)  # once it has registered

        async def moved_on() -> bool:
            return worker.id != old

        await eventually(moved_on, timeout=30)
        status = await db.fetchval("SELECT status FROM polyqueue.workers WHERE id = $1", worker.id)
        assert status == "running"  # registered before anything is claimed under it
        job_id = await app.enqueue("res.work", Item(n=1))
        job = await app.wait_for(job_id, timeout=60)
        assert job.status.value == "succeeded"
        assert job.result == worker.id
    with caplog.at_level(logging.ERROR):
        assert any("was declared dead" in r.getMessage() for r in caplog.records)
