"""`Operations`: the broker's Service Bus work: batches, retries, settling, error translation."""

from __future__ import annotations

import datetime as dt
import logging
from collections import defaultdict
from typing import TYPE_CHECKING, Any, ParamSpec, TypeVar

from azure.servicebus import ServiceBusMessage
from azure.servicebus.amqp import AmqpMessageBodyType
from azure.servicebus.exceptions import (
    MessageAlreadySettled,
    MessageLockLostError,
    MessageNotFoundError,
    MessageSizeExceededError,
    MessagingEntityNotFoundError,
    OperationTimeoutError,
    ServiceBusCommunicationError,
    ServiceBusConnectionError,
    ServiceBusError,
    ServiceBusServerBusyError,
    SessionLockLostError,
)

from polyqueue.backoff import Backoff
from polyqueue.exceptions import BrokerError, BrokerUnavailableError
from polyqueue.notices import InvalidNoticeError, decode_notice

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable, Sequence

    from azure.servicebus import ServiceBusMessageBatch, ServiceBusReceivedMessage

    from polyqueue.broker import Message
    from polyqueue_azure.seam import Received, ServiceBusSeam
    from polyqueue_azure.settings import AzureBrokerSettings

__all__ = ["LOCK_GONE", "NOT_A_NOTICE", "QUEUE_PROPERTY", "TRANSIENT", "Operations", "body_of"]

log = logging.getLogger("polyqueue_azure")

P = ParamSpec("P")
T = TypeVar("T")

TRANSIENT = (
    ServiceBusConnectionError,
    OperationTimeoutError,
    ServiceBusServerBusyError,
    ServiceBusCommunicationError,
)
"""Retried with backoff, then reported as `BrokerUnavailableError`."""
LOCK_GONE = (
    MessageLockLostError,
    SessionLockLostError,
    MessageAlreadySettled,
    MessageNotFoundError,
)
"""The message is no longer ours to settle or renew: it was (or will be) delivered again."""
NOT_A_NOTICE = "not a polyqueue notice"
"""Dead-letter reason of messages no Polyqueue broker sent."""
QUEUE_PROPERTY = "polyqueue_queue"
"""Application property naming the Polyqueue queue of a message."""


class Operations:
    """Every Service Bus call of the broker goes through `_call`: retried, then translated."""

    def __init__(self, seam: ServiceBusSeam, settings: AzureBrokerSettings, broker: str) -> None:
        self.seam = seam
        self._settings = settings
        self._broker = broker

    # -- sending ------------------------------------------------------------------------------

    async def publish(self, messages: Sequence[Message]) -> None:
        """Send `messages` in as few `ServiceBusMessageBatch`es as their sizes allow."""
        for entity, outgoing in self._outgoing(messages).items():
            for batch in await self._batches(entity, outgoing):
                await self._call("send", self.seam.send_batch, entity, batch)

    def _outgoing(self, messages: Sequence[Message]) -> dict[str, list[ServiceBusMessage]]:
        by_entity: defaultdict[str, list[ServiceBusMessage]] = defaultdict(list)
        for message in messages:
            by_entity[self._settings.entity(message.queue)].append(self._message(message))
        return by_entity

    def _message(self, message: Message) -> ServiceBusMessage:
        outgoing = ServiceBusMessage(
            message.body,
            content_type="application/json",
            application_properties={QUEUE_PROPERTY: message.queue},
        )
        if message.queue in self._settings.sessions:
            outgoing.session_id = self._session_of(message.body)
        if message.delay > 0:
            outgoing.scheduled_enqueue_time_utc = _utc_in(message.delay)
        return outgoing

    def _session_of(self, body: bytes) -> str:
        """The session id of a notice: its job id modulo `session_partitions`."""
        try:
            return str(decode_notice(body) % self._settings.session_partitions)
        except InvalidNoticeError:
            return "0"

    async def _batches(
        self, entity: str, outgoing: list[ServiceBusMessage]
    ) -> list[ServiceBusMessageBatch]:
        """Fill batches in order; sessions never share a batch (partitioned queues refuse it)."""
        batches: list[ServiceBusMessageBatch] = []
        current: ServiceBusMessageBatch | None = None
        session: str | None = None
        for message in sorted(outgoing, key=lambda m: m.session_id or ""):
            if current is None or message.session_id != session or not _fits(current, message):
                current = await self._call("create a batch", self.seam.create_batch, entity)
                session = message.session_id
                batches.append(current)
                self._add(current, message)
        return batches

    def _add(self, batch: ServiceBusMessageBatch, message: ServiceBusMessage) -> None:
        try:
            batch.add_message(message)
        except MessageSizeExceededError as exc:
            raise BrokerError(
                f"a notice is too large for Service Bus: {exc}", broker=self._broker
            ) from exc

    async def schedule_copies(
        self, entity: str, queue: str, received: Sequence[Received], delay: float
    ) -> None:
        """Schedule a copy of each message of `queue` (same body, session and properties)
        `delay` from now."""
        copies = [_copy(r.message, queue) for r in received]
        await self._call("schedule", self.seam.schedule, entity, copies, _utc_in(delay))

    # -- receiving and settling ---------------------------------------------------------------

    async def receive(self, queue: str, max_messages: int, wait: float) -> list[Received]:
        """Peek-lock messages of `queue`; foreign ones are dead-lettered here if so configured."""
        received = await self._call(
            "receive",
            self.seam.receive,
            self._settings.entity(queue),
            max_messages=max_messages,
            max_wait_time=wait,
            session=queue in self._settings.sessions,
        )
        if not self._settings.dead_letter_foreign:
            return received
        kept = []
        for item in received:
            problem = _foreign(item.message)
            if problem is None:
                kept.append(item)
            else:
                await self.dead_letter(item, NOT_A_NOTICE, problem)
        return kept

    async def complete(self, received: Received) -> bool:
        """Complete; False if the lock was already gone (the message comes back, harmlessly)."""
        return await self._settle("complete", self.seam.complete, received)

    async def abandon(self, received: Received) -> bool:
        """Abandon; False if the lock was already gone."""
        return await self._settle("abandon", self.seam.abandon, received)

    async def dead_letter(self, received: Received, reason: str, description: str) -> bool:
        """Dead-letter with `reason`; False if the lock was already gone."""
        log.warning(
            "dead-lettering message %s on %s: %s (%s)",
            received.message.sequence_number,
            received.entity,
            reason,
            description,
        )
        return await self._settle(
            "dead-letter", self.seam.dead_letter, received, reason, description[:4096]
        )

    async def renew(self, received: Received) -> dt.datetime | None:
        """Renew the lock; its new expiry, or None if the lock was already gone."""
        try:
            return await self._call("renew a lock", self.seam.renew, received)
        except LOCK_GONE as exc:
            log.debug("lock of %s lost: %s", received.message.sequence_number, exc)
            return None

    async def _settle(
        self, what: str, settle: Callable[..., Awaitable[None]], *args: object
    ) -> bool:
        try:
            await self._call(what, settle, *args)
        except LOCK_GONE as exc:
            log.debug("%s skipped, the lock is gone: %s", what, exc)
            return False
        return True

    # -- errors -------------------------------------------------------------------------------

    async def _call(
        self, what: str, operation: Callable[P, Awaitable[T]], *args: P.args, **kwargs: P.kwargs
    ) -> T:
        """Run `operation`, retrying transient errors with backoff; translate the rest."""
        backoff = Backoff(self._settings.retry_backoff, self._settings.retry_backoff_max)
        attempts = self._settings.retry_attempts
        for attempt in range(1, attempts + 1):
            try:
                return await operation(*args, **kwargs)
            except TRANSIENT as exc:
                if attempt == attempts:
                    raise BrokerUnavailableError(
                        f"Service Bus {what} failed {attempts} times: {exc}", broker=self._broker
                    ) from exc
                log.info("Service Bus %s failed (try %d of %d): %s", what, attempt, attempts, exc)
                await backoff.sleep()
            except LOCK_GONE:
                raise
            except MessagingEntityNotFoundError as exc:
                raise BrokerError(
                    f"Service Bus {what}: the queue does not exist (create it first): {exc}",
                    broker=self._broker,
                ) from exc
            except ServiceBusError as exc:
                raise BrokerError(f"Service Bus {what} failed: {exc}", broker=self._broker) from exc
        raise AssertionError("unreachable")  # pragma: no cover


def body_of(message: ServiceBusReceivedMessage) -> bytes:
    """The bytes of a data-body message; `b""` for value and sequence bodies."""
    if message.body_type != AmqpMessageBodyType.DATA:
        return b""
    body = message.body
    return body if isinstance(body, bytes) else b"".join(body)


def _foreign(message: ServiceBusReceivedMessage) -> str | None:
    """Why `message` was not sent by a Polyqueue broker, or None if it was.

    Bodies stay opaque: a Polyqueue message is a data body with the `polyqueue_queue`
    property; whether the body decodes as a notice is the core's business.
    """
    if message.body_type != AmqpMessageBodyType.DATA:
        return f"an AMQP {message.body_type.value} body, not data"
    properties = message.application_properties or {}
    if QUEUE_PROPERTY not in properties and QUEUE_PROPERTY.encode() not in properties:
        return f"no {QUEUE_PROPERTY!r} application property"
    return None


def _fits(batch: ServiceBusMessageBatch, message: ServiceBusMessage) -> bool:
    try:
        batch.add_message(message)
    except MessageSizeExceededError:
        return False
    return True


def _copy(message: ServiceBusReceivedMessage, queue: str) -> ServiceBusMessage:
    """A message like `message`, of `queue`. Properties that are not UTF-8 (which the SDK
    cannot send) are left off with a warning; `polyqueue_queue` is always `queue`."""
    properties: dict[str | bytes, Any] = {}
    for key, value in (message.application_properties or {}).items():
        try:
            properties[_text(key)] = _text(value)
        except UnicodeDecodeError:
            log.warning(
                "message %s: application property %r=%r is not UTF-8, left off its copy",
                message.sequence_number,
                key,
                value,
            )
    properties[QUEUE_PROPERTY] = queue
    return ServiceBusMessage(
        body_of(message),
        content_type="application/json",
        application_properties=properties,
        session_id=message.session_id,
    )


def _text(value: Any) -> Any:
    """`value`, decoded if it is bytes (`UnicodeDecodeError` if they are not UTF-8)."""
    return value.decode() if isinstance(value, bytes) else value


def _utc_in(seconds: float) -> dt.datetime:
    return dt.datetime.now(dt.UTC) + dt.timedelta(seconds=seconds)
