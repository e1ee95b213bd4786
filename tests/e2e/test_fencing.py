"""Fencing end to end: a worker that lost its claim cannot change the job any more."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

import pytest
from e2e_support import job_row, started, status_is, wait_done
from pydantic import BaseModel

from polyqueue import JobContext, JobStatus
from polyqueue.testing.helpers import eventually, running_worker

if TYPE_CHECKING:
    from collections.abc import Callable

    from polyqueue import Polyqueue


class Item(BaseModel):
    n: int


async def wait_ignoring_cancellation(event: asyncio.Event) -> None:
    """Wait for `event` like a handler that cannot be stopped: cancellation is swallowed.

    `requeue` tells the old worker to cancel its attempt, but that message is best-effort
    (a NOTIFY; lost while the worker's LISTEN connection is down) and a handler may not
    yield to it (a stuck `await`, a sync handler in a thread). Fencing must hold regardless.
    """
    while True:
        try:
            await event.wait()
        except asyncio.CancelledError:
            continue
        return


def two_apps(make_app: Callable[..., Polyqueue], queue_backend: str) -> tuple[Polyqueue, Polyqueue]:
    """App A (a stale worker's) and app B (the one that takes over).

    A's worker heartbeat is slowed down so that it does not notice the loss and cancel its
    handler: its late outcome must then reach the database and be fenced off there. With the
    in-process broker the two workers must share one app.
    """
    app_a = make_app(
        queue_backend=queue_backend, heartbeat_interval=60, lease_seconds=90, worker_stale_after=120
    )
    app_b = make_app(queue_backend=queue_backend) if queue_backend != "none" else app_a
    return app_a, app_b


@pytest.mark.parametrize("late", ["returns", "raises"])
async def test_stale_workers_late_outcome_changes_nothing(make_app, queue_backend, late) -> None:
    app_a, app_b = two_apps(make_app, queue_backend)
    release = {1: asyncio.Event(), 2: asyncio.Event()}
    began = {1: asyncio.Event(), 2: asyncio.Event()}

    def register(app: Polyqueue) -> None:
        @app.register("e2e.fenced", max_attempts=5)
        async def fenced(payload: Item, ctx: JobContext) -> dict[str, object]:
            began[ctx.attempt].set()
            await wait_ignoring_cancellation(release[ctx.attempt])
            if ctx.attempt == 1 and late == "raises":
                raise RuntimeError("late failure of the stale attempt")
            return {"attempt": ctx.attempt, "worker": ctx.worker_id}

    register(app_a)
    if app_b is not app_a:
        register(app_b)

    async with started(app_a, app_b), running_worker(app_a, concurrency=1) as worker_a:
        job_id = await app_a.enqueue("e2e.fenced", Item(n=1))
        await asyncio.wait_for(began[1].wait(), timeout=20)
        assert (await app_a.get_job(job_id)).worker_id == worker_a.id

        # Take the job away from A mid-run.
        assert await app_b.requeue(job_id)

        async with running_worker(app_b, concurrency=1) as worker_b:
            await asyncio.wait_for(began[2].wait(), timeout=20)
            taken = await app_b.get_job(job_id)
            assert taken.status is JobStatus.RUNNING
            assert taken.attempt == 2
            assert taken.worker_id == worker_b.id

            # A finishes late, while B still runs the job: A's write must change nothing.
            release[1].set()

            async def a_is_done() -> bool:
                return worker_a.running_jobs == 0

            await eventually(a_is_done)
            after_a = await job_row(app_b, job_id)
            assert after_a["status"] == "running"
            assert after_a["attempt"] == 2
            assert after_a["worker_id"] == worker_b.id
            assert after_a["result"] is None
            assert after_a["error_type"] is None
            assert after_a["finished_at"] is None
            assert after_a["timeout_at"] is None or after_a["timeout_at"] > after_a["started_at"]

            release[2].set()
            job = await wait_done(app_b, job_id, timeout=20)

    assert job.status is JobStatus.SUCCEEDED
    assert job.attempt == 2
    assert job.result == {"attempt": 2, "worker": worker_b.id}
    assert job.worker_id == worker_b.id
    assert job.error is None


async def test_stale_workers_late_outcome_after_the_new_one_finished(
    make_app, queue_backend
) -> None:
    app_a, app_b = two_apps(make_app, queue_backend)
    release_a = asyncio.Event()
    started_a = asyncio.Event()

    def register(app: Polyqueue) -> None:
        @app.register("e2e.fenced")
        async def fenced(payload: Item, ctx: JobContext) -> dict[str, object]:
            if ctx.attempt == 1:
                started_a.set()
                await wait_ignoring_cancellation(release_a)
            return {"attempt": ctx.attempt}

    register(app_a)
    if app_b is not app_a:
        register(app_b)

    async with started(app_a, app_b), running_worker(app_a, concurrency=1) as worker_a:
        job_id = await app_a.enqueue("e2e.fenced", Item(n=1))
        await asyncio.wait_for(started_a.wait(), timeout=20)
        assert await app_b.requeue(job_id)
        async with running_worker(app_b, concurrency=1):
            done = await wait_done(app_b, job_id, timeout=20)
            assert done.status is JobStatus.SUCCEEDED
            release_a.set()

            async def a_is_done() -> bool:
                return worker_a.running_jobs == 0

            await eventually(a_is_done)
            job = await app_b.get_job(job_id)

    assert job == done  # nothing changed: status, result, attempt, timestamps
    assert job.result == {"attempt": 2}


async def test_progress_of_a_stale_attempt_is_ignored(make_app) -> None:
    app = make_app(heartbeat_interval=60, lease_seconds=90, worker_stale_after=120)
    started = asyncio.Event()
    release = asyncio.Event()
    reported = asyncio.Event()

    @app.register("e2e.progress")
    async def progress(payload: Item, ctx: JobContext) -> None:
        if ctx.attempt == 1:
            started.set()
            await wait_ignoring_cancellation(release)
            await ctx.progress(0.9, "stale")  # must neither raise nor write
            reported.set()
            return
        await asyncio.Event().wait()

    async with app, running_worker(app, concurrency=1) as worker:
        job_id = await app.enqueue("e2e.progress", Item(n=1))
        await asyncio.wait_for(started.wait(), timeout=20)
        assert await app.requeue(job_id)

        async def told_to_stop() -> bool:  # the cancel NOTIFY reached the worker
            running = worker._running.get(job_id)
            return running is not None and running.stop_reason is not None

        await eventually(told_to_stop)
        release.set()
        await asyncio.wait_for(reported.wait(), timeout=20)
        row = await job_row(app, job_id)

    assert row["progress"] is None
    assert row["progress_message"] is None


async def test_requeue_stops_the_running_attempt_and_the_job_runs_again(
    make_app, queue_backend
) -> None:
    app_a, app_b = two_apps(make_app, queue_backend)
    started_a = asyncio.Event()
    stopped_a = asyncio.Event()

    def register(app: Polyqueue) -> None:
        @app.register("e2e.taken")
        async def taken(payload: Item, ctx: JobContext) -> dict[str, object]:
            if ctx.attempt == 1:
                started_a.set()
                try:
                    await asyncio.Event().wait()
                except asyncio.CancelledError:
                    stopped_a.set()
                    raise
            return {"attempt": ctx.attempt, "worker": ctx.worker_id}

    register(app_a)
    if app_b is not app_a:
        register(app_b)

    async with started(app_a, app_b), running_worker(app_a, concurrency=1) as worker_a:
        job_id = await app_a.enqueue("e2e.taken", Item(n=1))
        await asyncio.wait_for(started_a.wait(), timeout=20)
        assert await app_b.requeue(job_id)
        await asyncio.wait_for(stopped_a.wait(), timeout=20)

        async def a_let_go() -> bool:
            return worker_a.running_jobs == 0

        await eventually(a_let_go)
        async with running_worker(app_b, concurrency=1) as worker_b:
            job = await wait_done(app_b, job_id)

    assert job.status is JobStatus.SUCCEEDED
    assert job.attempt == 2
    assert job.result["attempt"] == 2
    assert job.worker_id in {worker_a.id, worker_b.id}


async def test_requeued_job_runs_again_when_its_old_worker_sees_the_notice(
    make_app, queue_backend
) -> None:
    """Requeue a running job while its worker has a free slot: the new notice reaches that
    worker, which must not swallow it because it still holds the old attempt."""
    app = make_app(queue_backend=queue_backend)
    started = asyncio.Event()

    @app.register("e2e.requeued")
    async def requeued(payload: Item, ctx: JobContext) -> int:
        if ctx.attempt == 1:
            started.set()
            await asyncio.Event().wait()  # the stale attempt hangs
        return ctx.attempt

    async with app, running_worker(app, concurrency=2):
        job_id = await app.enqueue("e2e.requeued", Item(n=1))
        await asyncio.wait_for(started.wait(), timeout=20)
        assert await app.requeue(job_id)

        async def succeeded() -> bool:
            return await status_is(app, job_id, "succeeded")

        await eventually(succeeded, timeout=10)
        job = await app.get_job(job_id)

    assert job.result == 2
