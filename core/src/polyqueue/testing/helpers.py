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

    On exit the worker stops and is joined: gracefully (in-flight jobs get the grace period)
    or, by default, at once (a second stop skips the grace period).
    """
    worker = app.worker(**options)
    task = asyncio.create_task(worker.run(), name=f"test-worker-{worker.id}")
    try:
        yield worker
    finally:
        worker.stop()
        if not graceful:
            worker.stop()
        await asyncio.wait_for(task, timeout=60)
