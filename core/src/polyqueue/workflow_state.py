"""What a workflow looks like as stored (`WorkflowInfo`, its nodes), and a job's view of
its own dependencies (`DependencyOutcome`, `results_of`)."""

from __future__ import annotations

import json
from datetime import datetime  # noqa: TC003  (pydantic needs it at runtime)
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict, TypeAdapter

from polyqueue.exceptions import DependencyFailedError
from polyqueue.job import JobError
from polyqueue.status import FINISHED, JobStatus

if TYPE_CHECKING:
    from collections.abc import Sequence

    from asyncpg import Record

    from polyqueue.store import JobStore

__all__ = [
    "DependencyOutcome",
    "WorkflowInfo",
    "WorkflowNode",
    "WorkflowSummary",
    "read_workflow",
    "results_of",
    "workflow_status",
]

WorkflowStatus = Literal["running", "succeeded", "failed", "cancelled"]


def _error(row: Any) -> JobError | None:
    if row["error_type"] is None:
        return None
    return JobError(type=row["error_type"], message=row["error_message"] or "")


class WorkflowNode(BaseModel):
    """One job of a workflow, with the jobs it waits for."""

    model_config = ConfigDict(frozen=True)

    job_id: int
    name: str
    queue: str
    status: JobStatus
    depends_on: list[int]
    """The jobs it waits for, in the order given."""
    on_failure: list[str]
    """Each edge's policy, in the order of `depends_on`: cancel, run or ignore."""
    waiting_on: int
    """Dependencies not finished yet (while `waiting`)."""
    payload_from: int | None
    """The job whose result becomes its payload (a chain step), if any."""
    attempt: int
    max_attempts: int
    error: JobError | None
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None

    @classmethod
    def from_row(cls, row: Any) -> WorkflowNode:
        """Build from a `workflow_jobs` row."""
        return cls(
            job_id=row["id"],
            name=row["name"],
            queue=row["queue"],
            status=row["status"],
            depends_on=list(row["depends_on"]),
            on_failure=list(row["policies"]),
            waiting_on=row["waiting_on"],
            payload_from=row["payload_from"],
            attempt=row["attempt"],
            max_attempts=row["max_attempts"],
            error=_error(row),
            created_at=row["created_at"],
            started_at=row["started_at"],
            finished_at=row["finished_at"],
        )


def workflow_status(counts: dict[str, int]) -> WorkflowStatus:
    """`running` while a job is unfinished; then `failed` if one failed, `cancelled` if one
    was cancelled, else `succeeded`."""
    if any(n and JobStatus(status) not in FINISHED for status, n in counts.items()):
        return "running"
    if counts.get("failed"):
        return "failed"
    if counts.get("cancelled"):
        return "cancelled"
    return "succeeded"


class WorkflowInfo(BaseModel):
    """A workflow as stored: what `Polyqueue.get_workflow` returns."""

    model_config = ConfigDict(frozen=True)

    id: int
    name: str
    on_failure: str
    """The workflow's default edge policy."""
    created_at: datetime
    nodes: list[WorkflowNode]
    """Every job, in the order the nodes were added (ascending job ids)."""

    @property
    def counts(self) -> dict[str, int]:
        """How many of its jobs are in each status."""
        counts: dict[str, int] = {}
        for node in self.nodes:
            counts[node.status.value] = counts.get(node.status.value, 0) + 1
        return counts

    @property
    def status(self) -> WorkflowStatus:
        """`running`, or how it ended: `succeeded`, `failed` or `cancelled`."""
        return workflow_status(self.counts)

    @property
    def finished(self) -> bool:
        """Whether every job is succeeded, failed or cancelled."""
        return self.status != "running"

    def node(self, job_id: int) -> WorkflowNode:
        """The node of job `job_id`; `KeyError` if it is not in this workflow."""
        for node in self.nodes:
            if node.job_id == job_id:
                return node
        raise KeyError(f"job {job_id} is not in workflow {self.id}")


class WorkflowSummary(BaseModel):
    """A workflow in a listing (`inspect workflows`): its jobs counted per status."""

    model_config = ConfigDict(frozen=True)

    id: int
    name: str
    on_failure: str
    nodes: int
    created_at: datetime
    counts: dict[str, int]

    @property
    def status(self) -> WorkflowStatus:
        """As `WorkflowInfo.status`."""
        return workflow_status(self.counts)

    @classmethod
    def from_row(cls, row: Any) -> WorkflowSummary:
        """Build from a `workflow_find` row."""
        data = dict(row)
        data["counts"] = json.loads(data["counts"])
        return cls(**data)


async def read_workflow(store: JobStore, workflow_id: int) -> WorkflowInfo:
    """The workflow and its jobs, read in one snapshot."""
    row, jobs = await store.workflow_get(workflow_id)
    return WorkflowInfo(
        id=row["id"],
        name=row["name"],
        on_failure=row["on_failure"],
        created_at=row["created_at"],
        nodes=[WorkflowNode.from_row(job) for job in jobs],
    )


class DependencyOutcome(BaseModel):
    """One dependency of a running job, as `ctx.dependencies()` returns it."""

    model_config = ConfigDict(frozen=True)

    job_id: int
    name: str | None
    """None if the job is gone (pruned)."""
    status: JobStatus | None
    on_failure: str
    result: Any = None
    """The stored result (decoded JSON) of a succeeded dependency."""
    error: JobError | None = None

    @classmethod
    def from_row(cls, row: Record) -> DependencyOutcome:
        """Build from a `dependency_outcomes` row."""
        return cls(
            job_id=row["id"],
            name=row["name"],
            status=row["status"],
            on_failure=row["on_failure"],
            result=None if row["result"] is None else json.loads(row["result"]),
            error=_error(row),
        )


def results_of(
    dependent: int, outcomes: Sequence[DependencyOutcome], model: Any, job_ids: Sequence[int] | None
) -> list[Any]:
    """The results of `outcomes` (only those of `job_ids` if given, in the order of the
    edges) validated as `model`. A dependency that did not succeed is left out if its edge
    is `ignore`, else `DependencyFailedError`."""
    wanted = None if job_ids is None else set(job_ids)
    adapter = TypeAdapter(model)
    results = []
    for outcome in outcomes:
        if wanted is not None and outcome.job_id not in wanted:
            continue
        if outcome.status is JobStatus.SUCCEEDED:
            results.append(adapter.validate_python(outcome.result))
        elif outcome.on_failure != "ignore":
            status = outcome.status.value if outcome.status else "gone"
            raise DependencyFailedError(outcome.job_id, status, dependent)
    return results
