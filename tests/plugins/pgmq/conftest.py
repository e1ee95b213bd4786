"""PGMQ fixtures: the SQL-only PGMQ installed in the module's database, a prefix per test."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import asyncpg
import pytest

from polyqueue.testing.servers import PostgresServer, create_database, drop_database
from polyqueue_pgmq import PgmqBroker, install

BROKER_LEASE = 1.0
"""The lease of the `broker` fixture: short, so lease-expiry cases stay quick."""


@pytest.fixture
async def pgmq_database(polyqueue_database_url: str) -> str:
    """The module's migrated database, with PGMQ installed (once; later calls find it)."""
    connection = await asyncpg.connect(polyqueue_database_url)
    try:
        await install(connection)
    finally:
        await connection.close()
    return polyqueue_database_url


@pytest.fixture
def pgmq_prefix() -> str:
    """A queue prefix of this test's own, so tests sharing a database never share a queue."""
    return f"t{uuid.uuid4().hex[:8]}_"


@pytest.fixture
def pgmq_env(pgmq_database: str, pgmq_prefix: str, monkeypatch: pytest.MonkeyPatch) -> str:
    """`POLYQUEUE_PGMQ_*` for apps of this test (PGMQ in the jobs database); the prefix."""
    monkeypatch.setenv("POLYQUEUE_PGMQ_QUEUE_PREFIX", pgmq_prefix)
    monkeypatch.setenv("POLYQUEUE_PGMQ_POLL_INTERVAL", "0.2")
    return pgmq_prefix


@pytest.fixture
async def empty_database(polyqueue_postgres: PostgresServer) -> AsyncIterator[str]:
    """A database of this test's own with nothing in it (no Polyqueue, no PGMQ)."""
    name = f"pq_pgmq_{uuid.uuid4().hex[:12]}"
    url = await create_database(polyqueue_postgres, name)
    yield url
    await drop_database(polyqueue_postgres, name)


@pytest.fixture
async def broker(pgmq_database: str, pgmq_prefix: str) -> AsyncIterator[PgmqBroker]:
    """A started PGMQ broker on the module's database, with this test's queue prefix."""
    async with PgmqBroker(
        pgmq_database, lease_seconds=BROKER_LEASE, queue_prefix=pgmq_prefix
    ) as started:
        yield started


@pytest.fixture
async def db(pgmq_database: str) -> AsyncIterator[asyncpg.Connection]:
    """A direct connection to the module's database, for writing into PGMQ's tables."""
    connection = await asyncpg.connect(pgmq_database)
    yield connection
    await connection.close()
