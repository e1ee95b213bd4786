"""Reports what happens to each attempt: metrics events through the hooks, and log lines."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from polyqueue.events import JobFailed, JobRetrying, JobStarted, JobSucceeded, JobTimedOut
from polyqueue.plugins import emit

if TYPE_CHECKING:
    import pluggy

    from polyqueue.job import ClaimedJob, Outcome

__all__ = ["report_finished", "report_started"]

log = logging.getLogger("polyqueue.jobs")


def report_started(manager: pluggy.PluginManager, job: ClaimedJob, worker_id: str) -> None:
    """An attempt is about to run."""
    log.info("started")
    emit(
        manager,
        "polyqueue_job_started",
        JobStarted(job.id, job.name, job.queue, job.attempt, worker_id),
    )


def report_finished(
    manager: pluggy.PluginManager, job: ClaimedJob, outcome: Outcome, worker_id: str
) -> None:
    """An attempt ended in `outcome` (before it is recorded)."""
    common = (job.id, job.name, job.queue, job.attempt, worker_id)
    if outcome.timed_out:
        limit = job.max_run_seconds or 0.0
        emit(manager, "polyqueue_job_timed_out", JobTimedOut(*common, limit, job.timeout_strategy))
    if outcome.status == "succeeded":
        log.info("succeeded in %.3fs", outcome.duration)
        emit(manager, "polyqueue_job_succeeded", JobSucceeded(*common, outcome.duration))
    elif outcome.status == "scheduled":
        log.warning(
            "failed in %.3fs, retrying in %.2fs: %s: %s\n%s",
            outcome.duration,
            outcome.delay,
            outcome.error_type,
            outcome.error_message,
            outcome.error_traceback or "",
        )
        event = JobRetrying(*common, outcome.duration, outcome.error_type or "", outcome.delay)
        emit(manager, "polyqueue_job_retrying", event)
    else:
        log.error(
            "failed in %.3fs for good: %s: %s\n%s",
            outcome.duration,
            outcome.error_type,
            outcome.error_message,
            outcome.error_traceback or "",
        )
        event_failed = JobFailed(*common, outcome.duration, outcome.error_type or "")
        emit(manager, "polyqueue_job_failed", event_failed)
