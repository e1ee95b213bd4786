"""`Scheduler`: moves due `scheduled` jobs (delays, retry backoffs) to `queued` and rings."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from polyqueue.exceptions import PolyqueueError
from polyqueue.notices import notice_message
from polyqueue.supervision import supervise

if TYPE_CHECKING:
    from polyqueue.broker import Broker
    from polyqueue.publisher import NoticePublisher
    from polyqueue.store import JobStore

__all__ = ["Scheduler"]

log = logging.getLogger(__name__)

BATCH = 1000


class Scheduler:
    """Wakes at the earliest known due time, or every `interval` seconds at the latest.

    A transactional broker publishes inside the promoting transaction; any other broker
    publishes after the commit (never before: a worker could see the notice while the job
    is still `scheduled` and drop it), through the publisher that retries failures.
    """

    def __init__(
        self, store: JobStore, broker: Broker, publisher: NoticePublisher, interval: float
    ) -> None:
        self._store = store
        self._broker = broker
        self._publisher = publisher
        self._interval = interval
        self._next_at = 0.0  # monotonic time of the next check
        self._wake = asyncio.Event()

    def wake_at(self, when: datetime) -> None:
        """Check again no later than `when` (a job's `run_at`)."""
        delay = (when - datetime.now(UTC)).total_seconds()
        at = time.monotonic() + max(delay, 0.0)
        if at < self._next_at:
            self._next_at = at
            self._wake.set()

    async def run(self) -> None:
        """Promote due jobs forever (supervised: failures are logged and backed off)."""

        async def step() -> None:
            if await self.promote_due() < BATCH:
                await self._sleep_until_next()

        await supervise("the scheduler", step)

    async def _sleep_until_next(self) -> None:
        self._next_at = time.monotonic() + self._interval
        with contextlib.suppress(PolyqueueError):
            next_run = await self._store.job_next_run_at()
            if next_run is not None:
                self.wake_at(next_run)
        while (remaining := self._next_at - time.monotonic()) > 0:
            self._wake.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), remaining)

    async def promote_due(self) -> int:
        """Queue the due jobs and publish their notices; return how many."""
        async with self._store.transaction() as connection:
            rows = await self._store.job_promote_due(BATCH, connection)
            messages = [notice_message(r["id"], r["queue"], r["priority"]) for r in rows]
            if messages and self._broker.capabilities.transactional_publish:
                await self._broker.publish_in(connection, messages)
                messages = []
        await self._publisher.publish(messages)
        return len(rows)
