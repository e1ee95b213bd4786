"""The metrics events: one frozen dataclass per `polyqueue_job_*` hook, emitted by the core."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = [
    "JobEnqueued",
    "JobEvent",
    "JobFailed",
    "JobRetrying",
    "JobSnoozed",
    "JobStarted",
    "JobSucceeded",
    "JobTimedOut",
    "QueueDepth",
]


@dataclass(frozen=True, slots=True)
class JobEvent:
    """Fields every job event carries."""

    job_id: int
    name: str
    queue: str


@dataclass(frozen=True, slots=True)
class JobEnqueued(JobEvent):
    """A job row was inserted (emitted after the insert, before the caller's commit)."""

    scheduled: bool
    """Whether it waits for `run_at` (a delay) instead of being queued now."""


@dataclass(frozen=True, slots=True)
class JobStarted(JobEvent):
    """A worker claimed the job and is about to call its handler."""

    attempt: int
    worker_id: str


@dataclass(frozen=True, slots=True)
class JobSucceeded(JobEvent):
    """The handler returned; its result is being recorded."""

    attempt: int
    worker_id: str
    duration: float
    """Seconds the handler ran."""


@dataclass(frozen=True, slots=True)
class JobFailed(JobEvent):
    """The attempt failed and the job will not be retried (terminal, or attempts spent)."""

    attempt: int
    worker_id: str
    duration: float
    error_type: str


@dataclass(frozen=True, slots=True)
class JobRetrying(JobEvent):
    """The attempt failed and the job is scheduled again after `delay` seconds."""

    attempt: int
    worker_id: str
    duration: float
    error_type: str
    delay: float


@dataclass(frozen=True, slots=True)
class JobSnoozed(JobEvent):
    """The handler raised `Snooze`: the job is scheduled again after `delay` seconds, and
    the attempt is not counted."""

    attempt: int
    worker_id: str
    duration: float
    delay: float


@dataclass(frozen=True, slots=True)
class JobTimedOut(JobEvent):
    """The attempt passed its `max_run_seconds` (a retry or failure event follows)."""

    attempt: int
    worker_id: str
    limit: float
    strategy: str


@dataclass(frozen=True, slots=True)
class QueueDepth:
    """How many jobs of a queue are in a status, sampled by the maintenance leader."""

    queue: str
    status: str
    depth: int
