"""`DashboardQueries`: the dashboard's read-only SQL (`queries.sql`), one method per block."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

from polyqueue.sql import load_queries
from polyqueue.store.errors import translate_errors

if TYPE_CHECKING:
    from collections.abc import Sequence

    from asyncpg import Record

    from polyqueue.store import JobStore

__all__ = ["COUNT_CAP", "SEARCH_WINDOW", "DashboardQueries", "JobFilters", "SearchPage"]

COUNT_CAP = 10_000
"""Counts per queue and status stop here ("10,000+"): an exact count of a million rows
reads a million index entries, which no page can afford."""
SEARCH_WINDOW = 5_000
"""Jobs a text search looks at per request: it reads their payload and error, so it is
bounded; the page offers to search on from the oldest job it looked at."""


@dataclass(frozen=True, slots=True)
class JobFilters:
    """The filters of the jobs page; None (or empty) means "any"."""

    statuses: tuple[str, ...] = ()
    queue: str | None = None
    name: str | None = None
    since: datetime | None = None
    until: datetime | None = None
    text: str | None = None

    def arguments(self) -> tuple[object, ...]:
        """The `job_filter` fragment's parameters $1..$5."""
        return (list(self.statuses) or None, self.queue, self.name, self.since, self.until)


@dataclass(frozen=True, slots=True)
class SearchPage:
    """A page of text-search matches, and where the search stopped looking."""

    rows: list[Record]
    window: int
    """How many jobs the search looked at, at most."""
    looked_until: int | None
    """The oldest job looked at when the window was full and fewer than the page matched
    (older jobs remain to be searched); else None."""


class DashboardQueries:
    """The dashboard's queries on `store`'s pool (they never change a row)."""

    def __init__(self, store: JobStore) -> None:
        self.store = store
        self._sql = {
            name: query.sql
            for name, query in load_queries("queries.sql", store.schema, __package__).items()
        }

    async def _fetch(self, name: str, *args: object) -> list[Record]:
        with translate_errors(f"dashboard: {name.replace('_', ' ')}"):
            rows: list[Record] = await self.store.pool.fetch(self._sql[name], *args)
        return rows

    async def _planned(self, name: str, *args: object) -> list[Record]:
        """`name`'s rows, planned for these parameters (`JobStore.fetch_planned`): optional
        filters and time windows."""
        with translate_errors(f"dashboard: {name.replace('_', ' ')}"):
            return await self.store.fetch_planned(self._sql[name], *args)

    async def status_counts(self) -> list[Record]:
        """Jobs per queue and status, each counted up to `COUNT_CAP` + 1."""
        return await self._fetch("status_counts", COUNT_CAP)

    async def status_estimates(self) -> dict[str, int]:
        """The planner's estimate of the jobs in each status (as of the last ANALYZE)."""
        return {row["status"]: row["jobs"] for row in await self._fetch("status_estimates")}

    async def throughput(self, minutes: int) -> list[Record]:
        """Succeeded and failed jobs per minute over the last `minutes`, by minutes ago."""
        return await self._planned("throughput", minutes)

    async def running_jobs(self, limit: int) -> list[Record]:
        """The most recently started running jobs."""
        return await self._fetch("running_jobs", limit)

    async def workers_alive(self) -> int:
        """How many workers are running."""
        rows = await self._fetch("workers_alive")
        alive: int = rows[0]["workers"]
        return alive

    async def workers(self, limit: int) -> list[Record]:
        """Registered workers, running ones first."""
        return await self._fetch("workers", limit)

    async def job_page(
        self, filters: JobFilters, *, before: int | None, after: int | None, limit: int
    ) -> list[Record]:
        """Jobs matching `filters`, newest first, older than `before` or newer than `after`."""
        if after is not None:
            rows = await self._planned("job_page_newer", *filters.arguments(), after, limit)
            return rows[::-1]
        return await self._planned("job_page_older", *filters.arguments(), before, limit)

    async def job_search(
        self, filters: JobFilters, *, before: int | None, limit: int
    ) -> SearchPage:
        """Jobs matching `filters` whose error or payload contains `filters.text`, among
        the `SEARCH_WINDOW` newest matching jobs older than `before`."""
        text = (filters.text or "").lower()
        rows = await self._planned(
            "job_search", *filters.arguments(), text, before, SEARCH_WINDOW, limit
        )
        if len(rows) >= limit:
            return SearchPage(rows, SEARCH_WINDOW, None)
        end = await self._planned("job_search_end", *filters.arguments(), SEARCH_WINDOW, before)
        return SearchPage(rows, SEARCH_WINDOW, end[0]["id"] if end else None)

    async def job_extras(self, job_id: int) -> tuple[list[dict[str, Any]], int | None]:
        """The failed attempts of `job_id`, oldest first, and its workflow's id."""
        rows = await self._fetch("job_extras", job_id)
        if not rows:
            return [], None
        attempts: list[dict[str, Any]] = json.loads(rows[0]["errors"])
        for attempt in attempts:
            attempt["at"] = datetime.fromisoformat(attempt["at"])
        return attempts, rows[0]["workflow_id"]

    async def job_live(self, job_ids: Sequence[int]) -> list[Record]:
        """Status and progress of `job_ids`."""
        return await self._fetch("job_live", list(job_ids))

    async def queue_names(self) -> list[Record]:
        """Every queue that has jobs, with queued, scheduled and running counts."""
        return await self._fetch("queue_names")

    async def cron_ledger(self) -> list[Record]:
        """Every schedule that has fired, with its expression and last tick."""
        return await self._fetch("cron_ledger")

    async def jobs_by_key(self, keys: Sequence[str]) -> list[Record]:
        """The jobs holding these idempotency keys."""
        return await self._fetch("jobs_by_key", list(keys))

    async def job_ids(self, filters: JobFilters, limit: int) -> list[int]:
        """The newest `limit` job ids matching `filters` (text included, within the window)."""
        if filters.text:
            page = await self.job_search(filters, before=None, limit=limit)
            return [row["id"] for row in page.rows]
        return [row["id"] for row in await self._planned("job_ids", *filters.arguments(), limit)]
