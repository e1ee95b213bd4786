"""The broker contract against a real Service Bus namespace or the emulator (opt-in).

Set `POLYQUEUE_TEST_AZURE_CONNECTION_STRING`. The contract makes fresh queue names per
test, so the fixture creates each queue on first use with the administration client
(auto-deleted when idle), then runs the unchanged contract through the production seam.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import os
from collections.abc import AsyncIterator

import pytest
from azure.servicebus import ServiceBusMessage, ServiceBusMessageBatch
from azure.servicebus.aio.management import ServiceBusAdministrationClient
from azure.servicebus.exceptions import MessagingEntityAlreadyExistsError

from polyqueue.broker import Broker
from polyqueue.testing.contract import BrokerContract
from polyqueue_azure import AzureBroker, AzureBrokerSettings
from polyqueue_azure.ops import QUEUE_PROPERTY
from polyqueue_azure.sdk import SdkServiceBus
from polyqueue_azure.seam import Received

VARIABLE = "POLYQUEUE_TEST_AZURE_CONNECTION_STRING"
CONNECTION_STRING = os.environ.get(VARIABLE, "")
LOCK_SECONDS = 5.0  # the shortest lock duration Service Bus allows
MAX_RAW_BODY = 200_000  # under the standard tier's 256 KB message limit, with headers

pytestmark = pytest.mark.skipif(
    not CONNECTION_STRING, reason=f"{VARIABLE} is not set (no Service Bus namespace to test)"
)


class CreatingServiceBus(SdkServiceBus):
    """The production seam, creating each queue it meets (tests only)."""

    def __init__(self, settings: AzureBrokerSettings) -> None:
        super().__init__(settings)
        self._created: set[str] = set()

    async def _ensure(self, entity: str) -> None:
        if entity in self._created:
            return
        async with ServiceBusAdministrationClient.from_connection_string(
            CONNECTION_STRING
        ) as admin:
            with contextlib.suppress(MessagingEntityAlreadyExistsError):
                await admin.create_queue(
                    entity,
                    lock_duration=dt.timedelta(seconds=LOCK_SECONDS),
                    auto_delete_on_idle=dt.timedelta(minutes=5),
                    max_delivery_count=100,
                )
        self._created.add(entity)

    async def create_batch(self, entity: str) -> ServiceBusMessageBatch:
        await self._ensure(entity)
        return await super().create_batch(entity)

    async def receive(
        self, entity: str, *, max_messages: int, max_wait_time: float, session: bool
    ) -> list[Received]:
        await self._ensure(entity)
        return await super().receive(
            entity, max_messages=max_messages, max_wait_time=max_wait_time, session=session
        )


class TestAzureBrokerLiveContract(BrokerContract):
    @pytest.fixture
    async def broker(self) -> AsyncIterator[AzureBroker]:
        settings = AzureBrokerSettings(connection_string=CONNECTION_STRING, max_wait_time=1.0)
        seam = CreatingServiceBus(settings)
        async with AzureBroker(settings, lease_seconds=LOCK_SECONDS, seam=seam) as broker:
            yield broker

    async def inject_raw(self, broker: Broker, queue: str, body: bytes) -> None:
        """Sent with the SDK, not `publish` (a body over the size limit is cut short)."""
        assert isinstance(broker, AzureBroker)
        seam = broker._seam
        assert isinstance(seam, CreatingServiceBus)
        entity = broker.settings.entity(queue)
        batch = await seam.create_batch(entity)
        properties = {QUEUE_PROPERTY: queue, "foreign": "yes"}
        batch.add_message(ServiceBusMessage(body[:MAX_RAW_BODY], application_properties=properties))
        await seam.send_batch(entity, batch)
