"""Helpers for the end-to-end tests: bounded polling, in-process workers and row reads."""

from __future__ import annotations

import contextlib
from typing import TYPE_CHECKING, Any

import pytest

from polyqueue import JobTimeoutError

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

    from polyqueue import Job, Polyqueue


async def job_row(app: Polyqueue, job_id: int) -> dict[str, Any]:
    """The raw row of a job (every column), through the app's own pool."""
    row = await app.store.pool.fetchrow("SELECT * FROM polyqueue.jobs WHERE id = $1", job_id)
    assert row is not None, f"no job {job_id}"
    return dict(row)


async def status_is(app: Polyqueue, job_id: int, *statuses: str) -> bool:
    """Whether job `job_id` is in one of `statuses` now."""
    status = (await app.store.job_status_many([job_id])).get(job_id)
    return status in statuses


async def all_finished(app: Polyqueue, job_ids: list[int]) -> bool:
    """Whether every job in `job_ids` has succeeded, failed or been cancelled."""
    statuses = await app.store.job_status_many(job_ids)
    return all(statuses.get(i) in {"succeeded", "failed", "cancelled"} for i in job_ids)


async def wait_done(app: Polyqueue, job_id: int, timeout: float = 20.0) -> Job:
    """`app.wait_for`, failing with the job's state (not just "timed out") if it never ends."""
    try:
        return await app.wait_for(job_id, timeout=timeout)
    except JobTimeoutError:
        row = await job_row(app, job_id)
        keys = ("status", "attempt", "attempt_base", "run_at", "worker_id", "error_type")
        notices = await app.store.pool.fetchval("SELECT count(*) FROM polyqueue.broker_messages")
        state = {k: row[k] for k in keys}
        pytest.fail(f"job {job_id} unfinished after {timeout}s: {state}; broker rows: {notices}")


@contextlib.asynccontextmanager
async def started(*apps: Polyqueue) -> AsyncIterator[None]:
    """Start each distinct app (the same object may be passed twice); close them on exit."""
    async with contextlib.AsyncExitStack() as stack:
        for app in dict.fromkeys(apps):
            await stack.enter_async_context(app)
        yield
