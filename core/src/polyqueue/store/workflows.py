"""The job store's workflow queries: inserting jobs with their edges, settling edges, reading
workflows and a job's dependencies (`sql/workflows.sql`)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from polyqueue.exceptions import DependencyNotFoundError, WorkflowNotFoundError
from polyqueue.store.errors import translate_errors
from polyqueue.store.records import InsertedJob, InsertedWorkflow, ReleasedJob

if TYPE_CHECKING:
    from collections.abc import Sequence

    import asyncpg
    from asyncpg import Record

    from polyqueue.store.records import NewWorkflow, SqlExecutor

__all__ = ["WorkflowQueries", "released_jobs"]


class WorkflowQueries:
    """Mixed into `JobStore`: each method runs the named block of the same name."""

    _sql: dict[str, str]

    if TYPE_CHECKING:  # provided by JobStore

        @property
        def pool(self) -> asyncpg.Pool: ...

    async def workflow_insert(
        self,
        workflow: NewWorkflow,
        executor: SqlExecutor,
        announce_channel: str | None = None,
        flow_channel: str | None = None,
    ) -> InsertedWorkflow:
        """Insert the jobs and edges of `workflow` in one statement; with `announce_channel`,
        the notices of the jobs it queued too (`flow_channel` is NOTIFYed if one is held
        back). `DependencyNotFoundError` (nothing written) if an existing job it depends on
        is missing."""
        with translate_errors("enqueue workflow"):
            row = await executor.fetchrow(
                self._sql["workflow_insert"], *workflow.columns(), announce_channel, flow_channel
            )
        if row["missing"]:
            raise DependencyNotFoundError(row["missing"])
        jobs = [
            InsertedJob(job_id, status, queue, priority, created=True, held_back=held)
            for job_id, status, held, queue, priority in zip(
                row["ids"],
                row["statuses"],
                row["held_back"],
                workflow.queues,
                workflow.priorities,
                strict=True,
            )
        ]
        return InsertedWorkflow(row["workflow_id"], jobs)

    async def dependency_settle(
        self,
        job_ids: Sequence[int],
        executor: SqlExecutor,
        announce_channel: str | None = None,
        flow_channel: str | None = None,
    ) -> list[ReleasedJob]:
        """Settle the edges of those of `job_ids` that finished; return what it released
        (notices and NOTIFYs as `job_complete_many` writes them)."""
        with translate_errors("settle dependencies"):
            rows = await executor.fetch(
                self._sql["dependency_settle"], announce_channel, flow_channel, list(job_ids)
            )
        return released_jobs(rows)

    async def dependency_settle_stale(self, limit: int, executor: SqlExecutor) -> list[int]:
        """Up to `limit` finished jobs with edges not settled yet."""
        with translate_errors("find unsettled dependencies"):
            rows = await executor.fetch(self._sql["dependency_settle_stale"], limit)
        return [row["id"] for row in rows]

    async def dependency_outcomes(self, job_id: int) -> list[Record]:
        """The dependencies of `job_id`, in the order given, with their outcomes."""
        with translate_errors("read dependencies"):
            rows: list[Record] = await self.pool.fetch(self._sql["dependency_outcomes"], job_id)
        return rows

    async def workflow_get(self, workflow_id: int) -> tuple[Record, list[Record]]:
        """A workflow's row and its jobs; `WorkflowNotFoundError` if there is none."""
        with translate_errors("get workflow"):
            async with (
                self.pool.acquire() as connection,
                connection.transaction(isolation="repeatable_read", readonly=True),
            ):
                row = await connection.fetchrow(self._sql["workflow_get"], workflow_id)
                jobs = await connection.fetch(self._sql["workflow_jobs"], workflow_id)
        if row is None:
            raise WorkflowNotFoundError(workflow_id)
        return row, list(jobs)

    async def workflow_jobs(self, workflow_id: int) -> list[Record]:
        """The jobs of a workflow with their dependencies."""
        with translate_errors("get workflow jobs"):
            rows: list[Record] = await self.pool.fetch(self._sql["workflow_jobs"], workflow_id)
        return rows

    async def workflow_find(self, limit: int = 50) -> list[Record]:
        """The newest workflows with their job counts per status."""
        with translate_errors("find workflows"):
            rows: list[Record] = await self.pool.fetch(self._sql["workflow_find"], limit)
        return rows

    async def workflow_unfinished(self, workflow_id: int) -> list[int]:
        """The ids of a workflow's unfinished jobs."""
        with translate_errors("unfinished workflow jobs"):
            rows = await self.pool.fetch(self._sql["workflow_unfinished"], workflow_id)
        return [row["id"] for row in rows]


def released_jobs(rows: Sequence[Record]) -> list[ReleasedJob]:
    """`ReleasedJob`s from rows with id, status, queue, priority, run_at and held_back."""
    return [
        ReleasedJob(
            row["id"], row["status"], row["queue"], row["priority"], row["run_at"], row["held_back"]
        )
        for row in rows
    ]
