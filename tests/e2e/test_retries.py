"""Retries end to end: attempts, exponential backoff with full jitter, TerminalError."""

from __future__ import annotations

import collections
from datetime import timedelta

from e2e_support import all_finished, wait_done
from pydantic import BaseModel

from polyqueue import JobContext, JobStatus, TerminalError
from polyqueue.testing.helpers import eventually, running_worker


class Item(BaseModel):
    n: int


async def test_flaky_handler_succeeds_on_the_third_attempt(make_app, queue_backend) -> None:
    app = make_app(queue_backend=queue_backend)
    seen: list[int] = []

    @app.register("e2e.flaky", max_attempts=5)
    async def flaky(payload: Item, ctx: JobContext) -> dict[str, int]:
        seen.append(ctx.attempt)
        if ctx.attempt < 3:
            raise ConnectionError(f"transient failure on attempt {ctx.attempt}")
        return {"n": payload.n, "attempt": ctx.attempt}

    async with app, running_worker(app):
        job = await wait_done(app, await app.enqueue("e2e.flaky", Item(n=1)), timeout=20)

    assert job.status is JobStatus.SUCCEEDED
    assert job.attempt == 3
    assert seen == [1, 2, 3]
    assert job.result == {"n": 1, "attempt": 3}


async def test_always_failing_job_is_failed_after_max_attempts(make_app, queue_backend) -> None:
    app = make_app(queue_backend=queue_backend)
    seen: list[int] = []

    @app.register("e2e.broken", max_attempts=3)
    async def broken_handler(payload: Item, ctx: JobContext) -> None:
        seen.append(ctx.attempt)
        raise ValueError(f"boom on attempt {ctx.attempt}")

    async with app, running_worker(app):
        job = await wait_done(app, await app.enqueue("e2e.broken", Item(n=1)), timeout=20)

    assert job.status is JobStatus.FAILED
    assert job.attempt == 3
    assert seen == [1, 2, 3]
    assert job.error is not None
    assert job.error.type == "ValueError"
    assert job.error.message == "boom on attempt 3"
    assert job.error.traceback is not None
    assert "broken_handler" in job.error.traceback
    assert "ValueError: boom on attempt 3" in job.error.traceback
    assert job.finished_at is not None
    assert job.result is None


async def test_terminal_error_fails_at_once(make_app, queue_backend) -> None:
    app = make_app(queue_backend=queue_backend)
    calls = 0

    @app.register("e2e.terminal", max_attempts=5)
    async def terminal(payload: Item) -> None:
        nonlocal calls
        calls += 1
        raise TerminalError(f"item {payload.n} can never work")

    async with app, running_worker(app):
        job = await wait_done(app, await app.enqueue("e2e.terminal", Item(n=4)), timeout=20)

    assert job.status is JobStatus.FAILED
    assert job.attempt == 1
    assert calls == 1
    assert job.error is not None
    assert job.error.type == "TerminalError"
    assert job.error.message == "item 4 can never work"


async def test_enqueue_max_attempts_overrides_the_handler(make_app, queue_backend) -> None:
    app = make_app(queue_backend=queue_backend)

    @app.register("e2e.fails", max_attempts=5)
    async def fails(payload: Item) -> None:
        raise RuntimeError("no")

    async with app, running_worker(app):
        job_id = await app.enqueue("e2e.fails", Item(n=1), max_attempts=2)
        job = await wait_done(app, job_id, timeout=20)

    assert job.status is JobStatus.FAILED
    assert job.attempt == 2


async def test_every_retried_job_is_run_again(make_app, queue_backend) -> None:
    """Many jobs retrying at once: none may be left behind (each retry needs a new notice)."""
    app = make_app(queue_backend=queue_backend)
    runs: collections.Counter[int] = collections.Counter()

    @app.register("e2e.once_more", max_attempts=3)
    async def once_more(payload: Item, ctx: JobContext) -> int:
        runs[payload.n] += 1
        if ctx.attempt == 1:
            raise RuntimeError("first attempt fails")
        return payload.n

    async with app, running_worker(app, concurrency=10):
        ids = await app.enqueue_many("e2e.once_more", [Item(n=n) for n in range(60)])

        async def finished() -> bool:
            return await all_finished(app, ids)

        await eventually(finished, timeout=30)
        jobs = [await app.get_job(i) for i in ids]

    assert [j.status for j in jobs] == [JobStatus.SUCCEEDED] * 60
    assert [j.attempt for j in jobs] == [2] * 60
    assert runs == dict.fromkeys(range(60), 2)


async def test_backoff_is_exponential_with_full_jitter(make_app) -> None:
    """Delays are drawn from [0, base * 2**(n-1)]: checked on stored `run_at`, not by timing."""
    base = 1000.0
    app = make_app(retry_backoff_base=base, retry_backoff_max=100 * base)
    count = 20

    @app.register("e2e.always_fails", max_attempts=5)
    async def always_fails(payload: Item) -> None:
        raise RuntimeError("again")

    async def delays_after(attempt: int) -> list[float]:
        async def all_waiting() -> bool:
            n = await app.store.pool.fetchval(
                "SELECT count(*) FROM polyqueue.jobs WHERE status = 'scheduled' AND attempt = $1",
                attempt,
            )
            return n == count

        await eventually(all_waiting)
        rows = await app.store.pool.fetch(
            "SELECT run_at - started_at AS delay, error_type FROM polyqueue.jobs"
        )
        assert {r["error_type"] for r in rows} == {"RuntimeError"}
        return [r["delay"] / timedelta(seconds=1) for r in rows]

    async with app, running_worker(app, concurrency=count):
        await app.enqueue_many("e2e.always_fails", [Item(n=n) for n in range(count)])
        first = await delays_after(1)
        # Make the retries due now; the scheduler promotes them for their second attempt.
        await app.store.pool.execute("UPDATE polyqueue.jobs SET run_at = now()")
        second = await delays_after(2)

    slack = 10.0  # run_at is measured from the claim, not from the failure
    assert all(0 <= d <= base + slack for d in first), first
    assert all(0 <= d <= 2 * base + slack for d in second), second
    # Full jitter: spread over the whole range, not clustered at the ceiling.
    assert max(first) - min(first) > base / 10, first
    assert min(first) < base / 2, first
    # Exponential: the second ceiling is twice the first (P(all 20 <= base) = 2**-20).
    assert max(second) > base, second
