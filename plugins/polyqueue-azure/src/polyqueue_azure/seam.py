"""`ServiceBusSeam`: the few Service Bus calls the broker makes, and how one is chosen."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    import datetime as dt
    from collections.abc import Sequence

    from azure.servicebus import ServiceBusMessage, ServiceBusMessageBatch
    from azure.servicebus import ServiceBusReceivedMessage as ReceivedMessage

    from polyqueue_azure.settings import AzureBrokerSettings

__all__ = ["Received", "SeamFactory", "ServiceBusSeam", "make_seam", "set_seam_factory"]


@dataclass(frozen=True, slots=True)
class Received:
    """A peek-locked message and the link (receiver) that holds its lock."""

    entity: str
    message: ReceivedMessage
    link: Any
    """Opaque to the broker; the seam settles and renews through it."""


class ServiceBusSeam(Protocol):
    """Service Bus as the broker sees it. Implementations raise the SDK's own exceptions.

    Production: `polyqueue_azure.sdk.SdkServiceBus` (azure.servicebus.aio). Tests: an
    in-memory namespace built on the SDK's message classes.
    """

    async def open(self) -> None:
        """Get ready to send and receive (the SDK connects lazily, on first use)."""

    async def close(self) -> None:
        """Close every sender, receiver and the client. Idempotent."""

    async def create_batch(self, entity: str) -> ServiceBusMessageBatch:
        """An empty batch sized for `entity`'s link (`MessageSizeExceededError` when full)."""

    async def send_batch(self, entity: str, batch: ServiceBusMessageBatch) -> None:
        """Send every message of `batch` to `entity` in one call."""

    async def schedule(
        self, entity: str, messages: Sequence[ServiceBusMessage], at: dt.datetime
    ) -> None:
        """Enqueue `messages` on `entity` at `at` (scheduled messages)."""

    async def receive(
        self, entity: str, *, max_messages: int, max_wait_time: float, session: bool
    ) -> list[Received]:
        """Peek-lock up to `max_messages`, waiting up to `max_wait_time` seconds for the first.

        With `session`, the messages come from one session the seam locked for them.
        """

    async def complete(self, received: Received) -> None:
        """Remove the message for good (`MessageLockLostError` if its lock is gone)."""

    async def abandon(self, received: Received) -> None:
        """Release the lock now; the message is delivered again, its delivery count raised."""

    async def dead_letter(self, received: Received, reason: str, description: str) -> None:
        """Move the message to the queue's dead-letter sub-queue with `reason`."""

    async def renew(self, received: Received) -> dt.datetime:
        """Renew the message's lock (the session's, on a session queue); the new expiry, UTC."""


SeamFactory = Callable[["AzureBrokerSettings"], ServiceBusSeam]

_factory: SeamFactory | None = None


def set_seam_factory(factory: SeamFactory | None) -> SeamFactory | None:
    """TEST SEAM, not a user feature: make brokers built from the environment use `factory`.

    Returns the previous factory so a test can restore it; `None` restores the SDK.
    """
    global _factory  # one process-wide switch, for test suites
    previous, _factory = _factory, factory
    return previous


def make_seam(settings: AzureBrokerSettings) -> ServiceBusSeam:
    """The seam for `settings`: the test factory if one is set, else azure.servicebus.aio."""
    if _factory is not None:
        return _factory(settings)
    from polyqueue_azure.sdk import SdkServiceBus  # noqa: PLC0415  (lazy SDK import)

    return SdkServiceBus(settings)
