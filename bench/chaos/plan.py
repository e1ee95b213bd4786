"""`Plan`: how hard and how long a chaos run pushes."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["Plan"]


@dataclass(frozen=True, slots=True)
class Plan:
    """The knobs of one run (the command line's, or `--quick`'s)."""

    cycles: int = 10
    """Injections of each fault."""
    rate: float = 40.0
    """Jobs the producer enqueues per second."""
    warmup_seconds: float = 3.0
    """Steady load before the first fault."""
    down_seconds: float = 2.0
    """How long a stopped server stays down."""
    recovery_timeout: float = 60.0
    """How long after a fault throughput may take to come back before workers count as stalled."""
    drain_timeout: float = 120.0
    """How long, once the producer stopped, every job may take to finish."""
    faults: tuple[str, ...] = ()
    """Only these faults (empty: every one that applies to the backend)."""


QUICK = Plan(cycles=1, rate=8.0, warmup_seconds=2.0, recovery_timeout=30.0, drain_timeout=60.0)
