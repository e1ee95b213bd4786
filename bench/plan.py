"""`Plan`: the sizes of one run's measurements, from the command line."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["Plan"]


@dataclass(frozen=True, slots=True)
class Plan:
    """The sizes of one run's measurements."""

    jobs: int = 20_000
    """Jobs per drain (and per bulk enqueue, and per scale-out drain)."""
    batch: int = 1000
    """Jobs per `enqueue_many` call."""
    single: int = 3000
    """Jobs enqueued one awaited `enqueue` at a time."""
    samples: int = 200
    """Pickup latency samples."""
    concurrency: int = 10
    """Each drain worker's concurrency."""
    sqs_jobs: int = 1000
    """Jobs of the SQS drain (moto is slow)."""
    million: int = 1_000_000
    """Jobs of the large `enqueue_many` run."""
