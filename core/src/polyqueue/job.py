"""The shapes a job takes: a new row, a claimed attempt, an outcome, and the public `Job`."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime  # noqa: TC003  (pydantic needs it at runtime)
from typing import TYPE_CHECKING, Any, Literal, Self, SupportsIndex, overload

from pydantic import BaseModel, ConfigDict

from polyqueue.status import JobStatus

if TYPE_CHECKING:
    from collections.abc import Iterator, Sequence

__all__ = ["ClaimedJob", "Job", "JobError", "JobId", "JobIds", "NewJobs", "Outcome"]

OutcomeStatus = Literal["succeeded", "failed", "scheduled"]


class JobId(int):
    """A job's id as `enqueue` returns it: an `int`, and whether this call created the job.

    `created` is False when the call's idempotency key or unique key was held by a job
    already: the id is then that job's.
    """

    created: bool

    def __new__(cls, value: int, *, created: bool = True) -> Self:
        job_id = super().__new__(cls, value)
        job_id.created = created
        return job_id


class JobIds(list[int]):
    """What `enqueue_many` returns: a `list[int]` (so `ids: list[int] = ...` still checks)
    whose items are `JobId`s, in the order of the payloads."""

    if TYPE_CHECKING:

        @overload
        def __getitem__(self, index: SupportsIndex) -> JobId: ...
        @overload
        def __getitem__(self, index: slice) -> list[int]: ...
        def __getitem__(self, index: SupportsIndex | slice) -> JobId | list[int]: ...
        def __iter__(self) -> Iterator[JobId]: ...


class JobError(BaseModel):
    """The last error a job's handler raised."""

    model_config = ConfigDict(frozen=True)

    type: str
    message: str
    traceback: str | None = None


class Job(BaseModel):
    """A job as stored: what `Polyqueue.get_job` returns."""

    model_config = ConfigDict(frozen=True)

    id: int
    name: str
    queue: str
    status: JobStatus
    payload: Any
    result: Any = None
    headers: dict[str, str] = {}
    priority: int
    attempt: int
    max_attempts: int
    reclaims: int
    max_run_seconds: float | None
    timeout_strategy: str
    idempotency_key: str | None
    run_at: datetime
    error: JobError | None
    progress: float | None
    progress_message: str | None
    worker_id: str | None
    created_at: datetime
    started_at: datetime | None
    heartbeat_at: datetime | None
    timeout_at: datetime | None
    finished_at: datetime | None

    @property
    def finished(self) -> bool:
        """Whether the job is at rest: succeeded, failed or cancelled."""
        return self.status in {JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.CANCELLED}

    @classmethod
    def from_row(cls, row: Any) -> Job:
        """Build from a `job_get` row (JSON columns arrive as text)."""
        data = dict(row)
        error = None
        if data.pop("error_type") is not None:
            error = JobError(
                type=row["error_type"],
                message=row["error_message"] or "",
                traceback=row["error_traceback"],
            )
        data.pop("error_message")
        data.pop("error_traceback")
        data.pop("attempt_base")
        data["payload"] = json.loads(data["payload"])
        data["headers"] = json.loads(data["headers"])
        data["result"] = None if data["result"] is None else json.loads(data["result"])
        return cls(error=error, **data)


@dataclass(frozen=True, slots=True)
class NewJobs:
    """The jobs of one enqueue call: one handler, one set of options, payloads as JSON."""

    name: str
    queue: str
    payloads: Sequence[str]
    headers: str = "{}"
    priority: int = 0
    max_attempts: int = 3
    max_run_seconds: float | None = None
    timeout_strategy: str = "retry"
    idempotency_key: str | None = None
    """Only for a single job: a key names one job."""
    run_at: datetime | None = None
    unique_keys: Sequence[str] | None = None
    """One unique key per payload: a job is not created while another holds its key."""
    unique_for: float | None = None
    """Seconds after the insert that a new job holds its unique key, even once finished."""
    concurrency_keys: Sequence[str | None] | None = None
    """One flow-control key per payload (handlers with a `concurrency_key`), or None."""

    def __post_init__(self) -> None:
        if self.idempotency_key is not None and len(self.payloads) != 1:
            raise ValueError("an idempotency key names one job: enqueue one payload with it")
        if self.unique_keys is not None and len(self.unique_keys) != len(self.payloads):
            raise ValueError("unique keys: one per payload")
        if self.unique_keys is not None and self.idempotency_key is not None:
            raise ValueError("pass either an idempotency key or unique keys, not both")


@dataclass(frozen=True, slots=True)
class ClaimedJob:
    """One attempt of a job, claimed by this worker; `attempt` is the fencing token."""

    id: int
    name: str
    queue: str
    payload: str
    headers: dict[str, str]
    priority: int
    attempt: int
    attempt_base: int
    max_attempts: int
    max_run_seconds: float | None
    timeout_strategy: str
    reclaims: int = 0

    @property
    def attempts_left(self) -> bool:
        """Whether a failure of this attempt may still be retried."""
        return self.attempt - self.attempt_base < self.max_attempts

    @property
    def suspect(self) -> bool:
        """Whether a worker was lost while holding this job before: it may be what killed
        it, so it runs alone (`Worker`), lest the jobs beside it share its reclaims."""
        return self.reclaims > 0

    @classmethod
    def from_row(cls, row: Any) -> ClaimedJob:
        """Build from a `job_claim_many` row (or any row with these columns among others)."""
        data = {name: row[name] for name in cls.__slots__}
        headers = data["headers"]
        data["headers"] = {} if headers == "{}" else json.loads(headers)  # mostly none
        return cls(**data)


@dataclass(frozen=True, slots=True)
class Outcome:
    """What one attempt ended in, ready for `job_complete_many`."""

    job_id: int
    attempt: int
    status: OutcomeStatus
    result: str | None = None
    error_type: str | None = None
    error_message: str | None = None
    error_traceback: str | None = None
    delay: float = 0.0
    """Seconds until a `scheduled` outcome is due again."""
    snoozed: bool = False
    """A `scheduled` outcome that uses no attempt: the handler raised `Snooze`."""
    duration: float = 0.0
    """Seconds the handler ran (not stored: for metrics and logs)."""
    timed_out: bool = False
    """Whether the attempt passed its time limit (not stored: for metrics and logs)."""
    expected: bool = False
    """Whether the handler asked for this failure: a `TerminalError` (any subclass) raised
    by it, or a `Retry` with attempts left (not stored: for logs)."""
