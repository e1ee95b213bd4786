"""`Doorbell`: wakes receivers waiting on queues when a notice may have become ready."""

from __future__ import annotations

import asyncio
import contextlib
import time
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Sequence

__all__ = ["Doorbell"]


class Doorbell:
    """Per-queue ring counters; a waiter returns when one of its queues rang since it looked."""

    def __init__(self) -> None:
        self._rings: dict[str, int] = {}
        self._everyone = 0
        self._event = asyncio.Event()

    def generation(self, queues: Sequence[str]) -> int:
        """A number that grows whenever one of `queues` (or every queue) rings."""
        return self._everyone + sum(self._rings.get(queue, 0) for queue in queues)

    def ring(self, queue: str) -> None:
        """Wake the receivers of `queue`."""
        self._rings[queue] = self._rings.get(queue, 0) + 1
        self._wake()

    def ring_all(self) -> None:
        """Wake every receiver (reconnected, closing)."""
        self._everyone += 1
        self._wake()

    def _wake(self) -> None:
        self._event.set()
        self._event = asyncio.Event()

    async def wait(self, queues: Sequence[str], seen: int, timeout: float) -> None:
        """Return once `generation(queues)` differs from `seen`, or after `timeout` seconds."""
        deadline = time.monotonic() + timeout
        while self.generation(queues) == seen:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._event.wait(), remaining)
