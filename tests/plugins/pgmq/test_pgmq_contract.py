"""The `pgmq` broker passes the broker contract suite unchanged, on the SQL-only PGMQ."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from polyqueue.testing.contract import BrokerContract
from polyqueue_pgmq import PgmqBroker

LEASE = 1.0


class TestPgmqBroker(BrokerContract):
    @pytest.fixture
    async def broker(self, pgmq_database: str) -> AsyncIterator[PgmqBroker]:
        async with PgmqBroker(pgmq_database, lease_seconds=LEASE, queue_prefix="c_") as broker:
            yield broker


class TestPgmqBrokerArchiving(BrokerContract):
    """Acks archive instead of delete: the same contract holds."""

    @pytest.fixture
    async def broker(self, pgmq_database: str) -> AsyncIterator[PgmqBroker]:
        async with PgmqBroker(
            pgmq_database, lease_seconds=LEASE, queue_prefix="ca_", archive=True
        ) as broker:
            yield broker
