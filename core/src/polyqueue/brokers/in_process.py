"""`InProcessBroker`, selected as `queue_backend = "none"` (no broker server: the doorbell
stays inside this process): in-process asyncio queues, for tests and single-process apps."""

from __future__ import annotations

import heapq
import itertools
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, ClassVar

from polyqueue.broker import Broker, Capabilities, Delivery, Message
from polyqueue.exceptions import BrokerUnavailableError
from polyqueue.wakeup import Wakeup

if TYPE_CHECKING:
    from collections.abc import Sequence

__all__ = ["InProcessBroker"]


@dataclass(slots=True)
class _Stored:
    queue: str
    body: bytes
    priority: int
    receipt: int = 0  # identifies the current delivery; a stale receipt does nothing
    version: int = 0  # identifies the current heap entry; older entries are skipped


@dataclass(slots=True)
class _Queue:
    ready: list[tuple[int, int, int, int]] = field(default_factory=list)
    """(-priority, sequence, message id, version): available now, best first."""
    waiting: list[tuple[float, int, int, int]] = field(default_factory=list)
    """(available_at, sequence, message id, version): delayed or leased."""


class InProcessBroker(Broker):
    """Messages live in this process only, with leases like a networked broker's."""

    name: ClassVar[str] = "none"
    capabilities: Capabilities = Capabilities(
        max_batch=10_000,
        native_delay=True,
        max_delay_seconds=float("inf"),
        priority=True,
        in_process=True,
    )

    def __init__(self, *, lease_seconds: float = 30.0) -> None:
        super().__init__(lease_seconds=lease_seconds)
        self._messages: dict[int, _Stored] = {}
        self._queues: dict[str, _Queue] = {}
        self._ids = itertools.count(1)
        self._sequence = itertools.count()
        self._wakeup = Wakeup()
        self._closed = False

    async def close(self) -> None:
        """Wake receivers so they return; messages stay as long as the object."""
        self._closed = True
        self._wakeup.wake()

    async def publish(self, messages: Sequence[Message]) -> None:
        """Store the messages, available after their delay."""
        now = time.monotonic()
        for message in messages:
            message_id = next(self._ids)
            self._messages[message_id] = _Stored(message.queue, message.body, message.priority)
            self._schedule(message_id, now + max(message.delay, 0.0), now)
        self._wakeup.wake()

    def _schedule(self, message_id: int, available_at: float, now: float) -> None:
        stored = self._messages[message_id]
        stored.version += 1
        queue = self._queues.setdefault(stored.queue, _Queue())
        if available_at <= now:
            entry = (-stored.priority, next(self._sequence), message_id, stored.version)
            heapq.heappush(queue.ready, entry)
        else:
            heapq.heappush(
                queue.waiting, (available_at, next(self._sequence), message_id, stored.version)
            )

    async def receive(
        self, queues: Sequence[str], *, max_messages: int, wait_seconds: float
    ) -> list[Delivery]:
        """Lease ready messages; wait for a publish or the next one to come due."""
        if self._closed:
            raise BrokerUnavailableError("the in-process broker is closed", broker=self.name)
        deadline = time.monotonic() + wait_seconds
        waiter = self._wakeup.waiter()
        while self._is_open() and not waiter.interrupted:
            deliveries = self._take(queues, max_messages)
            now = time.monotonic()
            if deliveries or now >= deadline:
                return deliveries
            await waiter.wait(min(deadline, self._next_due(queues)) - now)
        return []

    def interrupt(self) -> None:
        """Make waiting receives return `[]` now."""
        self._wakeup.interrupt()

    def _is_open(self) -> bool:
        return not self._closed

    def _take(self, queues: Sequence[str], limit: int) -> list[Delivery]:
        now = time.monotonic()
        taken: list[Delivery] = []
        for name in queues:
            queue = self._queues.get(name)
            if queue is None:
                continue
            self._promote_due(queue, now)
            while queue.ready and len(taken) < limit:
                _, _, message_id, version = heapq.heappop(queue.ready)
                stored = self._messages.get(message_id)
                if stored is None or stored.version != version:
                    continue  # acked, or rescheduled since
                stored.receipt += 1
                self._schedule(message_id, now + self.lease_seconds, now)
                taken.append(Delivery(self, name, stored.body, (message_id, stored.receipt)))
        return taken

    def _promote_due(self, queue: _Queue, now: float) -> None:
        while queue.waiting and queue.waiting[0][0] <= now:
            _, sequence, message_id, version = heapq.heappop(queue.waiting)
            stored = self._messages.get(message_id)
            if stored is not None and stored.version == version:
                heapq.heappush(queue.ready, (-stored.priority, sequence, message_id, version))

    def _next_due(self, queues: Sequence[str]) -> float:
        heads = [
            self._queues[q].waiting[0][0]
            for q in queues
            if q in self._queues and self._queues[q].waiting
        ]
        return min(heads, default=float("inf"))

    async def ack(self, deliveries: Sequence[Delivery]) -> None:
        """Forget the messages whose receipt is current."""
        for delivery in deliveries:
            if self._current(delivery) is not None:
                del self._messages[delivery.handle[0]]

    async def nack(self, deliveries: Sequence[Delivery], delay: float = 0.0) -> None:
        """Make the messages available again after `delay`."""
        self._reschedule(deliveries, delay)
        self._wakeup.wake()

    async def extend(self, deliveries: Sequence[Delivery], seconds: float) -> None:
        """Push the lease deadline to `seconds` from now."""
        self._reschedule(deliveries, seconds)

    def _reschedule(self, deliveries: Sequence[Delivery], seconds: float) -> None:
        now = time.monotonic()
        for delivery in deliveries:
            if self._current(delivery) is not None:
                self._schedule(delivery.handle[0], now + max(seconds, 0.0), now)

    def _current(self, delivery: Delivery) -> _Stored | None:
        message_id, receipt = delivery.handle
        stored = self._messages.get(message_id)
        return stored if stored is not None and stored.receipt == receipt else None
