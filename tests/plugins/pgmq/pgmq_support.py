"""Helpers of the PGMQ tests: a running worker, and reading PGMQ tables by hand."""

from __future__ import annotations

import functools

import asyncpg

from polyqueue.sql import quote_identifier
from polyqueue.testing.helpers import running_worker as _running_worker

running_worker = functools.partial(_running_worker, graceful=True)
"""A worker for the block, stopped gracefully (in-flight jobs finish)."""


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
