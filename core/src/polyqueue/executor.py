"""Runs one claimed attempt of a job and turns whatever happens into an `Outcome`."""

from __future__ import annotations

import asyncio
import contextvars
import functools
import logging
import time
import traceback
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

from polyqueue.backoff import retry_delay
from polyqueue.exceptions import SerializationError, TerminalError
from polyqueue.handlers import check_storable
from polyqueue.job import Outcome
from polyqueue.middleware import compose

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence

    from polyqueue.context import JobContext
    from polyqueue.handlers import Handler
    from polyqueue.job import ClaimedJob
    from polyqueue.middleware import DispatchMiddleware
    from polyqueue.serializers import Serializer

__all__ = ["Executor", "RetryPolicy"]

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """Exponential backoff with full jitter between attempts."""

    base: float
    cap: float

    def delay(self, attempt: int) -> float:
        """Seconds to wait before the retry that follows failed attempt `attempt`."""
        return retry_delay(attempt, self.base, self.cap)


class Executor:
    """Calls handlers through the dispatch middleware: async ones on the loop, sync ones in
    a thread pool."""

    def __init__(
        self,
        retry: RetryPolicy,
        threads: int,
        handlers: Mapping[str, Handler],
        serializer: Serializer,
        middlewares: Sequence[DispatchMiddleware] = (),
    ) -> None:
        self._retry = retry
        self._serializer = serializer
        self._handlers = handlers
        self._threads = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="polyqueue")
        self._chain = compose(list(middlewares), self._call)

    def close(self) -> None:
        """Stop the thread pool without waiting for stuck sync handlers."""
        self._threads.shutdown(wait=False, cancel_futures=True)

    async def run(self, handler: Handler, job: ClaimedJob, ctx: JobContext) -> Outcome:
        """Run `job` with `handler`; every exception but cancellation becomes an outcome."""
        started = time.perf_counter()
        outcome = await self._run(handler, job, ctx)
        return replace(outcome, duration=time.perf_counter() - started)

    async def _run(self, handler: Handler, job: ClaimedJob, ctx: JobContext) -> Outcome:
        limit = job.max_run_seconds if job.timeout_strategy != "ignore" else None
        try:
            ctx.payload = handler.decode_payload(job.payload)
            async with asyncio.timeout(limit) as deadline:
                value = await self._chain(ctx)
            return Outcome(job.id, job.attempt, "succeeded", result=self._encode(value))
        except TimeoutError as exc:
            if limit is not None and deadline.expired():
                return replace(self._timed_out(job, limit, exc), timed_out=True)
            return self.failure(job, exc)
        except Exception as exc:  # any handler error is an outcome
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
        call = functools.partial(contextvars.copy_context().run, handler.function, *args)
        return await asyncio.get_running_loop().run_in_executor(self._threads, call)

    def failure(self, job: ClaimedJob, exc: BaseException) -> Outcome:
        """A retry after backoff, or a failure if `exc` is terminal or attempts are spent."""
        terminal = isinstance(exc, TerminalError | SerializationError)
        if terminal or not job.attempts_left:
            return _error_outcome(job, "failed", exc)
        delay = self._retry.delay(job.attempt - job.attempt_base)
        return _error_outcome(job, "scheduled", exc, delay=delay)

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
