"""The job state machine: the seven statuses and the one table of allowed transitions."""

from __future__ import annotations

import enum

__all__ = ["FINISHED", "TRANSITIONS", "JobStatus", "is_allowed"]


class JobStatus(enum.StrEnum):
    """Where a job is in its life. Only the SQL blocks annotated `-- transition:` move it."""

    WAITING = "waiting"
    """Waiting for its dependencies (`depends_on`, a workflow). The outcome of its last
    dependency releases it to `queued` (or `scheduled`), or cancels it (a failed dependency
    under the `cancel` policy)."""
    SCHEDULED = "scheduled"
    """Waiting for `run_at` (a delay, or a retry backoff). The scheduler moves it to `queued`."""
    QUEUED = "queued"
    """Ready; a notice is on the broker. A worker's claim moves it to `running`."""
    RUNNING = "running"
    """Claimed by one worker for attempt N. The worker records the outcome, or retries it."""
    SUCCEEDED = "succeeded"
    """Finished; `result` holds the return value. Final."""
    FAILED = "failed"
    """The dead-letter state: attempts exhausted or a terminal error. `requeue` revives it."""
    CANCELLED = "cancelled"
    """Cancelled by `Polyqueue.cancel`. `requeue` revives it."""


S = JobStatus

TRANSITIONS: frozenset[tuple[JobStatus, JobStatus]] = frozenset(
    {
        (S.WAITING, S.QUEUED),  # its last dependency finished: released
        (S.WAITING, S.SCHEDULED),  # released, with a run_at still ahead
        (S.WAITING, S.CANCELLED),  # a dependency failed (policy `cancel`), or cancel
        (S.WAITING, S.FAILED),  # failed by an operator
        (S.SCHEDULED, S.QUEUED),  # due: promoted by the scheduler
        (S.SCHEDULED, S.CANCELLED),  # cancel
        (S.SCHEDULED, S.FAILED),  # failed by an operator
        (S.QUEUED, S.RUNNING),  # claim
        (S.QUEUED, S.CANCELLED),  # cancel
        (S.QUEUED, S.FAILED),  # failed by an operator
        (S.RUNNING, S.SUCCEEDED),  # handler returned
        (S.RUNNING, S.FAILED),  # terminal error, attempts exhausted, poison job, or operator
        (S.RUNNING, S.SCHEDULED),  # retry after a backoff (or after the timeout backstop)
        (S.RUNNING, S.QUEUED),  # given back at shutdown, reclaimed from a dead worker, requeued
        (S.RUNNING, S.CANCELLED),  # cancel while running
        (S.FAILED, S.QUEUED),  # requeue from the dead-letter state
        (S.CANCELLED, S.QUEUED),  # requeue a cancelled job
    }
)
"""Every allowed (from, to) pair. Tests check each SQL block against this table."""

FINISHED: frozenset[JobStatus] = frozenset({S.SUCCEEDED, S.FAILED, S.CANCELLED})
"""Statuses a job can rest in: `wait_for` returns once a job reaches one."""


def is_allowed(source: JobStatus, target: JobStatus) -> bool:
    """Whether the state machine allows moving a job from `source` to `target`."""
    return (source, target) in TRANSITIONS
