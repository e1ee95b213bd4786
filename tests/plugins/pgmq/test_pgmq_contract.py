"""The `pgmq` broker passes the broker contract suite unchanged, on the SQL-only PGMQ.

It also runs the server-restart cases, on the session's PostgreSQL really stopped and started
again on its port (`PostgresOutage`; behind a `FaultProxy` in `drop` mode if the server is
external).
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

import asyncpg
import pytest
from pgmq_support import queue_table

from polyqueue.broker import Broker
from polyqueue.testing.contract import BrokerContract, ServerRestartContract
from polyqueue.testing.servers import PostgresOutage, PostgresServer
from polyqueue_pgmq import PgmqBroker

LEASE = 1.0


async def insert_row(broker: Broker, queue: str, body: bytes) -> None:
    """A row written into the PGMQ queue's table by hand, without the broker's encoding
    header: `body` as JSON if PostgreSQL takes it, else as a JSON string of its escaped bytes."""
    assert isinstance(broker, PgmqBroker)
    pgmq_queue = broker._pgmq_name(queue)
    connection = await asyncpg.connect(broker._url)
    try:
        await connection.execute("SELECT pgmq.create($1)", pgmq_queue)
        sql = f"INSERT INTO {queue_table(pgmq_queue)} (vt, message) VALUES (now(), %s)"
        try:
            await connection.execute(sql % "$1::text::jsonb", body.decode())
        except (UnicodeDecodeError, asyncpg.PostgresError):
            await connection.execute(sql % "to_jsonb(encode($1::bytea, 'escape'))", body)
    finally:
        await connection.close()


class TestPgmqBroker(BrokerContract):
    @pytest.fixture
    async def broker(self, pgmq_database: str) -> AsyncIterator[PgmqBroker]:
        async with PgmqBroker(pgmq_database, lease_seconds=LEASE, queue_prefix="c_") as broker:
            yield broker

    async def inject_raw(self, broker: Broker, queue: str, body: bytes) -> None:
        await insert_row(broker, queue, body)


class TestPgmqBrokerArchiving(BrokerContract):
    """Acks archive instead of delete: the same contract holds."""

    @pytest.fixture
    async def broker(self, pgmq_database: str) -> AsyncIterator[PgmqBroker]:
        async with PgmqBroker(
            pgmq_database, lease_seconds=LEASE, queue_prefix="ca_", archive=True
        ) as broker:
            yield broker

    async def inject_raw(self, broker: Broker, queue: str, body: bytes) -> None:
        await insert_row(broker, queue, body)


@pytest.mark.slow
class TestPgmqBrokerServerRestart(ServerRestartContract):
    durable = True  # PGMQ's queues are PostgreSQL tables

    @pytest.fixture
    async def broker(
        self, pgmq_database: str, pgmq_prefix: str, polyqueue_postgres: PostgresServer
    ) -> AsyncIterator[PgmqBroker]:
        if not PostgresOutage.possible(polyqueue_postgres):
            pytest.skip("the test server is external and not on loopback: cannot take it down")
        async with PostgresOutage(polyqueue_postgres) as self.outage:
            url = self.outage.url_for(pgmq_database)
            async with PgmqBroker(url, lease_seconds=LEASE, queue_prefix=pgmq_prefix) as broker:
                yield broker

    def restart_server(self, broker: Broker) -> contextlib.AbstractAsyncContextManager[None]:  # noqa: ARG002
        return self.outage.down()
