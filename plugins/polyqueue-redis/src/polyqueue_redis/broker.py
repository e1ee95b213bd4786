"""`RedisBroker`: leased notices in Redis sorted sets, moved by Lua, woken by pub/sub."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import defaultdict
from typing import TYPE_CHECKING, ClassVar, Self

from polyqueue.broker import Broker, BrokerEnvironment, Capabilities, Delivery, Message
from polyqueue.exceptions import BrokerError, BrokerUnavailableError
from polyqueue.wakeup import Wakeup
from polyqueue_redis.doorbell import Doorbell
from polyqueue_redis.keys import KeySpace
from polyqueue_redis.settings import RedisBrokerSettings, load_redis_settings

if TYPE_CHECKING:
    from collections.abc import Iterator, Sequence

    from polyqueue_redis.connection import Entry, Receipt, Received, RedisConnection

__all__ = ["RedisBroker"]


class RedisBroker(Broker):
    """Per queue: a ready zset (priority, then FIFO), a lease zset, a delay zset, hashes.

    Every state change is one Lua script, so a message is always in exactly one of ready,
    leased or delayed, and each delivery carries a receipt that stale acks cannot match.
    """

    name: ClassVar[str] = "redis"
    capabilities: Capabilities = Capabilities(
        max_batch=1000,
        native_delay=True,
        max_delay_seconds=float("inf"),
        priority=True,
    )

    def __init__(
        self, settings: RedisBrokerSettings | None = None, *, lease_seconds: float = 30.0
    ) -> None:
        super().__init__(lease_seconds=lease_seconds)
        self.settings = settings if settings is not None else load_redis_settings()
        self.keys = KeySpace(self.settings.key_prefix)
        self._connection: RedisConnection | None = None
        self._doorbell = Doorbell()
        self._listener: asyncio.Task[None] | None = None
        self._closed = False
        self._wakeup = Wakeup()

    @classmethod
    def from_environment(cls, environment: BrokerEnvironment) -> Self:
        """Read `POLYQUEUE_REDIS_*`; the lease comes from `POLYQUEUE_LEASE_SECONDS`."""
        return cls(load_redis_settings(), lease_seconds=environment.settings.lease_seconds)

    async def start(self) -> None:
        """Connect, failing at once if Redis cannot be reached. The doorbell subscription
        waits for the first `receive`, so an app that only enqueues is not sent a doorbell
        for every notice it publishes."""
        from polyqueue_redis.connection import RedisConnection  # noqa: PLC0415  (lazy SDK import)

        connection = RedisConnection(self.settings, self.keys)
        await connection.open()
        self._connection, self._closed = connection, False

    def _subscribe(self, connection: RedisConnection) -> None:
        """Start the doorbell subscriber once. It rings every queue once subscribed, so a
        receive that looked before the subscription was up looks again."""
        if self._listener is None:
            self._listener = asyncio.get_running_loop().create_task(
                connection.listen(self._doorbell.ring, self._doorbell.ring_all),
                name="polyqueue-redis-doorbell",
            )

    async def close(self) -> None:
        """Wake waiting receivers, stop the subscriber, close the pool. Idempotent."""
        self._closed = True
        self._doorbell.ring_all()
        listener, self._listener = self._listener, None
        if listener is not None:
            await _cancel(listener)
        connection, self._connection = self._connection, None
        if connection is not None:
            await connection.close()

    async def publish(self, messages: Sequence[Message]) -> None:
        """Store the messages: one Lua call per queue and chunk, one pipeline for all."""
        if messages:
            await self._require().publish(list(self._chunks(messages)))
            for queue in {message.queue for message in messages}:
                self._doorbell.ring(queue)

    def _chunks(self, messages: Sequence[Message]) -> Iterator[tuple[str, list[Entry]]]:
        by_queue: defaultdict[str, list[Entry]] = defaultdict(list)
        for message in messages:
            by_queue[message.queue].append((message.priority, message.delay, message.body))
        size = self.settings.publish_chunk_size
        for queue, entries in by_queue.items():
            for start in range(0, len(entries), size):
                yield queue, entries[start : start + size]

    async def receive(
        self, queues: Sequence[str], *, max_messages: int, wait_seconds: float
    ) -> list[Delivery]:
        """Lease ready messages; else wait for a doorbell, a lease or delay running out."""
        self._subscribe(self._require())  # a closed broker raises, not returns at once
        deadline = time.monotonic() + wait_seconds
        waiter = self._wakeup.waiter()
        while not self._closed and queues and max_messages > 0 and not waiter.interrupted:
            seen = self._doorbell.generation(queues)
            received = await self._receive_once(queues, max_messages)
            if received is None or received.messages:
                return self._deliveries(received)
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return []
            if received.dropped:
                continue  # garbage was dropped: what was behind it may be ready now
            due = received.next_due_in
            timeout = remaining if due is None else min(due, remaining)
            await waiter.run_unless_interrupted(self._doorbell.wait(queues, seen, timeout))
        return []

    async def _receive_once(self, queues: Sequence[str], max_messages: int) -> Received | None:
        """One receive round trip; None if the broker was closed meanwhile."""
        try:
            return await self._require().receive(queues, max_messages, self.lease_seconds)
        except BrokerError:
            if self._closed:
                return None
            raise

    def interrupt(self) -> None:
        """Make receives waiting for a doorbell return `[]` at once (a worker stopping)."""
        self._wakeup.interrupt()

    def _deliveries(self, received: Received | None) -> list[Delivery]:
        if received is None:
            return []
        return [
            Delivery(self, m.queue, m.body, (m.message_id, m.receipt)) for m in received.messages
        ]

    async def ack(self, deliveries: Sequence[Delivery]) -> None:
        """Remove the messages whose receipts are current; stale ones are left alone."""
        await self._require().ack(_by_queue(deliveries))

    async def nack(self, deliveries: Sequence[Delivery], delay: float = 0.0) -> None:
        """Make the messages available again after `delay` seconds."""
        await self._require().nack(_by_queue(deliveries), delay)
        for queue in {delivery.queue for delivery in deliveries}:
            self._doorbell.ring(queue)

    async def extend(self, deliveries: Sequence[Delivery], seconds: float) -> None:
        """Move the lease deadlines to `seconds` from now."""
        await self._require().extend(_by_queue(deliveries), seconds)

    def _require(self) -> RedisConnection:
        if self._connection is None or self._closed:
            raise BrokerUnavailableError("the redis broker is not started", broker=self.name)
        return self._connection


async def _cancel(task: asyncio.Task[None]) -> None:
    """Cancel `task` until it ends: redis-py may swallow a cancel that lands mid-connect."""
    while not task.done():
        task.cancel()
        await asyncio.wait({task}, timeout=0.1)
    with contextlib.suppress(asyncio.CancelledError, Exception):
        task.result()


def _by_queue(deliveries: Sequence[Delivery]) -> dict[str, list[Receipt]]:
    groups: defaultdict[str, list[Receipt]] = defaultdict(list)
    for delivery in deliveries:
        groups[delivery.queue].append(delivery.handle)
    return dict(groups)
