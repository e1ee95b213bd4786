"""`SqsBroker`: notices in SQS queues, owned by receipt handle and visibility timeout."""

from __future__ import annotations

import asyncio
import time
from collections import defaultdict
from dataclasses import replace
from typing import TYPE_CHECKING, Any, ClassVar, Self

from polyqueue.broker import Broker, BrokerEnvironment, Capabilities, Delivery, Message
from polyqueue.exceptions import BrokerError, BrokerUnavailableError
from polyqueue_sqs.entries import (
    BATCH,
    MAX_DELAY_SECONDS,
    MAX_VISIBILITY_SECONDS,
    batches,
    long_poll_seconds,
    send_entry,
    whole_seconds,
)
from polyqueue_sqs.settings import SqsBrokerSettings, load_sqs_settings

if TYPE_CHECKING:
    from collections.abc import Awaitable, Sequence

    from polyqueue_sqs.client import SqsClient

__all__ = ["SqsBroker"]

SHORT_POLL_PAUSE = 0.1
"""Pause between short polls when a receive has less than a second left."""


class SqsBroker(Broker):
    """One SQS queue per Polyqueue queue; a delivery's handle is its receipt handle.

    Ownership is SQS's visibility timeout: `extend` and `nack` change it, `ack` deletes the
    message. A stale receipt (the message became visible and was received again) is ignored.
    """

    name: ClassVar[str] = "sqs"
    capabilities: Capabilities = Capabilities(
        max_batch=BATCH,
        native_delay=True,
        max_delay_seconds=float(MAX_DELAY_SECONDS),
        priority=False,
    )

    def __init__(
        self, settings: SqsBrokerSettings | None = None, *, lease_seconds: float = 30.0
    ) -> None:
        super().__init__(lease_seconds=lease_seconds)
        self.settings = settings if settings is not None else load_sqs_settings()
        if self.settings.fifo:  # FIFO queues take no per-message delay
            self.capabilities = replace(self.capabilities, native_delay=False, max_delay_seconds=0)
        self.visibility_timeout = self.settings.visibility_timeout or lease_seconds
        self._client: SqsClient | None = None
        self._closing = asyncio.Event()
        self._polls: set[asyncio.Future[Any]] = set()

    @classmethod
    def from_environment(cls, environment: BrokerEnvironment) -> Self:
        """Read `POLYQUEUE_SQS_*`; the lease comes from `POLYQUEUE_LEASE_SECONDS`."""
        return cls(load_sqs_settings(), lease_seconds=environment.settings.lease_seconds)

    @property
    def client(self) -> SqsClient:
        """The started client (`BrokerUnavailableError` once closed)."""
        return self._require()

    async def start(self) -> None:
        """Create the one aiobotocore client of this broker (no call is made yet)."""
        from polyqueue_sqs.client import SqsClient  # noqa: PLC0415  (lazy SDK import)

        client = SqsClient(self.settings, self.visibility_timeout)
        await client.open()
        self._client = client
        self._closing.clear()

    async def close(self) -> None:
        """Cancel waiting long polls (their receives return `[]`), close the client."""
        self._closing.set()
        polls, self._polls = self._polls, set()
        for poll in polls:
            poll.cancel()
        if polls:
            await asyncio.wait(polls)
        client, self._client = self._client, None
        if client is not None:
            await client.close()

    # -- publishing ---------------------------------------------------------------------------

    async def publish(self, messages: Sequence[Message]) -> None:
        """SendMessageBatch per queue in tens; the batches of a call run concurrently."""
        client = self._require()
        by_queue: defaultdict[str, list[Message]] = defaultdict(list)
        for message in messages:
            by_queue[message.queue].append(message)
        sends = [
            client.send_batch(queue, [send_entry(i, m, self.settings) for i, m in enumerate(chunk)])
            for queue, queued in by_queue.items()
            for chunk in batches(queued)
        ]
        await _all(sends)

    # -- receiving ----------------------------------------------------------------------------

    async def receive(
        self, queues: Sequence[str], *, max_messages: int, wait_seconds: float
    ) -> list[Delivery]:
        """Long-poll `queues` (concurrently) until a message comes or `wait_seconds` pass."""
        self._require()
        deadline = time.monotonic() + wait_seconds
        while not self._closing.is_set() and queues and max_messages > 0:
            remaining = deadline - time.monotonic()
            wait = long_poll_seconds(remaining, self.settings.wait_time_seconds)
            got = await self._unless_closed(self._poll(queues, max_messages, wait))
            if got:
                return got
            remaining = deadline - time.monotonic()
            if remaining <= 0 or self._closing.is_set():
                break
            if wait == 0:
                await self._unless_closed(asyncio.sleep(min(remaining, SHORT_POLL_PAUSE)))
        return []

    async def _poll(self, queues: Sequence[str], max_messages: int, wait: int) -> list[Delivery]:
        """One ReceiveMessage per queue; what exceeds `max_messages` is released at once."""
        client = self._require()
        asked = min(max_messages, BATCH)
        replies = await asyncio.gather(*(client.receive(q, asked, wait) for q in queues))
        deliveries = [
            Delivery(self, queue, message["Body"].encode("utf-8"), message["ReceiptHandle"])
            for queue, reply in zip(queues, replies, strict=True)
            for message in reply
        ]
        if len(deliveries) > max_messages:
            await self.nack(deliveries[max_messages:])
        return deliveries[:max_messages]

    async def _unless_closed(self, work: Awaitable[list[Delivery] | None]) -> list[Delivery] | None:
        """Await `work`; None if `close()` cancelled it (or was called) meanwhile."""
        poll = asyncio.ensure_future(work)
        self._polls.add(poll)
        try:
            return await asyncio.shield(poll)
        except asyncio.CancelledError:
            if self._closing.is_set() and poll.cancelled():
                return None
            poll.cancel()
            raise
        except BrokerError:
            if self._closing.is_set():
                return None
            raise
        finally:
            self._polls.discard(poll)

    # -- settling -----------------------------------------------------------------------------

    async def ack(self, deliveries: Sequence[Delivery]) -> None:
        """DeleteMessageBatch in tens; receipts that are no longer current are ignored."""
        client = self._require()
        await _all(
            client.delete_batch(queue, chunk)
            for queue, receipts in _by_queue(deliveries).items()
            for chunk in batches(receipts)
        )

    async def nack(self, deliveries: Sequence[Delivery], delay: float = 0.0) -> None:
        """Visible again after `delay` seconds (rounded up, at most SQS's 12 hours)."""
        await self._change_visibility(deliveries, whole_seconds(delay, MAX_VISIBILITY_SECONDS))

    async def extend(self, deliveries: Sequence[Delivery], seconds: float) -> None:
        """Invisible for `seconds` more from now (rounded up, at most 12 hours)."""
        await self._change_visibility(deliveries, whole_seconds(seconds, MAX_VISIBILITY_SECONDS))

    async def _change_visibility(self, deliveries: Sequence[Delivery], seconds: int) -> None:
        client = self._require()
        await _all(
            client.change_visibility_batch(queue, chunk, seconds)
            for queue, receipts in _by_queue(deliveries).items()
            for chunk in batches(receipts)
        )

    def _require(self) -> SqsClient:
        if self._client is None or self._closing.is_set():
            raise BrokerUnavailableError("the sqs broker is not started", broker=self.name)
        return self._client


async def _all(calls: Any) -> None:
    """Await `calls` concurrently; the first error is raised once all have ended."""
    results = await asyncio.gather(*calls, return_exceptions=True)
    for result in results:
        if isinstance(result, BaseException):
            raise result


def _by_queue(deliveries: Sequence[Delivery]) -> dict[str, list[str]]:
    groups: defaultdict[str, list[str]] = defaultdict(list)
    for delivery in deliveries:
        groups[delivery.queue].append(delivery.handle)
    return dict(groups)
