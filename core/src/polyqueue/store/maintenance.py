"""The job store's maintenance queries: reaping, reclaiming, timeouts, republishing, cron."""

from __future__ import annotations

from typing import TYPE_CHECKING

from polyqueue.store.errors import translate_errors

if TYPE_CHECKING:
    from collections.abc import Sequence
    from datetime import datetime

    from asyncpg import Record

    from polyqueue.store.records import SqlExecutor

__all__ = ["MaintenanceQueries"]


class MaintenanceQueries:
    """Mixed into `JobStore`: each method runs the named block of the same name."""

    _sql: dict[str, str]

    async def maintenance_lock(self, schema: str, executor: SqlExecutor) -> bool:
        """Whether this transaction leads this round (a transaction-scoped advisory lock)."""
        with translate_errors("maintenance lock"):
            leader: bool = await executor.fetchval(self._sql["maintenance_lock"], schema)
        return leader

    async def maintenance_guard(self, idle_timeout: float, executor: SqlExecutor) -> None:
        """Let the server end this transaction's session after `idle_timeout` idle seconds."""
        with translate_errors("maintenance guard"):
            await executor.execute(self._sql["maintenance_guard"], str(int(idle_timeout * 1000)))

    async def worker_reap(self, stale_after: float, executor: SqlExecutor) -> list[str]:
        """Mark workers silent for `stale_after` seconds dead; return their ids."""
        with translate_errors("reap workers"):
            rows = await executor.fetch(self._sql["worker_reap"], stale_after)
        return [row["id"] for row in rows]

    async def job_reclaim(
        self, max_reclaims: int, stale_after: float, executor: SqlExecutor
    ) -> list[Record]:
        """Queue again the running jobs no live worker holds (their worker is gone, or their
        own heartbeat is `stale_after` seconds old); `(id, queue, priority)` of each."""
        with translate_errors("reclaim jobs"):
            rows: list[Record] = await executor.fetch(
                self._sql["job_reclaim"], max_reclaims, stale_after
            )
        return rows

    async def job_fail_poison(
        self, max_reclaims: int, stale_after: float, executor: SqlExecutor
    ) -> list[int]:
        """Fail the jobs `job_reclaim` would reclaim for the `max_reclaims`-th time."""
        with translate_errors("fail poison jobs"):
            rows = await executor.fetch(self._sql["job_fail_poison"], max_reclaims, stale_after)
        return [row["id"] for row in rows]

    async def job_expire_timeouts(
        self, backoff_base: float, backoff_max: float, limit: int, executor: SqlExecutor
    ) -> list[Record]:
        """Apply the timeout strategy to jobs past `timeout_at`; `(id, status)` of each."""
        with translate_errors("expire timeouts"):
            rows: list[Record] = await executor.fetch(
                self._sql["job_expire_timeouts"], backoff_base, backoff_max, limit
            )
        return rows

    async def job_republish_stale(
        self, older_than: float, limit: int, executor: SqlExecutor
    ) -> list[Record]:
        """Queued jobs whose notice may be lost; `(id, queue, priority)` of each."""
        with translate_errors("republish"):
            rows: list[Record] = await executor.fetch(
                self._sql["job_republish_stale"], older_than, limit
            )
        return rows

    async def job_prune(
        self, succeeded: float, failed: float, cancelled: float, limit: int, executor: SqlExecutor
    ) -> int:
        """Delete up to `limit` finished jobs of each status past its retention (seconds)."""
        with translate_errors("prune"):
            deleted: int = await executor.fetchval(
                self._sql["job_prune"], succeeded, failed, cancelled, limit
            )
        return deleted

    async def worker_prune(self, retention: float, executor: SqlExecutor) -> int:
        """Delete the rows of workers stopped or dead for over `retention` seconds."""
        with translate_errors("prune workers"):
            deleted: int = await executor.fetchval(self._sql["worker_prune"], retention)
        return deleted

    async def cron_last_ticks(
        self, names: Sequence[str], executor: SqlExecutor
    ) -> dict[str, datetime]:
        """The last fired tick of each of these schedules that has one."""
        with translate_errors("cron ticks"):
            rows = await executor.fetch(self._sql["cron_last_ticks"], list(names))
        return {row["name"]: row["last_tick"] for row in rows}

    async def cron_advance(
        self, name: str, expression: str, tick: datetime, executor: SqlExecutor
    ) -> None:
        """Record `tick` as the schedule's last fired tick (never moving it back)."""
        with translate_errors("cron advance"):
            await executor.execute(self._sql["cron_advance"], name, expression, tick)
