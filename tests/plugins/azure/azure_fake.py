"""`FakeNamespace`: an in-memory Service Bus behind the broker's seam, on the SDK's own classes.

What it models: peek-lock with a lock duration, lock tokens, lock expiry and renewal,
delivery counts and `max_delivery_count` dead-lettering, abandon, dead-letter with reason,
scheduled messages (`scheduled_enqueue_time_utc` and `schedule`), size-limited
`ServiceBusMessageBatch`es, one-session-per-receive on session queues, and injected SDK
exceptions (`fail`). What it does not: AMQP links and credit, prefetch, entity creation,
partitions, duplicate detection, TTL expiry, session state, or the network.

Received messages are real `ServiceBusReceivedMessage`s, built as the SDK's own tests and
`ServiceBusReceivedMessage.from_bytes` do: a pyamqp `Message` (header, annotations) and
`receiver=None`, with the lock token passed in.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import itertools
import time
import uuid
from collections import Counter, defaultdict
from dataclasses import dataclass
from typing import Any

from azure.servicebus import ServiceBusMessage, ServiceBusMessageBatch, ServiceBusReceivedMessage
from azure.servicebus._pyamqp.message import Header
from azure.servicebus._transport._pyamqp_transport import PyamqpTransport
from azure.servicebus.amqp import AmqpAnnotatedMessage
from azure.servicebus.exceptions import MessageLockLostError

from polyqueue_azure.seam import Received

POLL = 0.01


@dataclass(eq=False)
class Stored:
    """One message in a fake queue."""

    sequence_number: int
    body: bytes
    session_id: str | None
    properties: dict[Any, Any] | None
    visible_at: float
    deliveries: int = 0
    lock_token: uuid.UUID | None = None
    locked_until: float = 0.0
    amqp_body: dict[str, Any] | None = None
    """`AmqpAnnotatedMessage` keyword for a non-data body (`value_body=...`); else `body`."""

    def locked(self, now: float) -> bool:
        return self.lock_token is not None and self.locked_until > now


@dataclass(frozen=True)
class DeadLetter:
    stored: Stored
    reason: str
    description: str


@dataclass(frozen=True)
class FakeLink:
    """What `Received.link` holds: the receiving entity and whether it is a session receiver."""

    entity: str
    session: bool


class FakeNamespace:
    """A `ServiceBusSeam` with queues in memory; every queue exists."""

    def __init__(
        self,
        *,
        lock_duration: float = 1.0,
        max_delivery_count: int = 10,
        max_batch_bytes: int = 256 * 1024,
    ) -> None:
        self.lock_duration = lock_duration
        self.max_delivery_count = max_delivery_count
        self.max_batch_bytes = max_batch_bytes
        self.queues: defaultdict[str, dict[int, Stored]] = defaultdict(dict)
        self.dead_letters: defaultdict[str, list[DeadLetter]] = defaultdict(list)
        self.calls: Counter[str] = Counter()
        self.batches_sent: list[int] = []
        self.delivered = 0
        self.opened = self.closed = 0
        self._faults: defaultdict[str, list[BaseException]] = defaultdict(list)
        self._sequence = itertools.count(1)

    # -- test controls --------------------------------------------------------------------

    def fail(self, operation: str, *errors: BaseException) -> None:
        """The next calls of `operation` raise `errors`, one each."""
        self._faults[operation].extend(errors)

    def expire_locks(self) -> int:
        """Every held lock runs out now (what a long GC pause or a lost link looks like)."""
        held = [s for q in self.queues.values() for s in q.values() if s.lock_token]
        for stored in held:
            stored.locked_until = 0.0
        return len(held)

    def inject(
        self,
        entity: str,
        body: bytes = b"",
        *,
        properties: dict[Any, Any] | None = None,
        amqp_body: dict[str, Any] | None = None,
    ) -> Stored:
        """Store a message as it arrives from any AMQP producer, ready now: properties kept
        raw (bytes that are not UTF-8 included), a value or sequence body if asked."""
        number = next(self._sequence)
        stored = Stored(number, body, None, properties, time.monotonic(), amqp_body=amqp_body)
        self.queues[entity][number] = stored
        return stored

    def messages(self, entity: str) -> list[Stored]:
        return sorted(self.queues[entity].values(), key=lambda s: s.sequence_number)

    def _call(self, operation: str) -> None:
        self.calls[operation] += 1
        if self._faults[operation]:
            raise self._faults[operation].pop(0)

    # -- the seam -------------------------------------------------------------------------

    async def open(self) -> None:
        self.opened += 1

    async def close(self) -> None:
        self.closed += 1

    async def create_batch(self, entity: str) -> ServiceBusMessageBatch:  # noqa: ARG002
        self._call("create_batch")
        return ServiceBusMessageBatch(max_size_in_bytes=self.max_batch_bytes)

    async def send_batch(self, entity: str, batch: ServiceBusMessageBatch) -> None:
        self._call("send")
        self.batches_sent.append(len(batch))
        for message in batch._messages:
            self._store(entity, message, message.scheduled_enqueue_time_utc)

    async def schedule(
        self, entity: str, messages: list[ServiceBusMessage], at: dt.datetime
    ) -> None:
        self._call("schedule")
        for message in messages:
            self._store(entity, message, at)

    async def receive(
        self, entity: str, *, max_messages: int, max_wait_time: float, session: bool
    ) -> list[Received]:
        self._call("receive")
        deadline = time.monotonic() + max_wait_time
        while True:
            ready = self._ready(entity, session, max_messages)
            if ready or time.monotonic() >= deadline:
                link = FakeLink(entity, session)
                return [Received(entity, self._lock(stored), link) for stored in ready]
            await asyncio.sleep(POLL)

    async def complete(self, received: Received) -> None:
        self._call("complete")
        stored = self._owned(received)
        del self.queues[received.entity][stored.sequence_number]

    async def abandon(self, received: Received) -> None:
        self._call("abandon")
        stored = self._owned(received)
        stored.lock_token = None

    async def dead_letter(self, received: Received, reason: str, description: str) -> None:
        self._call("dead_letter")
        stored = self._owned(received)
        del self.queues[received.entity][stored.sequence_number]
        self.dead_letters[received.entity].append(DeadLetter(stored, reason, description))

    async def renew(self, received: Received) -> dt.datetime:
        self._call("renew")
        stored = self._owned(received)
        stored.locked_until = time.monotonic() + self.lock_duration
        return _utc(stored.locked_until)

    # -- internals ------------------------------------------------------------------------

    def _store(self, entity: str, message: ServiceBusMessage, at: dt.datetime | None) -> None:
        delay = 0.0 if at is None else (at - dt.datetime.now(dt.UTC)).total_seconds()
        body = b"".join(message.body) if not isinstance(message.body, bytes) else message.body
        number = next(self._sequence)
        self.queues[entity][number] = Stored(
            number,
            body,
            message.session_id,
            message.application_properties,
            time.monotonic() + max(delay, 0.0),
        )

    def _ready(self, entity: str, session: bool, limit: int) -> list[Stored]:
        now = time.monotonic()
        held = {s.session_id for s in self.queues[entity].values() if s.locked(now)}
        ready: list[Stored] = []
        for stored in self.messages(entity):
            if len(ready) >= limit or stored.visible_at > now or stored.locked(now):
                continue
            if stored.deliveries >= self.max_delivery_count:
                self._expire_to_dead_letter(entity, stored)
                continue
            if session and (stored.session_id in held or _other_session(ready, stored)):
                continue
            ready.append(stored)
        return ready

    def _expire_to_dead_letter(self, entity: str, stored: Stored) -> None:
        del self.queues[entity][stored.sequence_number]
        reason = DeadLetter(stored, "MaxDeliveryCountExceeded", "delivered too often")
        self.dead_letters[entity].append(reason)

    def _lock(self, stored: Stored) -> ServiceBusReceivedMessage:
        stored.deliveries += 1
        self.delivered += 1
        stored.lock_token = uuid.uuid4()
        stored.locked_until = time.monotonic() + self.lock_duration
        return received_message(stored)

    def _owned(self, received: Received) -> Stored:
        number = received.message.sequence_number
        stored = self.queues[received.entity].get(number or 0)
        token = received.message.lock_token
        if stored is None or stored.lock_token != token or not stored.locked(time.monotonic()):
            raise MessageLockLostError(message=f"the lock on message {number} is gone")
        return stored


def received_message(stored: Stored) -> ServiceBusReceivedMessage:
    """A real `ServiceBusReceivedMessage` for `stored`, as the SDK's own tests build one.

    The application properties are the stored ones as they are, as the wire delivers them
    (the SDK's outgoing conversion would refuse bytes that are not UTF-8).
    """
    annotated = (
        AmqpAnnotatedMessage(**stored.amqp_body)
        if stored.amqp_body is not None
        else ServiceBusMessage(
            stored.body, session_id=stored.session_id, message_id=str(stored.sequence_number)
        ).raw_amqp_message
    )
    amqp = PyamqpTransport.to_outgoing_amqp_message(annotated)
    amqp = amqp._replace(
        application_properties=stored.properties,
        header=Header(delivery_count=stored.deliveries - 1),  # AMQP: prior attempts
        message_annotations={
            b"x-opt-sequence-number": stored.sequence_number,
            b"x-opt-locked-until": int(_utc(stored.locked_until).timestamp() * 1000),
        },
    )
    return ServiceBusReceivedMessage(amqp, receiver=None, lock_token=stored.lock_token)


def _other_session(ready: list[Stored], stored: Stored) -> bool:
    return bool(ready) and ready[0].session_id != stored.session_id


def _utc(monotonic: float) -> dt.datetime:
    return dt.datetime.now(dt.UTC) + dt.timedelta(seconds=monotonic - time.monotonic())
