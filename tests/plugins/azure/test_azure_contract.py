"""`AzureBroker` passes the unchanged broker contract against the fake namespace."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from azure_fake import FakeNamespace

from conftest import FAKE_CONNECTION_STRING
from polyqueue.broker import Broker
from polyqueue.testing.contract import BrokerContract
from polyqueue_azure import AzureBroker, AzureBrokerSettings
from polyqueue_azure.ops import QUEUE_PROPERTY


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
