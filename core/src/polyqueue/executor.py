"""Runs one claimed attempt of a job and turns whatever happens into an `Outcome`."""

from __future__ import annotations

import asyncio
import contextvars
import logging
import math
import time
import traceback
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

from polyqueue.backoff import retry_delay
from polyqueue.exceptions import Retry, SerializationError, Snooze, TerminalError
from polyqueue.handlers import check_storable
from polyqueue.job import Outcome
from polyqueue.middleware import compose
from polyqueue.threads import HandlerThreads

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping, Sequence

    from polyqueue.context import JobContext
    from polyqueue.handlers import Handler
    from polyqueue.job import ClaimedJob
    from polyqueue.middleware import DispatchMiddleware
    from polyqueue.serializers import Serializer

__all__ = ["Executor", "RetryPolicy"]

log = logging.getLogger(__name__)

_sync_deadline: contextvars.ContextVar[tuple[asyncio.Timeout, float] | None] = (
    contextvars.ContextVar("polyqueue_sync_deadline", default=None)
)
"""The running sync handler's time limit, started by its thread (see `Executor._call`)."""


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """Exponential backoff between attempts: before retry `n` (after the `n`-th failed
    attempt of the current budget) wait up to `min(cap, base * 2 ** (n - 1))` seconds.

    With `jitter` (the default) the wait is uniform in `[0, that]` (full jitter); without, it
    is exactly that. The app-wide policy is `retry_backoff_base`/`retry_backoff_max`; give a
    handler its own with `register(retry_backoff=RetryPolicy(...))`. A policy is a callable
    `(attempt) -> seconds`, like any other `retry_backoff`.
    """

    base: float
    cap: float
    jitter: bool = True

    def __post_init__(self) -> None:
        for field, value in (("base", self.base), ("cap", self.cap)):
            if not (math.isfinite(value) and value >= 0):
                raise ValueError(f"RetryPolicy.{field} must be a finite number >= 0, not {value!r}")

    def delay(self, attempt: int) -> float:
        """Seconds to wait before the retry that follows failed attempt `attempt`."""
        if self.jitter:
            return retry_delay(attempt, self.base, self.cap)
        return min(self.cap, self.base * 2.0 ** min(attempt - 1, 62))

    def __call__(self, attempt: int) -> float:
        """The same as `delay`: a policy is a `retry_backoff` callable."""
        return self.delay(attempt)


class Executor:
    """Calls handlers through the dispatch middleware: async ones on the loop, sync ones on
    daemon threads (`HandlerThreads`)."""

    def __init__(
        self,
        retry: RetryPolicy,
        threads: int,
        handlers: Mapping[str, Handler],
        serializer: Serializer,
        middlewares: Sequence[DispatchMiddleware] = (),
        *,
        on_thread_released: Callable[[], None] = lambda: None,
    ) -> None:
        self._retry = retry
        self._serializer = serializer
        self._handlers = handlers
        self._threads = HandlerThreads(threads, on_released=on_thread_released)
        self._chain = compose(list(middlewares), self._call)

    @property
    def stuck_threads(self) -> int:
        """Sync handlers whose job is over (timed out, stopped) but whose thread still runs:
        each keeps its slot until it returns."""
        return self._threads.abandoned

    def close(self) -> None:
        """Let the threads go without waiting for stuck sync handlers."""
        self._threads.close()

    async def run(self, handler: Handler, job: ClaimedJob, ctx: JobContext) -> Outcome:
        """Run `job` with `handler`; every exception but cancellation becomes an outcome."""
        started = time.perf_counter()
        outcome = await self._run(handler, job, ctx)
        return replace(outcome, duration=time.perf_counter() - started)

    async def _run(self, handler: Handler, job: ClaimedJob, ctx: JobContext) -> Outcome:
        limit = job.max_run_seconds if job.timeout_strategy != "ignore" else None
        try:
            ctx.payload = handler.decode_payload(job.payload)
            # A sync handler's clock starts when its thread does (`_call`), not while it waits.
            async with asyncio.timeout(limit if handler.is_async else None) as deadline:
                token = _sync_deadline.set(None if limit is None else (deadline, limit))
                try:
                    value = await self._chain(ctx)
                finally:
                    _sync_deadline.reset(token)
            return Outcome(job.id, job.attempt, "succeeded", result=self._encode(value))
        except TimeoutError as exc:
            if limit is not None and deadline.expired():
                return replace(self._timed_out(job, limit, exc), timed_out=True)
            return self.failure(job, exc)
        except asyncio.CancelledError as exc:
            task = asyncio.current_task()
            if task is not None and task.cancelling():
                raise  # Polyqueue stops this job (shutdown, lost claim, operator's cancel)
            return self.failure(job, exc)  # raised by the handler's own code: a failure
        except Exception as exc:  # any handler error is an outcome
            return self.failure(job, exc)
        except BaseException as exc:  # SystemExit, KeyboardInterrupt raised by handler code
            log.warning("job %s: the handler raised %s; failing the attempt", job.id, exc)
            return self.failure(job, exc)

    def _encode(self, value: Any) -> str:
        try:
            encoded = self._serializer.dumps(value)
        except SerializationError as exc:
            raise SerializationError(f"the return value: {exc}") from exc
        check_storable(encoded, "the return value")
        return encoded

    async def _call(self, ctx: JobContext) -> Any:
        handler = self._handlers[ctx.name]
        args = (ctx.payload, ctx) if handler.takes_context else (ctx.payload,)
        if handler.is_async:
            return await handler.function(*args)
        limit = _sync_deadline.get()

        def start_clock() -> None:
            if limit is not None:
                deadline, seconds = limit
                deadline.reschedule(asyncio.get_running_loop().time() + seconds)

        return await self._threads.run(handler.function, *args, on_start=start_clock)

    def failure(self, job: ClaimedJob, exc: BaseException) -> Outcome:
        """A retry after backoff (or after a `Retry`'s own delay), or a failure if `exc` is
        terminal or attempts are spent; a `Snooze` is none of these: it uses no attempt."""
        if isinstance(exc, Snooze):
            return Outcome(job.id, job.attempt, "scheduled", delay=exc.delay, snoozed=True)
        terminal = isinstance(exc, TerminalError | SerializationError)
        if terminal or not job.attempts_left:
            outcome = _error_outcome(job, "failed", exc)
            return replace(outcome, expected=isinstance(exc, TerminalError))
        if isinstance(exc, Retry):
            delay = self.backoff(job) if exc.delay is None else exc.delay
            return replace(_error_outcome(job, "scheduled", exc, delay=delay), expected=True)
        return _error_outcome(job, "scheduled", exc, delay=self.backoff(job))

    def backoff(self, job: ClaimedJob) -> float:
        """Seconds before retrying `job`'s failed attempt: its handler's `retry_backoff` if
        it has one and that gives a delay, else the app-wide policy."""
        retry = job.attempt - job.attempt_base
        handler = self._handlers.get(job.name)
        custom = None if handler is None else handler.retry_backoff
        if custom is None:
            return self._retry.delay(retry)
        try:
            delay = float(custom(retry))
        except Exception:
            log.warning(
                "job %s: the retry backoff of %r raised; using the default backoff",
                job.id,
                job.name,
                exc_info=True,
            )
            return self._retry.delay(retry)
        if not (math.isfinite(delay) and delay >= 0):
            log.warning(
                "job %s: the retry backoff of %r returned %r, not a delay in seconds >= 0;"
                " using the default backoff",
                job.id,
                job.name,
                delay,
            )
            return self._retry.delay(retry)
        return delay

    def _timed_out(self, job: ClaimedJob, limit: float, cause: TimeoutError) -> Outcome:
        error = TimeoutError(f"job exceeded its time limit of {limit:g}s")
        error.__cause__ = cause
        if job.timeout_strategy == "fail":
            return _error_outcome(job, "failed", error, with_traceback=False)
        return self.failure(job, error)


def _error_outcome(
    job: ClaimedJob,
    status: Any,
    exc: BaseException,
    *,
    delay: float = 0.0,
    with_traceback: bool = True,
) -> Outcome:
    text = "".join(traceback.format_exception(exc)) if with_traceback else None
    return Outcome(
        job.id,
        job.attempt,
        status,
        error_type=type(exc).__qualname__,
        error_message=_storable_text(str(exc)),
        error_traceback=None if text is None else _storable_text(text),
        delay=delay,
    )


def _storable_text(text: str) -> str:
    """PostgreSQL text cannot hold NUL characters: show them escaped instead."""
    return text.replace("\x00", "\\x00")
