"""Supervised loops: a worker's background work never dies silently.

Each loop of a worker (consuming, heartbeats, the scheduler, maintenance, the outcome writer)
runs one step at a time under `supervise`. A `PolyqueueError` (the database or the broker is
unavailable, a statement was refused) is expected: it is logged in one line and the loop
backs off and goes on. Any other exception is a bug or a surprise: it is logged with its
traceback and the loop backs off and goes on too. Only a loop that crashes `max_crashes`
times in a row, without one good step in between, gives up with `WorkerLoopError`; the worker
then stops and `run()` raises it, so the process exits non-zero and its supervisor restarts
it, instead of staying up half-alive.
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING

from polyqueue.backoff import Backoff
from polyqueue.exceptions import PolyqueueError, WorkerLoopError

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

__all__ = ["MAX_CRASHES", "supervise"]

log = logging.getLogger(__name__)

MAX_CRASHES = 10
"""Unexpected exceptions in a row (no good step between them) after which a loop gives up."""


async def supervise(
    name: str,
    step: Callable[[], Awaitable[object]],
    *,
    until: Callable[[], bool] = lambda: False,
    backoff: Backoff | None = None,
    sleep: Callable[[float], Awaitable[object]] = asyncio.sleep,
    max_crashes: int | None = None,
) -> None:
    """Run `step()` again and again until `until()` is true, surviving its failures.

    `step` does one round of the loop, its own waiting included. After a failure the loop
    waits `backoff`'s next delay with `sleep` (reset by the next good step); a stopping
    worker passes a `sleep` that returns early. Cancellation ends the loop.
    """
    backoff = backoff or Backoff(base=0.1, cap=5.0)
    max_crashes = max_crashes or MAX_CRASHES
    crashes = 0
    while not until():
        try:
            await step()
        except PolyqueueError as exc:
            log.warning("%s failed, backing off: %s", name, exc)
        except Exception as exc:
            crashes += 1
            if crashes >= max_crashes:
                log.critical("%s crashed %d times in a row; giving up", name, crashes, exc_info=exc)
                raise WorkerLoopError(name, exc) from exc
            log.exception("%s crashed (%d in a row); backing off and going on", name, crashes)
        else:
            crashes = 0
            backoff.reset()
            continue
        await sleep(backoff.next_delay())
