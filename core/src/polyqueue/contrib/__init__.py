"""Optional integrations, one module per SDK; this package itself imports no SDK."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from polyqueue.events import QueueDepth

__all__ = ["DURATION_BUCKETS", "DepthSamples"]

DURATION_BUCKETS = (
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0, 3600.0
)  # fmt: skip
"""Histogram bucket bounds for handler durations, in seconds: 5 ms to an hour."""

STALE_ROUNDS = 3
"""Maintenance rounds a queue-depth sample is reported for without being refreshed."""


class DepthSamples:
    """The latest `QueueDepth` per (queue, status), dropped once it is stale.

    Only a process that leads a maintenance round samples depth, and leadership can move to
    another worker: a sample not refreshed within `stale_after` seconds is no longer reported,
    so a process that stopped leading does not report old counts forever.
    """

    def __init__(self, stale_after: float = STALE_ROUNDS * 5.0) -> None:
        self.stale_after = stale_after
        self._samples: dict[tuple[str, str], tuple[int, float]] = {}

    def expect_every(self, interval: float) -> None:
        """Samples come every `interval` seconds (the maintenance interval)."""
        self.stale_after = STALE_ROUNDS * interval

    def record(self, event: QueueDepth) -> None:
        """Keep `event` as the current depth of its queue and status."""
        self._samples[event.queue, event.status] = (event.depth, time.monotonic())

    def fresh(self) -> list[tuple[str, str, int]]:
        """(queue, status, depth) of every sample taken within `stale_after` seconds."""
        cutoff = time.monotonic() - self.stale_after
        samples = list(self._samples.items())  # a copy: exporters read from their own thread
        return [(queue, status, depth) for (queue, status), (depth, at) in samples if at >= cutoff]
