"""The job store's read-only queries for operators: stats, workers, job search."""

from __future__ import annotations

from typing import TYPE_CHECKING

from polyqueue.store.errors import translate_errors

if TYPE_CHECKING:
    from collections.abc import Sequence
    from datetime import datetime

    import asyncpg
    from asyncpg import Record

__all__ = ["InspectionQueries"]


class InspectionQueries:
    """Mixed into `JobStore`: each method runs the named block of the same name."""

    _sql: dict[str, str]

    if TYPE_CHECKING:  # provided by JobStore

        @property
        def pool(self) -> asyncpg.Pool: ...

    async def job_find(
        self,
        *,
        statuses: Sequence[str] | None = None,
        queue: str | None = None,
        name: str | None = None,
        since: datetime | None = None,
        limit: int = 100,
    ) -> list[Record]:
        """Jobs matching every filter given, newest first."""
        with translate_errors("find jobs"):
            rows: list[Record] = await self.pool.fetch(
                self._sql["job_find"],
                list(statuses) if statuses else None,
                queue,
                name,
                since,
                limit,
            )
        return rows

    async def job_stats(self, recent_seconds: float) -> list[Record]:
        """Per queue and status: counts, oldest queued age, finishes in the recent window."""
        with translate_errors("job stats"):
            return await self.fetch_planned(self._sql["job_stats"], recent_seconds)

    async def fetch_planned(self, sql: str, *args: object) -> list[Record]:
        """`sql`'s rows, planned for these very `args` (the `custom_plans` block): for a read
        whose best plan depends on its parameters, such as a time window on a table of
        millions of finished jobs. It costs a planning per call, and a transaction."""
        async with self.pool.acquire() as connection, connection.transaction():
            await connection.execute(self._sql["custom_plans"])
            rows: list[Record] = await connection.fetch(sql, *args)
        return rows

    async def worker_list(self, limit: int = 100) -> list[Record]:
        """Registered workers, newest first."""
        with translate_errors("list workers"):
            rows: list[Record] = await self.pool.fetch(self._sql["worker_list"], limit)
        return rows
