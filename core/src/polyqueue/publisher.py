"""`NoticePublisher`: publishes notices of committed jobs, retrying in the background."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import TYPE_CHECKING

from polyqueue.backoff import Backoff
from polyqueue.exceptions import PolyqueueError

if TYPE_CHECKING:
    from collections.abc import Sequence

    from polyqueue.broker import Broker, Message

__all__ = ["NoticePublisher"]

log = logging.getLogger(__name__)

MAX_HANDED_BATCH = 1000
"""Handed-off notices published in one `publish` call at most."""

MAX_BUFFERED = 100_000
"""Notices kept for retry while the broker is down; beyond, the maintenance loop's
republishing of long-queued jobs is what rings for them."""


class NoticePublisher:
    """Publishes after the job rows committed; a failure never loses the job.

    If the broker is unreachable the notices wait in memory and a background task retries
    them with backoff, so the doorbell rings once the broker is back.

    `hand_off` is the producer's fast path: the caller does not wait for the broker's round
    trip, a sender task publishes what was handed off, in order, as one `publish` per round
    (so a busy producer's notices go out in batches). `close` sends what is left.
    """

    def __init__(self, broker: Broker) -> None:
        self._broker = broker
        self._buffer: list[Message] = []
        self._retrying: asyncio.Task[None] | None = None
        self._handed: list[Message] = []
        self._sending: asyncio.Task[None] | None = None
        self._in_flight = 0

    @property
    def pending(self) -> int:
        """Notices not published yet: handed off and not sent, or waiting for the broker to
        come back."""
        return len(self._handed) + self._in_flight + len(self._buffer)

    def hand_off(self, messages: Sequence[Message]) -> None:
        """Publish `messages` soon, behind every notice handed off before; returns at once.
        Their jobs are committed: if this process dies before the broker has them, the
        republisher rings for the jobs (as for any notice a broker outage kept back)."""
        if not messages:
            return
        self._handed.extend(messages)
        if self._sending is None or self._sending.done():
            self._sending = asyncio.get_running_loop().create_task(
                self._send_handed(), name="polyqueue-notice-sender"
            )

    async def _send_handed(self) -> None:
        while self._handed:
            batch, self._handed = self._handed[:MAX_HANDED_BATCH], self._handed[MAX_HANDED_BATCH:]
            self._in_flight = len(batch)
            try:
                await self.publish(batch)  # on failure the batch is kept for the retry task
            finally:
                self._in_flight = 0

    async def publish(self, messages: Sequence[Message]) -> None:
        """Publish now, or keep the messages for the retry task; never raises broker errors."""
        if not messages:
            return
        if self._buffer:  # keep order behind the ones already waiting
            self._keep(messages)
            return
        try:
            await self._broker.publish(messages)
        except PolyqueueError as exc:
            log.warning("publishing %d notices failed, will retry: %s", len(messages), exc)
            self._keep(messages)
        except Exception:  # a broker's bug: the jobs are committed, their notices must follow
            log.exception("publishing %d notices failed, will retry", len(messages))
            self._keep(messages)

    def _keep(self, messages: Sequence[Message]) -> None:
        room = MAX_BUFFERED - len(self._buffer)
        if room < len(messages):
            log.error(
                "notice buffer full: %d notices left to the republisher", len(messages) - room
            )
        self._buffer.extend(messages[: max(room, 0)])
        if self._retrying is None or self._retrying.done():
            self._retrying = asyncio.get_running_loop().create_task(self._retry())

    async def _retry(self) -> None:
        backoff = Backoff(base=0.1, cap=5.0)
        while self._buffer:
            await backoff.sleep()
            batch = self._buffer[:1000]
            try:
                await self._broker.publish(batch)
            except PolyqueueError as exc:
                log.info("broker still unavailable for %d notices: %s", len(self._buffer), exc)
                continue
            except Exception:  # a broker's bug must not end the retries: the notices wait
                log.exception("publishing %d buffered notices failed", len(batch))
                continue
            del self._buffer[: len(batch)]
            backoff.reset()
        log.info("buffered notices published")

    async def flush(self) -> None:
        """Wait until every notice handed off so far was published or kept for retry."""
        while self._sending is not None and not self._sending.done():
            await asyncio.shield(self._sending)

    async def close(self) -> None:
        """Send what was handed off, stop retrying; what is still buffered (the broker is
        down) is left to the republisher."""
        await self.flush()
        if self._retrying is not None:
            self._retrying.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._retrying
        if self._buffer:
            log.warning("%d notices unpublished at close", len(self._buffer))
