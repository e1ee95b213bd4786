"""`SdkServiceBus`: the production `ServiceBusSeam`, on azure.servicebus.aio."""

from __future__ import annotations

import contextlib
import importlib
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from azure.servicebus import NEXT_AVAILABLE_SESSION, ServiceBusReceiveMode
from azure.servicebus.aio import ServiceBusClient, ServiceBusReceiver, ServiceBusSender
from azure.servicebus.exceptions import OperationTimeoutError, ServiceBusError

from polyqueue.exceptions import ConfigurationError
from polyqueue_azure.seam import Received
from polyqueue_azure.settings import ENV_PREFIX

if TYPE_CHECKING:
    import datetime as dt
    from collections.abc import Sequence

    from azure.servicebus import ServiceBusMessage, ServiceBusMessageBatch

    from polyqueue_azure.settings import AzureBrokerSettings

__all__ = ["SdkServiceBus"]


@dataclass(slots=True)
class _SessionLink:
    """A receiver locked to one session, closed once its messages are all settled."""

    receiver: ServiceBusReceiver
    unsettled: int = 0


class SdkServiceBus:
    """One client; one sender and one peek-lock receiver per queue, opened on first use.

    On a session queue each receive locks the next available session with a receiver of its
    own, kept until every message it delivered is settled (then the session is released).
    """

    def __init__(self, settings: AzureBrokerSettings) -> None:
        self._settings = settings
        self._client: ServiceBusClient | None = None
        self._credential: Any = None
        self._senders: dict[str, ServiceBusSender] = {}
        self._receivers: dict[str, ServiceBusReceiver] = {}
        self._sessions: set[ServiceBusReceiver] = set()

    async def open(self) -> None:
        """Build the client from the connection string or the namespace and a credential."""
        settings = self._settings
        options: dict[str, Any] = {"retry_total": settings.sdk_retry_total}
        if settings.connection_string is not None:
            secret = settings.connection_string.get_secret_value()
            self._client = ServiceBusClient.from_connection_string(secret, **options)
            return
        self._credential = _default_credential()
        namespace = str(settings.fully_qualified_namespace)
        self._client = ServiceBusClient(namespace, self._credential, **options)

    async def close(self) -> None:
        """Close receivers, senders, the client and the credential. Idempotent."""
        handlers = [*self._receivers.values(), *self._senders.values(), *self._sessions]
        self._receivers, self._senders, self._sessions = {}, {}, set()
        for handler in handlers:
            with contextlib.suppress(ServiceBusError):
                await handler.close()
        client, self._client = self._client, None
        if client is not None:
            await client.close()
        credential, self._credential = self._credential, None
        if credential is not None:
            await credential.close()

    async def create_batch(self, entity: str) -> ServiceBusMessageBatch:
        """An empty batch, sized by the namespace's tier."""
        return await self._sender(entity).create_message_batch()

    async def send_batch(self, entity: str, batch: ServiceBusMessageBatch) -> None:
        """One send call for the whole batch."""
        await self._sender(entity).send_messages(batch)

    async def schedule(
        self, entity: str, messages: Sequence[ServiceBusMessage], at: dt.datetime
    ) -> None:
        """Scheduled messages, enqueued by Service Bus at `at`."""
        await self._sender(entity).schedule_messages(list(messages), at)

    async def receive(
        self, entity: str, *, max_messages: int, max_wait_time: float, session: bool
    ) -> list[Received]:
        """Peek-lock up to `max_messages` from `entity` (from one session, on a session queue)."""
        if session:
            return await self._receive_session(entity, max_messages, max_wait_time)
        receiver = self._receiver(entity)
        messages = await receiver.receive_messages(max_messages, max_wait_time)
        return [Received(entity, message, receiver) for message in messages]

    async def _receive_session(
        self, entity: str, max_messages: int, max_wait_time: float
    ) -> list[Received]:
        receiver = self._require().get_queue_receiver(
            entity,
            session_id=NEXT_AVAILABLE_SESSION,
            receive_mode=ServiceBusReceiveMode.PEEK_LOCK,
            prefetch_count=self._settings.prefetch_count,
            max_wait_time=max_wait_time,
        )
        try:
            messages = await receiver.receive_messages(max_messages, max_wait_time)
        except OperationTimeoutError:  # no session became available in time
            messages = []
        if not messages:
            await receiver.close()
            return []
        link = _SessionLink(receiver, len(messages))
        self._sessions.add(receiver)
        return [Received(entity, message, link) for message in messages]

    async def complete(self, received: Received) -> None:
        """`complete_message` on the receiver that holds the lock."""
        try:
            await _receiver_of(received).complete_message(received.message)
        finally:
            await self._settled(received)

    async def abandon(self, received: Received) -> None:
        """`abandon_message`: delivered again now, its delivery count raised."""
        try:
            await _receiver_of(received).abandon_message(received.message)
        finally:
            await self._settled(received)

    async def dead_letter(self, received: Received, reason: str, description: str) -> None:
        """`dead_letter_message` with a reason and a description."""
        try:
            await _receiver_of(received).dead_letter_message(
                received.message, reason=reason, error_description=description
            )
        finally:
            await self._settled(received)

    async def renew(self, received: Received) -> dt.datetime:
        """`renew_message_lock`, or the session's `renew_lock` on a session queue."""
        if isinstance(received.link, _SessionLink):
            session = received.link.receiver.session
            return await session.renew_lock()
        receiver: ServiceBusReceiver = received.link
        return await receiver.renew_message_lock(received.message)

    async def _settled(self, received: Received) -> None:
        link = received.link
        if isinstance(link, _SessionLink):
            link.unsettled -= 1
            if link.unsettled <= 0 and link.receiver in self._sessions:
                self._sessions.discard(link.receiver)
                with contextlib.suppress(ServiceBusError):
                    await link.receiver.close()

    def _sender(self, entity: str) -> ServiceBusSender:
        if entity not in self._senders:
            self._senders[entity] = self._require().get_queue_sender(entity)
        return self._senders[entity]

    def _receiver(self, entity: str) -> ServiceBusReceiver:
        if entity not in self._receivers:
            self._receivers[entity] = self._require().get_queue_receiver(
                entity,
                receive_mode=ServiceBusReceiveMode.PEEK_LOCK,
                prefetch_count=self._settings.prefetch_count,
            )
        return self._receivers[entity]

    def _require(self) -> ServiceBusClient:
        if self._client is None:
            raise RuntimeError("SdkServiceBus.open() was not called")
        return self._client


def _receiver_of(received: Received) -> ServiceBusReceiver:
    link = received.link
    receiver: ServiceBusReceiver = link.receiver if isinstance(link, _SessionLink) else link
    return receiver


def _default_credential() -> Any:
    try:
        identity = importlib.import_module("azure.identity.aio")  # the optional extra
    except ImportError:
        raise ConfigurationError(
            f"{ENV_PREFIX}FULLY_QUALIFIED_NAMESPACE needs azure-identity:"
            " pip install polyqueue-azure[identity]"
        ) from None
    return identity.DefaultAzureCredential()
