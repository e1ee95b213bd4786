"""The `pgmq` broker passes the broker contract suite unchanged, on the SQL-only PGMQ."""

from __future__ import annotations

from collections.abc import AsyncIterator

import asyncpg
import pytest
from pgmq_support import queue_table

from polyqueue.broker import Broker
from polyqueue.testing.contract import BrokerContract
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
