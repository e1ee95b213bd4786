"""The job store's small types: what an insert returns, a worker's registry row, and what a
query runs on."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from collections.abc import Sequence

__all__ = ["InsertedJob", "SqlExecutor", "WorkerRegistration"]

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
