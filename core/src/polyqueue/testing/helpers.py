"""Helpers for tests that run workers: bounded waiting and a worker for a `with` block."""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import time
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Awaitable, Callable

    from polyqueue.app import Polyqueue
    from polyqueue.worker import Worker

__all__ = ["eventually", "running_worker"]


async def eventually(
    check: Callable[[], Awaitable[bool] | bool], timeout: float = 30.0, interval: float = 0.02
) -> None:
    """Wait until `check()` (sync or async) is true; fail after `timeout` seconds.

    The timeout is a bound against hanging, never a timing assertion.
    """
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if await result if inspect.isawaitable(result) else result:
            return
        if time.monotonic() > deadline:
            pytest.fail(f"condition not met within {timeout}s")
        await asyncio.sleep(interval)


@contextlib.asynccontextmanager
async def running_worker(
    app: Polyqueue, *, graceful: bool = False, **options: Any
) -> AsyncIterator[Worker]:
    """A worker of the started `app` running in this event loop for the block.

    Should the worker's task end before the block does (it crashed, or it stopped on its
    own), the block is interrupted and the test fails at once with the reason. On exit the
    worker stops and is joined: gracefully (in-flight jobs get the grace period) or, by
    default, at once (a second stop skips the grace period).
    """
    worker = app.worker(**options)
    test = asyncio.current_task()
    task = asyncio.create_task(worker.run(), name=f"test-worker-{worker.id}")
    leaving = False

    def ended(_: asyncio.Task[None]) -> None:
        if not leaving and test is not None:
            test.cancel("the worker task ended")

    task.add_done_callback(ended)
    try:
        yield worker
    except asyncio.CancelledError:
        if task.done() and not leaving:
            if test is not None:
                test.uncancel()
            _fail_with(task)
        raise
    finally:
        leaving = True
        if not task.done():
            worker.stop()
            if not graceful:
                worker.stop()
            await asyncio.wait_for(asyncio.shield(task), timeout=60)
        elif not task.cancelled() and task.exception() is not None:
            _fail_with(task)


def _fail_with(task: asyncio.Task[None]) -> None:
    error = None if task.cancelled() else task.exception()
    reason = f"{type(error).__name__}: {error}" if error else "it returned without being stopped"
    pytest.fail(f"the worker task ended during the test: {reason}", pytrace=False)
