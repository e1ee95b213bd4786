"""`AzureBroker`: notices in Service Bus queues, owned by peek-lock, kept by lock renewal."""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import time
from collections import defaultdict
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any, ClassVar, Self

from polyqueue.broker import Broker, BrokerEnvironment, Capabilities, Delivery, Message
from polyqueue.exceptions import BrokerError, BrokerUnavailableError
from polyqueue.wakeup import Wakeup
from polyqueue_azure.seam import make_seam
from polyqueue_azure.settings import (
    ENV_PREFIX,
    MAX_ENTITY_NAME,
    AzureBrokerSettings,
    load_azure_settings,
    valid_entity,
)

if TYPE_CHECKING:
    from collections.abc import Awaitable, Iterable, Sequence

    from polyqueue.wakeup import Waiter
    from polyqueue_azure.ops import Operations
    from polyqueue_azure.seam import Received, ServiceBusSeam

__all__ = ["AzureBroker", "Lock"]

log = logging.getLogger("polyqueue_azure")

MIN_WAIT = 0.05
"""Shortest receive call when several queues share a receive's wait."""
RENEW_AT = 0.5
"""The renew loop renews once this fraction of the remaining lock time has passed."""


@dataclass(eq=False, slots=True)
class Lock:
    """`Delivery.handle`: a peek-locked message, its lock expiry, and what keeps it alive."""

    received: Received
    locked_until: dt.datetime | None
    keep_until: float = 0.0
    """`time.monotonic()` until which `extend` asked to own the message."""
    renewer: asyncio.Task[None] | None = None
    lost: bool = False

    def __repr__(self) -> str:
        message = self.received.message
        return f"Lock({self.received.entity}#{message.sequence_number}, {message.lock_token})"


class AzureBroker(Broker):
    """One Service Bus queue per Polyqueue queue, read in peek-lock mode.

    ack = complete; nack(0) = abandon; nack(delay) = schedule a copy `delay` ahead, then
    complete; extend = renew the lock now and keep renewing it until the asked time.
    """

    name: ClassVar[str] = "azure"
    capabilities: Capabilities = Capabilities(
        max_batch=100, native_delay=True, max_delay_seconds=float("inf"), priority=False
    )

    def __init__(
        self,
        settings: AzureBrokerSettings | None = None,
        *,
        lease_seconds: float = 30.0,
        seam: ServiceBusSeam | None = None,
    ) -> None:
        super().__init__(lease_seconds=lease_seconds)
        self.settings = settings if settings is not None else load_azure_settings()
        self.capabilities = replace(self.capabilities, max_batch=self.settings.receive_batch)
        self._seam = seam
        self._ops: Operations | None = None
        self._closed = asyncio.Event()
        self._receiving: set[asyncio.Task[list[Received]]] = set()
        self._parked: defaultdict[str, list[asyncio.Task[list[Received]]]] = defaultdict(list)
        """Per queue, receive calls an `interrupt()` left running: the next receive takes
        what they bring."""
        self._held: defaultdict[str, list[Received]] = defaultdict(list)
        """Per queue, messages received beyond what the receive that took them asked for."""
        self._wakeup = Wakeup()
        self._renewing: set[Lock] = set()
        self._rotation = 0

    @classmethod
    def from_environment(cls, environment: BrokerEnvironment) -> Self:
        """Read `POLYQUEUE_AZURE_*`; the lease comes from `POLYQUEUE_LEASE_SECONDS`."""
        return cls(load_azure_settings(), lease_seconds=environment.settings.lease_seconds)

    # -- lifecycle ----------------------------------------------------------------------------

    async def start(self) -> None:
        """Open the Service Bus client (the SDK connects on first use)."""
        from polyqueue_azure.ops import Operations  # noqa: PLC0415  (lazy SDK import)

        seam = self._seam if self._seam is not None else make_seam(self.settings)
        await seam.open()
        self._ops = Operations(seam, self.settings, self.name)
        self._closed.clear()

    async def close(self) -> None:
        """Stop receives and renew loops, then close the client. Idempotent."""
        self._closed.set()
        tasks = [*self._receiving, *(lock.renewer for lock in self._renewing if lock.renewer)]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self._renewing.clear()
        self._parked.clear()
        self._held.clear()  # their locks run out: Service Bus delivers them again
        ops, self._ops = self._ops, None
        if ops is not None:
            await ops.seam.close()

    def _require(self) -> Operations:
        if self._ops is None or self._closed.is_set():
            raise BrokerUnavailableError("the azure broker is not started", broker=self.name)
        return self._ops

    # -- publishing ---------------------------------------------------------------------------

    async def prepare_queue(self, queue: str) -> None:
        """Refuse a queue whose Service Bus queue name Service Bus would refuse (`BrokerError`),
        before its first job is inserted. No call to Service Bus: an enqueue still succeeds
        while it is unreachable."""
        entity = self.settings.entity(queue)
        if not valid_entity(entity):
            raise BrokerError(
                f"queue {queue!r} gives Service Bus queue name {entity!r}: Service Bus allows"
                " letters, digits, '.', '_', '-' and '/', starting and ending with a letter or"
                f" digit, at most {MAX_ENTITY_NAME} characters (with {ENV_PREFIX}QUEUE_PREFIX)",
                broker=self.name,
            )

    async def publish(self, messages: Sequence[Message]) -> None:
        """Send in `ServiceBusMessageBatch`es; a delay becomes `scheduled_enqueue_time_utc`."""
        if messages:
            await self._require().publish(messages)

    # -- receiving ----------------------------------------------------------------------------

    async def receive(
        self, queues: Sequence[str], *, max_messages: int, wait_seconds: float
    ) -> list[Delivery]:
        """Peek-lock messages, visiting `queues` in turn until some arrive or time is up."""
        ops = self._require()
        deadline = time.monotonic() + wait_seconds
        waiter = self._wakeup.waiter()
        while queues and max_messages > 0 and not self._closed.is_set():
            for queue in self._rotated(queues):
                wait = self._wait_slice(deadline, len(queues))
                received = await self._receive_one(ops, queue, max_messages, wait, waiter)
                if received or self._closed.is_set() or waiter.interrupted:
                    return [self._delivery(queue, item) for item in received]
            if time.monotonic() >= deadline:
                break
        return []

    def interrupt(self) -> None:
        """Receives waiting now return `[]`; their Service Bus calls go on, and the next
        receive of each queue takes what they bring (nothing waits for a lock to run out)."""
        self._wakeup.interrupt()

    def _rotated(self, queues: Sequence[str]) -> list[str]:
        """`queues`, starting one further each call, so no queue starves the others."""
        self._rotation = (self._rotation + 1) % len(queues)
        return [*queues[self._rotation :], *queues[: self._rotation]]

    def _wait_slice(self, deadline: float, queues: int) -> float:
        remaining = deadline - time.monotonic()
        return min(max(remaining / queues, MIN_WAIT), self.settings.max_wait_time)

    async def _receive_one(
        self, ops: Operations, queue: str, max_messages: int, wait: float, waiter: Waiter
    ) -> list[Received]:
        """One receive call (or what an interrupted one brought); `close()` cancels it, and
        then it returns nothing; `interrupt()` leaves it running, and then returns nothing."""
        if held := self._take_held(queue, max_messages):
            return held
        parked = self._parked[queue]
        task = parked.pop(0) if parked else self._start_receive(ops, queue, max_messages, wait)
        try:
            if not await waiter.run_unless_interrupted(task):  # cancelling this cancels the call
                parked.append(task)
                return []
            received = task.result()
        except asyncio.CancelledError:
            if self._closed.is_set() and not _cancelling():
                return []
            raise
        except BrokerError:
            if self._closed.is_set():
                return []
            raise
        if len(received) > max_messages:
            self._held[queue] += received[max_messages:]
        return received[:max_messages]

    def _start_receive(
        self, ops: Operations, queue: str, max_messages: int, wait: float
    ) -> asyncio.Task[list[Received]]:
        task = asyncio.create_task(ops.receive(queue, max_messages, wait))
        self._receiving.add(task)
        task.add_done_callback(self._receiving.discard)
        return task

    def _take_held(self, queue: str, max_messages: int) -> list[Received]:
        """Up to `max_messages` held messages of `queue` whose lock has not run out (the
        others Service Bus delivers again)."""
        held = [r for r in self._held.pop(queue, []) if _still_locked(r)]
        if len(held) > max_messages:
            self._held[queue] = held[max_messages:]
        return held[:max_messages]

    def _delivery(self, queue: str, received: Received) -> Delivery:
        from polyqueue_azure.ops import body_of  # noqa: PLC0415  (lazy SDK import)

        lock = Lock(received, received.message.locked_until_utc)
        return Delivery(self, queue, body_of(received.message), lock)

    # -- settling -----------------------------------------------------------------------------

    async def ack(self, deliveries: Sequence[Delivery]) -> None:
        """Complete the messages; a lock already lost is skipped (the redelivery is dropped)."""
        ops = self._require()
        locks = self._stop_renewing(deliveries)
        await _all(ops.complete(lock.received) for lock in locks)

    async def nack(self, deliveries: Sequence[Delivery], delay: float = 0.0) -> None:
        """`delay` 0: abandon. Else schedule a copy `delay` ahead, then complete the original."""
        ops = self._require()
        locks = self._stop_renewing(deliveries)
        if delay <= 0:
            await _all(ops.abandon(lock.received) for lock in locks)
            return
        by_queue: defaultdict[tuple[str, str], list[Received]] = defaultdict(list)
        for delivery, lock in zip(deliveries, locks, strict=True):
            by_queue[lock.received.entity, delivery.queue].append(lock.received)
        for (entity, queue), received in by_queue.items():
            await ops.schedule_copies(entity, queue, received, delay)
        await _all(ops.complete(lock.received) for lock in locks)

    def _stop_renewing(self, deliveries: Sequence[Delivery]) -> list[Lock]:
        locks = [_lock_of(delivery) for delivery in deliveries]
        for lock in locks:
            if lock.renewer is not None:
                lock.renewer.cancel()
            self._renewing.discard(lock)
        return locks

    # -- keeping locks ------------------------------------------------------------------------

    async def extend(self, deliveries: Sequence[Delivery], seconds: float) -> None:
        """Renew each lock now, and keep renewing it until `seconds` from now."""
        ops = self._require()
        keep_until = time.monotonic() + seconds
        await _all(self._extend(ops, _lock_of(d), keep_until) for d in deliveries)

    async def _extend(self, ops: Operations, lock: Lock, keep_until: float) -> None:
        lock.keep_until = keep_until
        if lock.lost or not await self._renew(ops, lock):
            return
        if lock.renewer is None or lock.renewer.done():
            lock.renewer = asyncio.create_task(self._keep(ops, lock))
            self._renewing.add(lock)

    async def _renew(self, ops: Operations, lock: Lock) -> bool:
        locked_until = await ops.renew(lock.received)
        if locked_until is None:
            lock.lost = True
            log.warning("lock lost on %r; the job's claim in PostgreSQL still fences it", lock)
            return False
        lock.locked_until = locked_until
        return True

    async def _keep(self, ops: Operations, lock: Lock) -> None:
        """Renew before the lock runs out, until `keep_until` (pushed on by each `extend`)."""
        try:
            while (left := _seconds_until(lock.locked_until)) + time.monotonic() < lock.keep_until:
                await asyncio.sleep(max(left * RENEW_AT, MIN_WAIT))
                if time.monotonic() >= lock.keep_until:
                    break
                try:
                    if not await self._renew(ops, lock):
                        break
                except BrokerError as exc:
                    log.warning("renewing %r failed, will try again: %s", lock, exc)
        finally:
            self._renewing.discard(lock)


def _lock_of(delivery: Delivery) -> Lock:
    handle: Any = delivery.handle
    if not isinstance(handle, Lock):
        raise TypeError(f"not a delivery of the azure broker: {delivery!r}")
    return handle


def _still_locked(received: Received) -> bool:
    locked_until = received.message.locked_until_utc
    return locked_until is None or _seconds_until(locked_until) > 0  # None: a session's lock


def _seconds_until(moment: dt.datetime | None) -> float:
    if moment is None:
        return 0.0
    return (moment - dt.datetime.now(dt.UTC)).total_seconds()


def _cancelling() -> bool:
    task = asyncio.current_task()
    return task is not None and task.cancelling() > 0


async def _all(operations: Iterable[Awaitable[object]]) -> None:
    """Run `operations` together; once all are done, raise the first error if any failed."""
    results = await asyncio.gather(*operations, return_exceptions=True)
    for result in results:
        if isinstance(result, BaseException):
            raise result
