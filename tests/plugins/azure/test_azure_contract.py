"""`AzureBroker` passes the unchanged broker contract against the fake namespace.

The server-restart cases run against `UnreachableNamespace`, the fake taken down: there is no
Service Bus server in these tests to stop, so the double emulates the outage (see its
docstring). `test_azure_live.py` runs the plain contract against a real namespace.
"""

from __future__ import annotations

import contextlib
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest
from azure.servicebus.exceptions import ServiceBusConnectionError
from azure_fake import FakeNamespace

from conftest import FAKE_CONNECTION_STRING
from polyqueue.broker import Broker
from polyqueue.testing.contract import BrokerContract, ServerRestartContract
from polyqueue_azure import AzureBroker, AzureBrokerSettings
from polyqueue_azure.ops import QUEUE_PROPERTY
from polyqueue_azure.seam import Received

SLICE = 0.05
"""How often a waiting receive of `UnreachableNamespace` checks that it is still reachable."""


class TestAzureBrokerContract(BrokerContract):
    @pytest.fixture
    async def broker(self) -> AsyncIterator[AzureBroker]:
        settings = AzureBrokerSettings(connection_string=FAKE_CONNECTION_STRING)
        namespace = FakeNamespace(lock_duration=1.0)
        async with AzureBroker(settings, lease_seconds=1.0, seam=namespace) as broker:
            yield broker

    async def inject_raw(self, broker: Broker, queue: str, body: bytes) -> None:
        """Straight into the namespace, as another AMQP producer sends it: the queue property
        as raw bytes, and one more that is not UTF-8."""
        assert isinstance(broker, AzureBroker)
        namespace = broker._seam
        assert isinstance(namespace, FakeNamespace)
        properties = {QUEUE_PROPERTY.encode(): queue.encode(), b"\xff\xfe": b"\x00\xff"}
        namespace.inject(broker.settings.entity(queue), body, properties=properties)


class UnreachableNamespace(FakeNamespace):
    """The fake namespace, unreachable while `down`: every call raises the SDK's
    `ServiceBusConnectionError`, and so does a receive that was waiting when it went down (its
    link detached). Messages are kept, as Service Bus keeps them; locks taken before the
    outage are lost with their links: their tokens no longer settle, and the messages are
    delivered again once the lock duration has passed."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.down = False

    @contextlib.asynccontextmanager
    async def outage(self) -> AsyncIterator[None]:
        self.down = True
        for queue in self.queues.values():
            for stored in queue.values():
                if stored.lock_token is not None:
                    stored.lock_token = uuid.uuid4()  # nobody holds this one
        try:
            yield
        finally:
            self.down = False

    def _call(self, operation: str) -> None:
        super()._call(operation)
        if self.down:
            raise ServiceBusConnectionError(message=f"{operation}: the namespace is unreachable")

    async def receive(
        self, entity: str, *, max_messages: int, max_wait_time: float, session: bool
    ) -> list[Received]:
        """The fake's receive in slices, so that an outage ends a waiting one."""
        deadline = time.monotonic() + max_wait_time
        while True:
            wait = min(SLICE, max(deadline - time.monotonic(), 0.0))
            got = await super().receive(
                entity, max_messages=max_messages, max_wait_time=wait, session=session
            )
            if got or time.monotonic() >= deadline:
                return got


@pytest.mark.slow
class TestAzureBrokerServerRestart(ServerRestartContract):
    durable = True  # Service Bus keeps messages through an outage; the double does too

    @pytest.fixture
    async def broker(self) -> AsyncIterator[AzureBroker]:
        settings = AzureBrokerSettings(connection_string=FAKE_CONNECTION_STRING)
        self.namespace = UnreachableNamespace(lock_duration=1.0)
        async with AzureBroker(settings, lease_seconds=1.0, seam=self.namespace) as broker:
            yield broker

    def restart_server(self, broker: Broker) -> contextlib.AbstractAsyncContextManager[None]:  # noqa: ARG002
        return self.namespace.outage()
