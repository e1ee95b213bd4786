"""Helpers of the PGMQ tests: a running worker, and reading PGMQ tables by hand."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import asyncpg
import pytest

from polyqueue import Polyqueue
from polyqueue.sql import quote_identifier


@contextlib.asynccontextmanager
async def running_worker(app: Polyqueue, **options: Any) -> AsyncIterator[None]:
    """A worker of `app` running in the background for the block."""
    worker = app.worker(**options)
    task = asyncio.create_task(worker.run())
    try:
        yield
    finally:
        worker.stop()
        await task


def queue_table(pgmq_queue: str, kind: str = "q") -> str:
    """`pgmq."q_<queue>"` (or the archive, kind `a`)."""
    return "pgmq." + quote_identifier(f"{kind}_{pgmq_queue}")


async def count_messages(where: str | asyncpg.Connection, pgmq_queue: str, kind: str = "q") -> int:
    """Rows of a PGMQ queue's table (kind `a`: its archive); 0 if the queue does not exist.

    `where` is a database URL or an open connection.
    """
    if not isinstance(where, str):
        return await _count(where, queue_table(pgmq_queue, kind))
    connection = await asyncpg.connect(where)
    try:
        return await _count(connection, queue_table(pgmq_queue, kind))
    finally:
        await connection.close()


async def _count(connection: asyncpg.Connection, table: str) -> int:
    if not await connection.fetchval("SELECT to_regclass($1)", table):
        return 0
    return int(await connection.fetchval(f"SELECT count(*) FROM {table}"))


async def eventually(check: Callable[[], Awaitable[bool]], timeout: float = 30.0) -> None:
    """Wait until `check()` is true; fail after `timeout` (a bound, not a timing assertion)."""
    deadline = time.monotonic() + timeout
    while not await check():
        if time.monotonic() > deadline:
            pytest.fail(f"condition not met within {timeout}s")
        await asyncio.sleep(0.05)
