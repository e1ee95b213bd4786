"""The job store's small types: what an insert returns, a worker's registry row, and what a
query runs on."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from collections.abc import Sequence
    from datetime import datetime

__all__ = [
    "InsertedJob",
    "InsertedWorkflow",
    "NewWorkflow",
    "ReleasedJob",
    "SqlExecutor",
    "WorkerRegistration",
]

SqlExecutor = Any  # an asyncpg Connection or Pool: anything with execute/fetch/fetchrow


@dataclass(frozen=True, slots=True)
class InsertedJob:
    """One job of an insert: its id, and whether this call created it."""

    id: int
    status: str
    queue: str
    priority: int
    created: bool
    held_back: bool = False
    """Held back by flow control as it was inserted: no notice is published for it."""
    notice_sent: bool = False
    """Its notice was sent by the statement that inserted it (`Broker.notice_sender`)."""


@dataclass(frozen=True, slots=True)
class WorkerRegistration:
    """A worker's row in the registry, as it registers and heartbeats."""

    id: str
    hostname: str
    pid: int
    queues: Sequence[str]
    concurrency: int
    current_jobs: int = 0

    def columns(self) -> tuple[str, str, int, list[str], int, int]:
        """The parameters of `worker_register` and `worker_heartbeat`, in order."""
        return (
            self.id,
            self.hostname,
            self.pid,
            list(self.queues),
            self.concurrency,
            self.current_jobs,
        )


@dataclass(frozen=True, slots=True)
class NewWorkflow:
    """The rows of one workflow insert (`workflow_insert`): one entry per node in each node
    column, one per edge in each edge column. Positions are 1-based node numbers."""

    names: Sequence[str]
    queues: Sequence[str]
    payloads: Sequence[str | None]
    """A node's payload as JSON, or None: its dependency's result, when it is released."""
    headers: Sequence[str]
    priorities: Sequence[int]
    max_attempts: Sequence[int]
    max_run_seconds: Sequence[float | None]
    timeout_strategies: Sequence[str]
    run_at: Sequence[datetime | None]
    concurrency_keys: Sequence[str | None]
    payload_from: Sequence[int | None]
    waiting_on: Sequence[int]
    has_dependents: Sequence[bool]
    edge_nodes: Sequence[int]
    edge_after_nodes: Sequence[int | None]
    edge_existing: Sequence[int | None]
    edge_policies: Sequence[str]
    existing: Sequence[int]
    """The existing jobs depended on, each once."""
    workflow_name: str | None = None
    """None: no workflow row (an `enqueue` with `depends_on`)."""
    on_failure: str = "cancel"

    def columns(self) -> tuple[object, ...]:
        """$1 to $20 of `workflow_insert`."""
        return (
            list(self.names),
            list(self.queues),
            list(self.payloads),
            list(self.headers),
            list(self.priorities),
            list(self.max_attempts),
            list(self.max_run_seconds),
            list(self.timeout_strategies),
            list(self.run_at),
            list(self.concurrency_keys),
            list(self.payload_from),
            list(self.waiting_on),
            list(self.has_dependents),
            list(self.edge_nodes),
            list(self.edge_after_nodes),
            list(self.edge_existing),
            list(self.edge_policies),
            self.workflow_name,
            self.on_failure,
            list(self.existing),
        )


@dataclass(frozen=True, slots=True)
class InsertedWorkflow:
    """What `workflow_insert` wrote: the jobs in node order, and the workflow's id."""

    workflow_id: int | None
    jobs: list[InsertedJob]


@dataclass(frozen=True, slots=True)
class ReleasedJob:
    """A dependent its last dependency's outcome released (`queued`, or `scheduled`)."""

    id: int
    status: str
    queue: str
    priority: int
    run_at: datetime
    held_back: bool
