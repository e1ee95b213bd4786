"""The job store's flow-control queries: limits, paused queues, the claim of limited jobs."""

from __future__ import annotations

from typing import TYPE_CHECKING

from polyqueue.job import ClaimedJob
from polyqueue.store.errors import translate_errors

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence

    import asyncpg
    from asyncpg import Record

    from polyqueue.limits import Limits
    from polyqueue.store.records import SqlExecutor

__all__ = ["FlowQueries"]


class FlowQueries:
    """Mixed into `JobStore`: each method runs the block of the same name in `flow.sql`."""

    _sql: dict[str, str]
    schema: str

    if TYPE_CHECKING:  # provided by JobStore

        @property
        def pool(self) -> asyncpg.Pool: ...
        @property
        def claim_pool(self) -> asyncpg.Pool: ...

    async def flow_claim(
        self, queues: Sequence[str], limit: int, worker_id: str, timeout_grace: float
    ) -> list[ClaimedJob]:
        """Claim up to `limit` held-back jobs of `queues` whose limits have room, under the
        flow lock: one statement (the function `flow_claim` takes the lock, then claims)."""
        with translate_errors("claim limited jobs"):
            rows = await self.claim_pool.fetch(
                self._sql["flow_claim"], worker_id, timeout_grace, list(queues), limit
            )
        return [ClaimedJob.from_row(row) for row in rows]

    async def flow_held_back(self, job_ids: Sequence[int]) -> set[int]:
        """Of `job_ids`, those queued and held back by a paused queue or a limit."""
        with translate_errors("held-back jobs"):
            rows = await self.pool.fetch(self._sql["flow_held_back"], list(job_ids))
        return {row["id"] for row in rows}

    async def flow_waiting(self, queues: Sequence[str]) -> bool:
        """Whether a held-back job of `queues` waits for a limit's room."""
        with translate_errors("waiting limited jobs"):
            waiting: bool = await self.pool.fetchval(self._sql["flow_waiting"], list(queues))
        return waiting

    async def flow_limit_set(self, scope: str, name: str, limits: Limits) -> None:
        """Set the limits of handler or queue `name`."""
        with translate_errors("set limits"):
            await self.pool.execute(self._sql["flow_limit_set"], scope, name, *limits.columns())

    async def flow_limits_declare(
        self, handlers: Sequence[str], limits: Mapping[str, Limits], executor: SqlExecutor
    ) -> list[str]:
        """Set the limits of `handlers` as this worker's code declares them (a handler
        without limits loses any it had); return the handlers that lost theirs."""
        cleared = []
        with translate_errors("declare limits"):
            for name in handlers:
                if name in limits:
                    await executor.execute(
                        self._sql["flow_limit_set"], "handler", name, *limits[name].columns()
                    )
                elif await executor.fetchval(self._sql["flow_limit_clear"], "handler", name):
                    cleared.append(name)
        return cleared

    async def flow_limit_clear(self, scope: str, name: str) -> bool:
        """Remove the limits of handler or queue `name`; whether it had some."""
        with translate_errors("clear limits"):
            cleared: bool = await self.pool.fetchval(self._sql["flow_limit_clear"], scope, name)
        return cleared

    async def flow_unrestrained(self, scope: str, name: str) -> list[Record]:
        """Queued jobs of handler or queue `name` that nothing holds back any more: (id,
        queue, priority) of each, to ring for."""
        with translate_errors("unrestrained jobs"):
            rows: list[Record] = await self.pool.fetch(self._sql["flow_unrestrained"], scope, name)
        return rows

    async def flow_limits_list(self) -> list[Record]:
        """Every limit with its running and waiting jobs."""
        with translate_errors("list limits"):
            rows: list[Record] = await self.pool.fetch(self._sql["flow_limits_list"])
        return rows

    async def queue_pause(self, queue: str) -> None:
        """Pause `queue`."""
        with translate_errors("pause queue"):
            await self.pool.execute(self._sql["queue_pause"], queue)

    async def queue_resume(self, queue: str) -> list[Record]:
        """Resume `queue`; its queued jobs (id, queue, priority), to ring for."""
        with translate_errors("resume queue"):
            rows: list[Record] = await self.pool.fetch(self._sql["queue_resume"], queue)
        return rows

    async def queues_paused(self) -> list[Record]:
        """The paused queues with their waiting jobs."""
        with translate_errors("list paused queues"):
            rows: list[Record] = await self.pool.fetch(self._sql["queues_paused"])
        return rows

    async def flow_starts_prune(self, executor: SqlExecutor) -> int:
        """Forget starts older than every rate window; how many."""
        with translate_errors("prune starts"):
            pruned: int = await executor.fetchval(self._sql["flow_starts_prune"])
        return pruned
