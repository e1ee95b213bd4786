"""`Pace`: how many jobs a worker claims ahead of its free slots."""

from __future__ import annotations

__all__ = ["Pace"]

SMOOTHING = 0.2
"""Weight of the newest sample in the moving averages."""

MOST_AHEAD_PER_SLOT = 4
"""Jobs claimed ahead per slot at most, however short the handlers: enough for a claim to
carry what the worker starts during the one before it, even through a slow link."""


class Pace:
    """Claims sized by what the worker can start soon, not only by the slots free now.

    A claim costs a round trip and a commit. Were a worker to claim only for the slots free
    at that instant, short jobs would finish while the next claim is on its way, and their
    slots would wait for it: the commit would set the pace. So the worker also claims what
    it expects to be able to start within one claim: a slot whose handlers run for `run`
    seconds on average frees about `claim / run` times while a claim of `claim` seconds is
    on its way. `ahead` is that many jobs per slot, at most `MOST_AHEAD_PER_SLOT`. The jobs
    claimed ahead wait in the worker for a slot, on average about one claim's round trip
    (the worker starts them as slots free, not when its next claim returns): they are
    heartbeated, and given back at shutdown, like running jobs. Handlers that run longer
    than a claim takes get no jobs ahead at all, so a slow job never waits behind another.
    """

    def __init__(self) -> None:
        self._claim: float | None = None
        self._run: float | None = None

    def claimed(self, seconds: float) -> None:
        """A claim that found a full batch ready took `seconds` (a claim that waited for
        a notice says nothing about the round trip, and is not counted)."""
        self._claim = _average(self._claim, seconds)

    def ran(self, seconds: float) -> None:
        """A handler ran for `seconds`."""
        self._run = _average(self._run, seconds)

    def ahead(self, concurrency: int) -> int:
        """How many jobs to claim beyond the free slots: 0 until both are measured."""
        if self._claim is None or self._run is None:
            return 0
        per_slot = min(MOST_AHEAD_PER_SLOT, self._claim / max(self._run, 1e-6))
        return int(concurrency * per_slot)


def _average(current: float | None, sample: float) -> float:
    return sample if current is None else current + SMOOTHING * (sample - current)
