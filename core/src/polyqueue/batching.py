"""`InsertBatcher`: concurrent `enqueue` calls of one process share statements and commits."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

from polyqueue.exceptions import DatabaseUnavailableError, StoreError

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable, Sequence

    from polyqueue.job import NewJobs
    from polyqueue.store import InsertedJob

__all__ = ["MAX_BATCH", "InsertBatcher"]

MAX_BATCH = 500
"""Jobs per shared statement at most; more waiting calls go into the statements after it."""


class InsertBatcher:
    """Groups the single-job inserts of concurrent calls into multi-row statements.

    A call that finds no statement in flight goes out at once, alone: a lone producer waits
    for nobody. Calls that arrive while `flights` statements are in flight wait together and
    go out as the next statement, one multi-row INSERT and one commit for all of them; so
    the busier the producers, the bigger the batches, while the number of statements (and of
    fsyncs) per second stays what the database can commit.

    Each call returns when the statement holding its job has committed (and, for a broker
    outside the database, its notice was handed to the publisher): never earlier, so a
    returned id is durable. A statement the database refuses (a payload it cannot store) is
    retried job by job, so the refusal reaches only the call whose job it was; a lost
    connection reaches every call of the statement, as it would reach each alone.
    """

    def __init__(
        self,
        insert: Callable[[Sequence[NewJobs]], Awaitable[list[InsertedJob]]],
        *,
        flights: int = 1,
        max_batch: int = MAX_BATCH,
    ) -> None:
        self._insert = insert
        self._flights = flights
        self._max_batch = max_batch
        self._waiting: list[tuple[NewJobs, asyncio.Future[InsertedJob]]] = []
        self._senders = 0
        self._running: set[asyncio.Task[None]] = set()

    async def insert(self, jobs: NewJobs) -> InsertedJob:
        """Insert the one job of `jobs` with whatever other calls are waiting; its row."""
        loop = asyncio.get_running_loop()
        done: asyncio.Future[InsertedJob] = loop.create_future()
        self._waiting.append((jobs, done))
        if self._senders < self._flights:
            self._senders += 1
            task = loop.create_task(self._send_waiting())
            self._running.add(task)
            task.add_done_callback(self._running.discard)
        return await done

    async def close(self) -> None:
        """Wait for the statements in flight (their callers are waiting for them)."""
        while self._running:
            await asyncio.gather(*self._running, return_exceptions=True)

    async def _send_waiting(self) -> None:
        """Send what waits, a statement at a time, until nothing does."""
        try:
            while self._waiting:
                batch = self._waiting[: self._max_batch]
                del self._waiting[: self._max_batch]
                await self._send(batch)
        finally:
            self._senders -= 1  # at once: a call arriving from now on starts a sender

    async def _send(self, batch: list[tuple[NewJobs, asyncio.Future[InsertedJob]]]) -> None:
        try:
            rows = await self._insert([jobs for jobs, _ in batch])
        except StoreError as exc:
            if len(batch) == 1 or isinstance(exc, DatabaseUnavailableError):
                _fail(batch, exc)
                return
            await asyncio.gather(*(self._send([one]) for one in batch))  # whose job was it?
            return
        except BaseException as exc:
            _fail(batch, exc)
            if not isinstance(exc, Exception):
                raise
            return
        for (_, done), row in zip(batch, rows, strict=True):
            if not done.done():  # its caller may have been cancelled meanwhile
                done.set_result(row)


def _fail(batch: Sequence[tuple[NewJobs, asyncio.Future[InsertedJob]]], exc: BaseException) -> None:
    for _, done in batch:
        if not done.done():
            if isinstance(exc, Exception):
                done.set_exception(exc)
            else:
                done.cancel()
