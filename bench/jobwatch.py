"""`JobWatch`: the benchmark's own connection, polling the jobs table during a drain.

It also knows the server's process tree: its backend's parent is the postmaster, so
`postgres_cpu_seconds()` is the CPU of the whole server (backends, WAL writer, checkpointer,
autovacuum) minus this poller's own backend, which is the benchmark's cost, not the queue's.
"""

from __future__ import annotations

import asyncio
import time
from typing import TYPE_CHECKING, Self

import asyncpg

import queries
from procstat import read_stat, tree_cpu_seconds
from workload import SCHEMA

if TYPE_CHECKING:
    from collections.abc import Callable

__all__ = ["JobWatch", "StalledError"]

POLL_SECONDS = 0.02
STALL_SECONDS = 30.0  # no job finished for this long: the worker is stuck
_SERVER_COMM = "postgres"


class StalledError(RuntimeError):
    """A drain made no progress for `STALL_SECONDS`."""


class JobWatch:
    """Polls `jobs` on `url` (only those with an id above `since_id`); use as
    `async with JobWatch(url) as watch:`."""

    def __init__(self, url: str, since_id: int = 0) -> None:
        self._url = url
        self._since_id = since_id
        self._sql = queries.load(schema=SCHEMA)["job_counts"]
        self._connection: asyncpg.Connection | None = None
        self._backend_pid: int | None = None
        self._postmaster_pid: int | None = None

    async def __aenter__(self) -> Self:
        self._connection = await asyncpg.connect(self._url)
        backend = read_stat(await self._connection.fetchval("SELECT pg_backend_pid()"))
        # A server on another machine has other pids: only trust a local `postgres` process.
        if backend is not None and backend.comm == _SERVER_COMM:
            parent = read_stat(backend.ppid)
            if parent is not None and parent.comm == _SERVER_COMM:
                self._backend_pid, self._postmaster_pid = backend.pid, parent.pid
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        if self._connection is not None:
            await self._connection.close()
            self._connection = None

    def postgres_cpu_seconds(self) -> float | None:
        """CPU seconds the server has used so far, less this poller's backend; None if the
        server's processes are not readable here (a remote `--database-url`)."""
        if self._postmaster_pid is None or self._backend_pid is None:
            return None
        total = tree_cpu_seconds(self._postmaster_pid)
        own = read_stat(self._backend_pid)
        if total is None or own is None:
            return None
        return total - own.own_cpu

    async def wait_succeeded(self, jobs: int, on_stall: Callable[[], None]) -> None:
        """Return once `jobs` jobs succeeded (polled every `POLL_SECONDS`).

        A failed job, or no job finishing for `STALL_SECONDS`, raises: a figure from a broken
        or stuck worker would mean nothing. `on_stall()` runs first (it asks the workers to
        print their tasks' stacks).
        """
        if self._connection is None:
            raise RuntimeError("use `async with JobWatch(url)`")
        succeeded, progress_at = -1, time.monotonic()
        while True:
            row = await self._connection.fetchrow(self._sql, self._since_id)
            if row["failed"]:
                raise RuntimeError(f"{row['failed']} no-op jobs failed")
            if row["succeeded"] >= jobs:
                return
            if row["succeeded"] != succeeded:
                succeeded, progress_at = row["succeeded"], time.monotonic()
            elif time.monotonic() - progress_at > STALL_SECONDS:
                on_stall()
                raise StalledError(f"the drain stalled at {succeeded}/{jobs} jobs succeeded")
            await asyncio.sleep(POLL_SECONDS)
