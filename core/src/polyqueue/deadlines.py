"""Waiting with a way out: until an event or another, until a deadline, or until forced.

The worker's loops and its bounded shutdown are written with these, so that no wait can
keep a stopping worker from leaving.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import TYPE_CHECKING, Any

from polyqueue.exceptions import PolyqueueError

if TYPE_CHECKING:
    from collections.abc import Coroutine, Sequence

__all__ = ["run_bounded", "sleep_unless", "wait_either", "wait_tasks"]

log = logging.getLogger(__name__)


async def wait_either(event: asyncio.Event, other: asyncio.Event) -> None:
    """Return once `event` or `other` is set."""
    first = asyncio.create_task(event.wait())
    second = asyncio.create_task(other.wait())
    try:
        await asyncio.wait({first, second}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        first.cancel()
        second.cancel()


async def sleep_unless(event: asyncio.Event, seconds: float) -> None:
    """Sleep `seconds`, or less if `event` is set meanwhile."""
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(event.wait(), seconds)


async def wait_tasks(
    tasks: Sequence[asyncio.Future[Any]], until: float, forced: asyncio.Event
) -> None:
    """Wait for `tasks` until the loop time `until`, or until `forced` is set; the tasks
    themselves are left running."""
    pending = [task for task in tasks if not task.done()]
    if not pending or forced.is_set():
        return
    forcing = asyncio.create_task(forced.wait())
    finished = asyncio.create_task(asyncio.wait(pending))  # cancelling it spares `tasks`
    timeout = max(0.0, until - asyncio.get_running_loop().time())
    await asyncio.wait({forcing, finished}, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
    forcing.cancel()
    finished.cancel()


async def run_bounded(
    work: Coroutine[Any, Any, None], until: float, minimum: float, label: str
) -> None:
    """Run `work`, given up at the loop time `until` (after `minimum` seconds at least) or on
    a Polyqueue error, which is logged as a warning naming `label`."""
    timeout = max(minimum, until - asyncio.get_running_loop().time())
    try:
        async with asyncio.timeout(timeout):
            await work
    except (PolyqueueError, TimeoutError) as exc:
        log.warning("%s: step skipped: %s", label, exc or "timed out")
