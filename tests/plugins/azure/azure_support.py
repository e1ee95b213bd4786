"""Helpers of the Azure tests: a running worker, and waiting for a condition."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest

from polyqueue import Polyqueue


@contextlib.asynccontextmanager
async def running_worker(app: Polyqueue, **options: Any) -> AsyncIterator[None]:
    """A worker of `app` running in the background for the block."""
    worker = app.worker(**options)
    task = asyncio.create_task(worker.run())
    try:
        yield
    finally:
        worker.stop()
        await task


async def eventually(check: Callable[[], Awaitable[bool] | bool], timeout: float = 30.0) -> None:
    """Wait until `check()` is true; fail after `timeout` (a bound, not a timing assertion)."""
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if await result if isinstance(result, Awaitable) else result:
            return
        if time.monotonic() > deadline:
            pytest.fail(f"condition not met within {timeout}s")
        await asyncio.sleep(0.05)
