"""The built-in brokers run the broker contract suite unchanged."""

from __future__ import annotations

from collections.abc import AsyncIterator

import asyncpg
import pytest

from polyqueue.broker import Broker, Message
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

    async def inject_raw(self, broker: Broker, queue: str, body: bytes) -> None:
        """A row written into `broker_messages` by hand."""
        assert isinstance(broker, PostgresBroker)
        connection = await asyncpg.connect(broker._url)
        try:
            await connection.execute(
                "INSERT INTO polyqueue.broker_messages (queue, body) VALUES ($1, $2)", queue, body
            )
        finally:
            await connection.close()


class TestInProcessBroker(BrokerContract):
    @pytest.fixture
    async def broker(self) -> AsyncIterator[InProcessBroker]:
        async with InProcessBroker(lease_seconds=LEASE) as broker:
            yield broker

    async def inject_raw(self, broker: Broker, queue: str, body: bytes) -> None:
        """Its storage holds whatever `publish` is given: there is no other way in."""
        await broker.publish([Message(queue, body)])


class TestRecordingBroker(BrokerContract):
    """The recording wrapper is itself a broker and must not change behaviour."""

    @pytest.fixture
    async def broker(self) -> AsyncIterator[RecordingBroker]:
        async with RecordingBroker(InProcessBroker(lease_seconds=LEASE)) as broker:
            yield broker

    async def inject_raw(self, broker: Broker, queue: str, body: bytes) -> None:
        """Straight into the wrapped broker, unrecorded."""
        assert isinstance(broker, RecordingBroker)
        await broker.inner.publish([Message(queue, body)])
