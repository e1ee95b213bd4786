"""Flow control from the handler: `Snooze`, `Retry(delay=...)` and a handler's own backoff.

Every job runs on a real PostgreSQL (the fixtures in tests/conftest.py). Delays are checked
against the database's own clock: `run_at` lies between `now() + delay` read before the run
and read after it, so nothing depends on how fast the run was.
"""

from __future__ import annotations

import logging
import math
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

import pytest
from pydantic import BaseModel

from polyqueue import (
    ConfigurationError,
    JobContext,
    JobStatus,
    Retry,
    RetryPolicy,
    Snooze,
    hookimpl,
)
from polyqueue.events import JobEvent, JobSnoozed
from polyqueue.job import Outcome
from polyqueue.testing.helpers import running_worker

if TYPE_CHECKING:
    from collections.abc import Callable

    import asyncpg

    from polyqueue import Polyqueue

NO_DB = "postgresql://localhost/not_used"  # for apps that are built but never started
HOUR = timedelta(hours=1)


class Item(BaseModel):
    n: int = 0


class Events:
    """Records every job event the core emits after a run, as `(kind, event)`."""

    KINDS = ("started", "succeeded", "retrying", "failed", "snoozed")

    def __init__(self, manager: Any) -> None:
        self.seen: list[tuple[str, JobEvent]] = []
        for kind in self.KINDS:
            manager.register(self._recorder(kind), name=f"test-events-{kind}")

    def names(self, job_id: int) -> list[str]:
        return [name for name, event in self.seen if event.job_id == job_id]

    def _recorder(self, kind: str) -> object:
        def hook(_: object, event: JobEvent) -> None:
            self.seen.append((kind, event))

        return type(f"Record_{kind}", (), {f"polyqueue_job_{kind}": hookimpl(hook)})()


async def db_now(db: asyncpg.Connection) -> datetime:
    now: datetime = await db.fetchval("SELECT now()")
    return now


async def row(db: asyncpg.Connection, job_id: int) -> Any:
    return await db.fetchrow(
        "SELECT status::text AS status, attempt, attempt_base, run_at, error_type, error_message,"
        " error_traceback, worker_id, finished_at FROM polyqueue.jobs WHERE id = $1",
        job_id,
    )


async def run_once(app: Polyqueue, db: asyncpg.Connection) -> tuple[datetime, datetime]:
    """Run the ready jobs; return the database's `now()` before and after."""
    before = await db_now(db)
    await app.run_until_idle()
    return before, await db_now(db)


async def make_due(db: asyncpg.Connection, job_id: int) -> None:
    """A scheduled job's time has come (instead of waiting for it)."""
    await db.execute("UPDATE polyqueue.jobs SET run_at = now() WHERE id = $1", job_id)


def assert_due_after(run_at: datetime, window: tuple[datetime, datetime], seconds: float) -> None:
    before, after = window
    delay = timedelta(seconds=seconds)
    assert before + delay <= run_at <= after + delay


# -- Snooze ---------------------------------------------------------------------------------


async def test_a_snooze_reschedules_at_its_delay_and_uses_no_attempt(
    make_app: Any, db: asyncpg.Connection, caplog: pytest.LogCaptureFixture
) -> None:
    app = make_app()
    events = Events(app.plugin_manager)

    @app.register("later", max_attempts=1)
    async def later(payload: Item) -> None:
        raise Snooze(HOUR)

    caplog.set_level(logging.INFO, logger="polyqueue.jobs")
    async with app:
        job_id = await app.enqueue("later", Item())
        window = await run_once(app, db)
        job = await row(db, job_id)
        assert (job["status"], job["attempt"], job["attempt_base"]) == ("scheduled", 1, 1)
        assert_due_after(job["run_at"], window, 3600)
        # not an error: nothing is stored as one, and the job is not finished
        assert (job["error_type"], job["worker_id"], job["finished_at"]) == (None, None, None)
        assert (await app.get_job(job_id)).status is JobStatus.SCHEDULED
    assert events.names(job_id) == ["started", "snoozed"]
    (_, snoozed) = events.seen[-1]
    assert isinstance(snoozed, JobSnoozed)
    assert (snoozed.attempt, snoozed.delay) == (1, 3600.0)
    lines = [r.getMessage() for r in caplog.records if r.name == "polyqueue.jobs"]
    assert any(line.endswith("runs again in 3600.00s") for line in lines), lines
    assert not any("failed" in line for line in lines)


@pytest.mark.parametrize("kind", ["async", "sync"])
async def test_a_job_that_snoozes_twice_then_succeeds_has_one_attempt_counted(
    make_app: Any, db: asyncpg.Connection, kind: str
) -> None:
    app = make_app()
    seen: list[int] = []

    def body(ctx: JobContext) -> int:
        seen.append(ctx.attempt)
        if len(seen) <= 2:
            raise Snooze(0)  # due at once: the same run picks it up again
        return ctx.attempt

    if kind == "async":

        @app.register("snoozy", max_attempts=1)
        async def snoozy(payload: Item, ctx: JobContext) -> int:
            return body(ctx)

    else:

        @app.register("snoozy", max_attempts=1)
        def snoozy_sync(payload: Item, ctx: JobContext) -> int:
            return body(ctx)

    async with app:
        job_id = await app.enqueue("snoozy", Item())
        await app.run_until_idle()
        assert await app.get_job_result(job_id) == 3
    job = await row(db, job_id)
    # three claims, of which two were snoozes: one attempt counted, within max_attempts=1
    assert (job["status"], job["attempt"], job["attempt_base"]) == ("succeeded", 3, 2)
    assert job["attempt"] - job["attempt_base"] == 1
    assert job["error_type"] is None
    assert seen == [1, 2, 3]


async def test_snoozes_do_not_spend_the_attempts_a_later_failure_has(
    make_app: Any, db: asyncpg.Connection
) -> None:
    app = make_app(retry_backoff_base=0.0, retry_backoff_max=0.0)
    seen: list[str] = []

    @app.register("snooze-then-fail", max_attempts=2)
    async def snooze_then_fail(payload: Item) -> None:
        seen.append("snooze" if len(seen) < 5 else "fail")
        if seen[-1] == "snooze":
            raise Snooze(0)
        raise ValueError("broken")

    async with app:
        job_id = await app.enqueue("snooze-then-fail", Item())
        await app.run_until_idle()
    job = await row(db, job_id)
    assert seen == ["snooze"] * 5 + ["fail"] * 2  # five snoozes, then both attempts
    assert (job["status"], job["error_type"]) == ("failed", "ValueError")
    assert job["attempt"] - job["attempt_base"] == 2


async def test_the_snooze_of_a_stale_attempt_changes_nothing(
    make_app: Any, db: asyncpg.Connection
) -> None:
    app = make_app()

    @app.register("taken")
    async def taken(payload: Item) -> None:
        raise AssertionError("run by hand in this test")

    async with app:
        job_id = await app.enqueue("taken", Item())
        (first,) = await app.store.job_claim_many([job_id], "worker-a", 0)
        assert await app.requeue(job_id)  # an operator takes it away from worker-a
        (second,) = await app.store.job_claim_many([job_id], "worker-b", 0)
        before = await row(db, job_id)
        late = Outcome(job_id, first.attempt, "scheduled", delay=3600.0, snoozed=True)
        assert await app.store.job_complete_many([late]) == {}
        assert await row(db, job_id) == before  # attempt_base and run_at untouched too
        assert (before["status"], before["attempt"]) == ("running", second.attempt)
        current = Outcome(job_id, second.attempt, "scheduled", delay=3600.0, snoozed=True)
        assert set(await app.store.job_complete_many([current])) == {job_id}
    after = await row(db, job_id)
    assert after["status"] == "scheduled"
    assert after["attempt_base"] == before["attempt_base"] + 1


def test_a_snooze_delay_is_seconds_or_a_timedelta_never_negative() -> None:
    assert Snooze(timedelta(minutes=2)).delay == 120.0
    assert Snooze(5).delay == 5.0
    for bad in (-1, math.nan, math.inf, timedelta(seconds=-1)):
        with pytest.raises(ValueError, match="snooze"):
            Snooze(bad)


# -- Retry ----------------------------------------------------------------------------------


async def test_retry_with_a_delay_counts_the_attempt_then_fails_with_its_reason(
    make_app: Any, db: asyncpg.Connection, caplog: pytest.LogCaptureFixture
) -> None:
    app = make_app()
    events = Events(app.plugin_manager)

    @app.register("limited", max_attempts=2)
    async def limited(payload: Item) -> None:
        raise Retry(delay=timedelta(minutes=10), reason="rate limited upstream")

    caplog.set_level(logging.INFO, logger="polyqueue.jobs")
    async with app:
        job_id = await app.enqueue("limited", Item())
        window = await run_once(app, db)
        job = await row(db, job_id)
        assert (job["status"], job["attempt"], job["attempt_base"]) == ("scheduled", 1, 0)
        assert_due_after(job["run_at"], window, 600)
        assert (job["error_type"], job["error_message"]) == ("Retry", "rate limited upstream")
        retrying = [r for r in caplog.records if "retrying in 600.00s" in r.getMessage()]
        assert len(retrying) == 1
        assert retrying[0].exc_text is None  # asked for: one line, no traceback

        await make_due(db, job_id)
        await app.run_until_idle()
        failed = await app.get_job(job_id)
    assert (failed.status, failed.attempt) == (JobStatus.FAILED, 2)
    assert failed.error is not None
    assert (failed.error.type, failed.error.message) == ("Retry", "rate limited upstream")
    assert failed.error.traceback is not None
    assert "limited" in failed.error.traceback
    assert events.names(job_id) == ["started", "retrying", "started", "failed"]
    retry_event = next(event for name, event in events.seen if name == "retrying")
    assert retry_event.delay == 600.0  # type: ignore[attr-defined]


async def test_retry_without_a_delay_uses_the_handler_backoff(
    make_app: Any, db: asyncpg.Connection
) -> None:
    app = make_app()

    @app.register("plain", max_attempts=2, retry_backoff=lambda attempt: 900.0)
    async def plain(payload: Item) -> None:
        raise Retry

    async with app:
        job_id = await app.enqueue("plain", Item())
        window = await run_once(app, db)
    job = await row(db, job_id)
    assert (job["status"], job["error_message"]) == ("scheduled", "the handler asked for a retry")
    assert_due_after(job["run_at"], window, 900)


def test_a_retry_delay_is_checked() -> None:
    assert Retry(delay=timedelta(seconds=3)).delay == 3.0
    assert Retry().delay is None
    with pytest.raises(ValueError, match="retry"):
        Retry(delay=-0.5)


# -- a handler's own backoff ----------------------------------------------------------------


async def test_a_handler_backoff_sets_each_retry_delay(
    make_app: Any, db: asyncpg.Connection
) -> None:
    app = make_app()
    asked: list[int] = []

    def linear(attempt: int) -> float:
        asked.append(attempt)
        return 1000.0 * attempt

    @app.register("linear", max_attempts=3, retry_backoff=linear)
    async def flaky(payload: Item) -> None:
        raise ConnectionError("down")

    @app.register("policy", max_attempts=3, retry_backoff=RetryPolicy(500, 700, jitter=False))
    async def flaky_too(payload: Item) -> None:
        raise ConnectionError("down")

    async with app:
        by_function = await app.enqueue("linear", Item())
        by_policy = await app.enqueue("policy", Item())
        window = await run_once(app, db)
        assert_due_after((await row(db, by_function))["run_at"], window, 1000)
        assert_due_after((await row(db, by_policy))["run_at"], window, 500)
        for job_id in (by_function, by_policy):
            await make_due(db, job_id)
        window = await run_once(app, db)
        assert_due_after((await row(db, by_function))["run_at"], window, 2000)
        assert_due_after((await row(db, by_policy))["run_at"], window, 700)  # the cap
    assert asked == [1, 2]  # the failed attempt's number within the budget


def bad_backoff(attempt: int) -> float:
    raise ZeroDivisionError("a bug in the backoff")


@pytest.mark.parametrize(
    "backoff",
    [bad_backoff, lambda attempt: -5.0, lambda attempt: math.nan, lambda attempt: "soon"],
    ids=["raises", "negative", "nan", "not-a-number"],
)
async def test_a_broken_backoff_falls_back_to_the_default_and_the_worker_lives(
    make_app: Any, caplog: pytest.LogCaptureFixture, backoff: Callable[[int], Any]
) -> None:
    app = make_app(retry_backoff_base=0.0, retry_backoff_max=0.0)  # the default: at once

    @app.register("shaky", max_attempts=2, retry_backoff=backoff)
    async def shaky(payload: Item, ctx: JobContext) -> int:
        if ctx.attempt == 1:
            raise ConnectionError("first attempt fails")
        return ctx.attempt

    @app.register("fine")
    async def fine(payload: Item) -> int:
        return payload.n

    caplog.set_level(logging.WARNING, logger="polyqueue.executor")
    async with app, running_worker(app):  # fails the test should the worker's task end
        job = await app.wait_for(await app.enqueue("shaky", Item()), timeout=30)
        assert (job.status, job.attempt) == (JobStatus.SUCCEEDED, 2)
        after = await app.wait_for(await app.enqueue("fine", Item(n=7)), timeout=30)
        assert after.status is JobStatus.SUCCEEDED
    (warning,) = [r for r in caplog.records if "retry backoff of 'shaky'" in r.getMessage()]
    assert warning.levelno == logging.WARNING
    assert "using the default backoff" in warning.getMessage()


def test_retry_backoff_must_be_callable() -> None:
    from polyqueue import Polyqueue  # noqa: PLC0415

    app = Polyqueue(database_url=NO_DB)
    with pytest.raises(ConfigurationError, match="retry_backoff must be a RetryPolicy"):

        @app.register("bad", retry_backoff=5)  # type: ignore[arg-type]
        async def bad(payload: Item) -> None: ...


def test_retry_policy_delays() -> None:
    exact = RetryPolicy(base=1, cap=10, jitter=False)
    assert [exact(n) for n in range(1, 7)] == [1, 2, 4, 8, 10, 10]
    jittered = RetryPolicy(base=1, cap=10)
    assert all(0 <= jittered(n) <= min(10, 2 ** (n - 1)) for n in range(1, 7))
    with pytest.raises(ValueError, match="base"):
        RetryPolicy(base=-1, cap=10)
    with pytest.raises(ValueError, match="cap"):
        RetryPolicy(base=1, cap=math.nan)
