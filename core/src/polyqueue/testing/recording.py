"""`RecordingBroker`: wraps any broker and records publish, ack and nack calls."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, ClassVar

from polyqueue.broker import Broker, Delivery, Message

if TYPE_CHECKING:
    from collections.abc import Sequence

__all__ = ["RecordingBroker"]


class RecordingBroker(Broker):
    """Delegates to `inner` and keeps every message published and every delivery settled."""

    name: ClassVar[str] = "recording"

    def __init__(self, inner: Broker) -> None:
        super().__init__(lease_seconds=inner.lease_seconds)
        self.inner = inner
        self.capabilities = inner.capabilities
        self.published: list[Message] = []
        self.acked: list[Delivery] = []
        self.nacked: list[tuple[Delivery, float]] = []

    async def start(self) -> None:
        await self.inner.start()

    async def close(self) -> None:
        await self.inner.close()

    async def publish(self, messages: Sequence[Message]) -> None:
        await self.inner.publish(messages)
        self.published.extend(messages)

    async def publish_in(self, connection: Any, messages: Sequence[Message]) -> None:
        await self.inner.publish_in(connection, messages)
        self.published.extend(messages)

    async def receive(
        self, queues: Sequence[str], *, max_messages: int, wait_seconds: float
    ) -> list[Delivery]:
        deliveries = await self.inner.receive(
            queues, max_messages=max_messages, wait_seconds=wait_seconds
        )
        return [Delivery(self, d.queue, d.body, d) for d in deliveries]

    def interrupt(self) -> None:
        self.inner.interrupt()

    async def ack(self, deliveries: Sequence[Delivery]) -> None:
        await self.inner.ack([d.handle for d in deliveries])
        self.acked.extend(deliveries)

    async def nack(self, deliveries: Sequence[Delivery], delay: float = 0.0) -> None:
        await self.inner.nack([d.handle for d in deliveries], delay)
        self.nacked.extend((d, delay) for d in deliveries)

    async def extend(self, deliveries: Sequence[Delivery], seconds: float) -> None:
        await self.inner.extend([d.handle for d in deliveries], seconds)
