"""`FlowSignal`: tells a worker when held-back jobs may have room to start.

Jobs held back by flow control (a limit of their handler or queue, or a paused queue) wait
in PostgreSQL without a notice; they start through `JobStore.flow_claim`. A worker looks for
them when there may be room: at start, when a notice of a held-back job arrives, when a
limited job finishes here or anywhere (a NOTIFY on the schema's flow channel), when a queue
is resumed or a limit changed, and, while held-back jobs wait for a rate limit's window, at
most every `RECHECK_SECONDS`. Never once per waiting job.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import TYPE_CHECKING

from polyqueue.exceptions import PolyqueueError
from polyqueue.notices import notice_message

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

    from polyqueue.runtime import Runtime
    from polyqueue.settings import PolyqueueSettings

__all__ = [
    "RECHECK_SECONDS",
    "FlowSignal",
    "declare_limits",
    "flow_channel",
    "ring_for_released",
]

log = logging.getLogger(__name__)

RECHECK_SECONDS = 0.5
"""While held-back jobs wait for a rate limit's window, the worker looks again this often."""
ANNOUNCE_SECONDS = 0.02
"""Limited jobs finishing within this time are announced to other workers by one NOTIFY."""


def flow_channel(settings: PolyqueueSettings) -> str:
    """The NOTIFY channel on which "a limited job finished, look again" is announced."""
    return f"{settings.schema_name}_flow"


class FlowSignal:
    """A worker's "look for held-back jobs" flag; `interrupt` wakes its waiting receive."""

    def __init__(
        self, interrupt: Callable[[], None], announce: Callable[[], Awaitable[None]]
    ) -> None:
        self._interrupt = interrupt
        self._announce = announce
        self._pending = True  # look once at start: jobs may wait from before
        self.binding = False
        """Whether the last look found fewer jobs that may start than it asked for."""
        self._timer: asyncio.TimerHandle | None = None
        self._announcing: asyncio.Task[None] | None = None

    def handler_done(self) -> None:
        """A limited job's handler returned; its outcome is not stored yet, so it still
        counts as running. Look at once only if the last look found the limits with room to
        spare (they do not bind); otherwise the look after the outcome is stored will do."""
        if not self.binding:
            self.poke()

    def finished(self) -> None:
        """A limited job finished here: look again, and tell the other workers (one NOTIFY
        for the jobs finishing within `ANNOUNCE_SECONDS`)."""
        self.poke()
        if self._announcing is None or self._announcing.done():
            self._announcing = asyncio.get_running_loop().create_task(self._announce_soon())

    async def _announce_soon(self) -> None:
        await asyncio.sleep(ANNOUNCE_SECONDS)
        try:
            await self._announce()
        except PolyqueueError as exc:  # the others look again at their next recheck
            log.debug("announcing a finished limited job failed: %s", exc)

    def poke(self) -> None:
        """There may be room now: look before the next receive, waking the one waiting."""
        if not self._pending:
            self._pending = True
            self._interrupt()

    def poke_later(self, seconds: float = RECHECK_SECONDS) -> None:
        """Look again in `seconds` (held-back jobs wait for a rate limit's window)."""
        if self._timer is None or self._timer.cancelled():
            self._timer = asyncio.get_running_loop().call_later(seconds, self._fire)

    def take(self) -> bool:
        """Whether to look now (and clear the flag)."""
        pending, self._pending = self._pending, False
        return pending

    def close(self) -> None:
        """Cancel a pending recheck and announcement."""
        if self._timer is not None:
            with contextlib.suppress(Exception):
                self._timer.cancel()
        if self._announcing is not None:
            self._announcing.cancel()

    def _fire(self) -> None:
        self._timer = None
        self.poke()


async def ring_for_released(runtime: Runtime, scope: str, name: str) -> None:
    """Publish notices of the queued jobs of handler or queue `name` that nothing holds back
    any more (they were inserted without one while a limit held them)."""
    rows = await runtime.store.flow_unrestrained(scope, name)
    await runtime.publisher.publish(
        [notice_message(row["id"], row["queue"], row["priority"]) for row in rows]
    )


async def declare_limits(runtime: Runtime) -> None:
    """Record the handlers' limits as this worker's code declares them, ring for the jobs of
    handlers that lost theirs (inserted without a notice while held back), and wake the
    other workers to look at their held-back jobs."""
    store = runtime.store
    async with store.transaction() as connection:
        cleared = await store.flow_limits_declare(
            list(runtime.handlers), runtime.parts.limits, connection
        )
        await store.notify(flow_channel(runtime.settings), "", connection)
    for name in cleared:
        await ring_for_released(runtime, "handler", name)
