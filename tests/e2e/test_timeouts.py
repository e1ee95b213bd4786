"""`max_run_seconds` end to end, with each timeout strategy: retry, fail, ignore."""

from __future__ import annotations

import asyncio

from e2e_support import wait_done
from pydantic import BaseModel

from polyqueue import JobContext, JobStatus
from polyqueue.testing.helpers import running_worker

LIMIT = 0.3


class Item(BaseModel):
    n: int


async def test_retry_strategy_retries_then_fails_with_a_timeout_error(
    make_app, queue_backend
) -> None:
    app = make_app(queue_backend=queue_backend)
    attempts: list[int] = []

    @app.register("e2e.hangs", max_attempts=3, max_run_seconds=LIMIT, timeout_strategy="retry")
    async def hangs(payload: Item, ctx: JobContext) -> None:
        attempts.append(ctx.attempt)
        await asyncio.Event().wait()  # forever

    async with app, running_worker(app):
        job = await wait_done(app, await app.enqueue("e2e.hangs", Item(n=1)), timeout=30)

    assert job.status is JobStatus.FAILED
    assert job.attempt == 3
    assert attempts == [1, 2, 3]
    assert job.error is not None
    assert job.error.type == "TimeoutError"
    assert "time limit" in job.error.message
    assert "0.3" in job.error.message


async def test_fail_strategy_fails_after_one_attempt(make_app, queue_backend) -> None:
    app = make_app(queue_backend=queue_backend)
    attempts: list[int] = []

    @app.register("e2e.hangs", max_attempts=3, max_run_seconds=LIMIT, timeout_strategy="fail")
    async def hangs(payload: Item, ctx: JobContext) -> None:
        attempts.append(ctx.attempt)
        await asyncio.Event().wait()

    async with app, running_worker(app):
        job = await wait_done(app, await app.enqueue("e2e.hangs", Item(n=1)), timeout=30)

    assert job.status is JobStatus.FAILED
    assert job.attempt == 1
    assert attempts == [1]
    assert job.error is not None
    assert job.error.type == "TimeoutError"
    assert "time limit" in job.error.message


async def test_ignore_strategy_lets_the_handler_run_past_the_limit(make_app, queue_backend) -> None:
    app = make_app(queue_backend=queue_backend)

    @app.register("e2e.slow", max_attempts=3, max_run_seconds=LIMIT, timeout_strategy="ignore")
    async def slow(payload: Item) -> int:
        await asyncio.sleep(LIMIT + 1.0)  # well past the limit: the behaviour under test
        return payload.n

    async with app, running_worker(app):
        job_id = await app.enqueue("e2e.slow", Item(n=5))
        job = await wait_done(app, job_id, timeout=30)

    assert job.status is JobStatus.SUCCEEDED
    assert job.attempt == 1
    assert job.result == 5
    assert job.timeout_at is None  # no database backstop for an ignored limit


async def test_a_job_within_its_limit_is_unaffected(make_app) -> None:
    app = make_app()

    @app.register("e2e.quick", max_run_seconds=30, timeout_strategy="fail")
    async def quick(payload: Item) -> int:
        return payload.n

    async with app, running_worker(app):
        job_id = await app.enqueue("e2e.quick", Item(n=5))
        job = await wait_done(app, job_id, timeout=30)

    assert job.status is JobStatus.SUCCEEDED
    assert job.result == 5
    assert job.timeout_at is None  # cleared with the outcome


async def test_running_job_has_a_database_timeout_backstop(make_app) -> None:
    app = make_app()
    started = asyncio.Event()

    @app.register("e2e.hangs", max_run_seconds=30, timeout_strategy="fail")
    async def hangs(payload: Item) -> None:
        started.set()
        await asyncio.Event().wait()

    async with app, running_worker(app):
        job_id = await app.enqueue("e2e.hangs", Item(n=1))
        await asyncio.wait_for(started.wait(), timeout=20)
        job = await app.get_job(job_id)

    assert job.status is JobStatus.RUNNING
    assert job.started_at is not None
    assert job.timeout_at is not None
    assert (job.timeout_at - job.started_at).total_seconds() >= 30
