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

MAX_BUFFERED = 100_000
"""Notices kept for retry while the broker is down; beyond, the maintenance loop's
republishing of long-queued jobs is what rings for them."""


class NoticePublisher:
    """Publishes after the job rows committed; a failure never loses the job.

    If the broker is unreachable the notices wait in memory and a background task retries
    them with backoff, so the doorbell rings once the broker is back.
    """

    def __init__(self, broker: Broker) -> None:
        self._broker = broker
        self._buffer: list[Message] = []
        self._retrying: asyncio.Task[None] | None = None

    @property
    def pending(self) -> int:
        """Notices waiting for the broker to come back."""
        return len(self._buffer)

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

    async def close(self) -> None:
        """Stop retrying; what is still buffered is left to the republisher."""
        if self._retrying is not None:
            self._retrying.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._retrying
        if self._buffer:
            log.warning("%d notices unpublished at close", len(self._buffer))
