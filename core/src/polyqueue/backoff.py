"""Exponential backoff with full jitter, for job retries and for reconnect loops."""

from __future__ import annotations

import asyncio
import random

__all__ = ["Backoff", "retry_delay"]


def retry_delay(attempt: int, base: float, cap: float) -> float:
    """Seconds before retry number `attempt` (1-based): uniform in [0, min(cap, base*2**(n-1))]."""
    ceiling = min(cap, base * 2 ** min(attempt - 1, 62))
    return random.uniform(0, ceiling)  # noqa: S311  (jitter, not cryptography)


class Backoff:
    """Successive waits for a loop that retries an operation until it works."""

    def __init__(self, base: float = 0.1, cap: float = 5.0) -> None:
        self._base = base
        self._cap = cap
        self._failures = 0

    def next_delay(self) -> float:
        """The next wait: full jitter over an exponentially growing ceiling."""
        self._failures += 1
        return max(self._base / 2, retry_delay(self._failures, self._base, self._cap))

    def reset(self) -> None:
        """Start over after a success."""
        self._failures = 0

    async def sleep(self) -> None:
        """Wait the next delay."""
        await asyncio.sleep(self.next_delay())
