"""Reading a job's outcome: waiting for it to finish, and its result, typed or as stored."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

from pydantic import TypeAdapter

from polyqueue.exceptions import JobNotFoundError, JobTimeoutError, ResultUnavailableError
from polyqueue.status import FINISHED, JobStatus

if TYPE_CHECKING:
    from polyqueue.job import Job
    from polyqueue.store import JobStore

__all__ = ["stored_result", "typed_result", "wait_until_finished"]

_FIRST_POLL_SECONDS = 0.005
_LAST_POLL_SECONDS = 0.25


async def wait_until_finished(store: JobStore, job_id: int, timeout: float | None) -> Job:
    """The job once it succeeded, failed or was cancelled, polling with a growing interval;
    `JobTimeoutError` after `timeout` seconds, `JobNotFoundError` if there is no such job."""
    delay = _FIRST_POLL_SECONDS
    try:
        async with asyncio.timeout(timeout):
            while True:
                status = (await store.job_status_many([job_id])).get(job_id)
                if status is None:
                    raise JobNotFoundError(job_id)
                if JobStatus(status) in FINISHED:
                    return await store.job_get(job_id)
                await asyncio.sleep(delay)
                delay = min(delay * 2, _LAST_POLL_SECONDS)
    except TimeoutError as exc:
        raise JobTimeoutError(f"job {job_id} did not finish within {timeout}s") from exc


def stored_result(job: Job) -> Any:
    """The job's result as stored (decoded JSON); `ResultUnavailableError` unless it
    succeeded."""
    if job.status is not JobStatus.SUCCEEDED:
        raise ResultUnavailableError(job.id, job.status.value)
    return job.result


def typed_result(job: Job, model: Any) -> Any:
    """The job's result validated as `model` (a BaseModel or any type pydantic knows)."""
    return TypeAdapter(model).validate_python(stored_result(job))
