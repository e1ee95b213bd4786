"""When a burst worker is done: no job of its queues is ready to run (queued or due)."""

from __future__ import annotations

from functools import cache
from typing import TYPE_CHECKING

from polyqueue.sql import load_queries
from polyqueue.store.errors import translate_errors

if TYPE_CHECKING:
    from collections.abc import Sequence

    from polyqueue.store import JobStore

__all__ = ["BURST_RECEIVE_WAIT_SECONDS", "jobs_ready"]

BURST_RECEIVE_WAIT_SECONDS = 0.05
"""A burst worker waits this long for a notice before it looks whether it is done."""


@cache
def _sql(schema: str) -> str:
    return load_queries("burst.sql", schema)["jobs_ready"].sql


async def jobs_ready(store: JobStore, queues: Sequence[str]) -> bool:
    """Whether a job of `queues` is queued, or scheduled and due."""
    with translate_errors("look for ready jobs"):
        ready: bool = await store.pool.fetchval(_sql(store.schema), list(queues))
    return ready
