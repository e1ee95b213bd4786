"""`AzureBroker` passes the unchanged broker contract against the fake namespace."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from azure_fake import FakeNamespace

from conftest import FAKE_CONNECTION_STRING
from polyqueue.testing.contract import BrokerContract
from polyqueue_azure import AzureBroker, AzureBrokerSettings


class TestAzureBrokerContract(BrokerContract):
    @pytest.fixture
    async def broker(self) -> AsyncIterator[AzureBroker]:
        settings = AzureBrokerSettings(connection_string=FAKE_CONNECTION_STRING)
        namespace = FakeNamespace(lock_duration=1.0)
        async with AzureBroker(settings, lease_seconds=1.0, seam=namespace) as broker:
            yield broker
