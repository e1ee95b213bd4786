"""The built-in brokers run the broker contract suite unchanged.

The `postgres` broker also runs the server-restart cases, on the session's PostgreSQL really
stopped and started again on its port (`PostgresOutage`; behind a `FaultProxy` in `drop`
mode if the server is external). The in-process broker has no server: it runs none of them.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

import asyncpg
import pytest

from polyqueue.broker import Broker, Message
from polyqueue.brokers.in_process import InProcessBroker
from polyqueue.brokers.postgres import PostgresBroker
from polyqueue.testing.contract import BrokerContract, ServerRestartContract
from polyqueue.testing.recording import RecordingBroker
from polyqueue.testing.servers import PostgresOutage, PostgresServer

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


@pytest.mark.slow
class TestPostgresBrokerServerRestart(ServerRestartContract):
    durable = True  # the rows are in PostgreSQL's tables

    @pytest.fixture
    async def broker(
        self, clean_database: str, polyqueue_postgres: PostgresServer
    ) -> AsyncIterator[PostgresBroker]:
        if not PostgresOutage.possible(polyqueue_postgres):
            pytest.skip("the test server is external and not on loopback: cannot take it down")
        async with PostgresOutage(polyqueue_postgres) as self.outage:
            url = self.outage.url_for(clean_database)
            async with PostgresBroker(url, "polyqueue", lease_seconds=LEASE) as broker:
                yield broker

    def restart_server(self, broker: Broker) -> contextlib.AbstractAsyncContextManager[None]:  # noqa: ARG002
        return self.outage.down()


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
