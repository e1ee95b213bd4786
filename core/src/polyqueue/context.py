"""`JobContext`: what a handler knows about the attempt it is running, and how it reports."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypeVar, overload

from polyqueue.workflow_state import DependencyOutcome, results_of

if TYPE_CHECKING:
    from collections.abc import Sequence

    from polyqueue.job import ClaimedJob
    from polyqueue.store import JobStore

T = TypeVar("T")

__all__ = ["JobContext"]

log = logging.getLogger(__name__)


@dataclass(slots=True)
class JobContext:
    """Passed to handlers that declare a `JobContext` parameter."""

    job_id: int
    name: str
    queue: str
    attempt: int
    """This attempt's number, counting every claim of the job (1 on the first run)."""
    max_attempts: int
    headers: dict[str, str]
    worker_id: str
    _store: JobStore = field(repr=False)
    payload: Any = field(default=None, repr=False)
    """The validated payload model, for middleware (handlers get it as their argument)."""

    @classmethod
    def of(cls, job: ClaimedJob, worker_id: str, store: JobStore) -> JobContext:
        """The context of a claimed job's attempt on worker `worker_id`."""
        return cls(
            job_id=job.id,
            name=job.name,
            queue=job.queue,
            attempt=job.attempt,
            max_attempts=job.max_attempts,
            headers=job.headers,
            worker_id=worker_id,
            _store=store,
        )

    async def progress(self, fraction: float, message: str | None = None) -> None:
        """Record progress (0.0 to 1.0) and a message; also a heartbeat for this job."""
        if not 0.0 <= fraction <= 1.0:
            raise ValueError(f"progress must be between 0.0 and 1.0, got {fraction}")
        current = await self._store.job_progress(
            self.job_id, self.attempt, fraction, message, self.worker_id
        )
        if not current:
            log.info("job %s attempt %s no longer owns the job", self.job_id, self.attempt)

    async def dependencies(self) -> list[DependencyOutcome]:
        """This job's dependencies (`depends_on`, a workflow's `after`) in the order they
        were given, each with its status, result or error and its edge's policy."""
        rows = await self._store.dependency_outcomes(self.job_id)
        return [DependencyOutcome.from_row(row) for row in rows]

    @overload
    async def results_of(self, model: type[T], job_ids: Sequence[int] | None = None) -> list[T]: ...
    @overload
    async def results_of(self, model: Any, job_ids: Sequence[int] | None = None) -> list[Any]: ...
    async def results_of(self, model: Any, job_ids: Sequence[int] | None = None) -> list[Any]:
        """The results of this job's dependencies (only `job_ids` if given), in the order they
        were given, each validated as `model` (a BaseModel or any type pydantic knows).

        A dependency that did not succeed is left out if its edge's policy is `ignore`; under
        `run` it raises `DependencyFailedError` (read `dependencies()` to handle failures).
        """
        return results_of(self.job_id, await self.dependencies(), model, job_ids)
