"""The built-in brokers run the broker contract suite unchanged."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from polyqueue.brokers.memory import InProcessBroker
from polyqueue.brokers.postgres import PostgresBroker
from polyqueue.testing.contract import BrokerContract
from polyqueue.testing.recording import RecordingBroker

LEASE = 1.0


class TestPostgresBroker(BrokerContract):
    @pytest.fixture
    async def broker(self, clean_database: str) -> AsyncIterator[PostgresBroker]:
        async with PostgresBroker(clean_database, "polyqueue", lease_seconds=LEASE) as broker:
            yield broker


class TestInProcessBroker(BrokerContract):
    @pytest.fixture
    async def broker(self) -> AsyncIterator[InProcessBroker]:
        async with InProcessBroker(lease_seconds=LEASE) as broker:
            yield broker


class TestRecordingBroker(BrokerContract):
    """The recording wrapper is itself a broker and must not change behaviour."""

    @pytest.fixture
    async def broker(self) -> AsyncIterator[RecordingBroker]:
        async with RecordingBroker(InProcessBroker(lease_seconds=LEASE)) as broker:
            yield broker
