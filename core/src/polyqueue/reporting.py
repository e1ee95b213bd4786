"""Reports what happens to each attempt: metrics events through the hooks, and log lines."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from polyqueue.events import (
    JobFailed,
    JobRetrying,
    JobSnoozed,
    JobStarted,
    JobSucceeded,
    JobTimedOut,
)
from polyqueue.logs import log_with_traceback, user_frames
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
    if outcome.snoozed:
        log.info("snoozed after %.3fs, runs again in %.2fs", outcome.duration, outcome.delay)
        event_snoozed = JobSnoozed(*common, outcome.duration, outcome.delay)
        emit(manager, "polyqueue_job_snoozed", event_snoozed)
    elif outcome.status == "succeeded":
        log.info("succeeded in %.3fs", outcome.duration)
        emit(manager, "polyqueue_job_succeeded", JobSucceeded(*common, outcome.duration))
    elif outcome.status == "scheduled":
        log_with_traceback(
            log,
            logging.WARNING,
            None if outcome.expected else user_frames(outcome.error_traceback),
            "failed in %.3fs, retrying in %.2fs: %s: %s",
            outcome.duration,
            outcome.delay,
            outcome.error_type,
            outcome.error_message,
        )
        event = JobRetrying(*common, outcome.duration, outcome.error_type or "", outcome.delay)
        emit(manager, "polyqueue_job_retrying", event)
    else:
        expected = _expected(job, outcome)
        log_with_traceback(
            log,
            logging.WARNING if expected else logging.ERROR,
            None if expected else user_frames(outcome.error_traceback),
            "failed in %.3fs for good: %s: %s",
            outcome.duration,
            outcome.error_type,
            outcome.error_message,
        )
        event_failed = JobFailed(*common, outcome.duration, outcome.error_type or "")
        emit(manager, "polyqueue_job_failed", event_failed)


def _expected(job: ClaimedJob, outcome: Outcome) -> bool:
    """Whether a failure is one the handler or its settings asked for: a `TerminalError`
    (or another terminal failure before the attempts ran out), or a timeout whose strategy
    is `fail`. Those are one WARNING line; anything else is an ERROR with its traceback."""
    if outcome.expected or outcome.error_traceback is None:
        return True
    return job.attempts_left and outcome.error_type != "SerializationError"
