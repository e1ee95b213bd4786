"""pytest fixtures with real servers: one PostgreSQL per session, a fresh database per module.

Every fixture name starts with `polyqueue_`. Set `POLYQUEUE_TEST_DATABASE_URL` to use an
existing server instead of the embedded one.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import tempfile
import uuid
from pathlib import Path
from typing import TYPE_CHECKING

import asyncpg
import pytest

from polyqueue.migrations import migrate_up
from polyqueue.testing.servers import (
    PostgresServer,
    create_database,
    drop_database,
    start_postgres_server,
    stop_postgres_server,
)

if TYPE_CHECKING:
    from collections.abc import Iterator

DEFAULT_SCHEMA = "polyqueue"


@contextlib.contextmanager
def _server_directory() -> Iterator[Path]:
    """A fresh directory outside pytest's `pytest-of-<user>` tree.

    As root, the embedded server runs as an unprivileged user that must traverse every parent
    of its data directory; pytest resets `pytest-of-<user>` to mode 0700 whenever a session
    (or an xdist worker) starts, which would lock a running server out of its own files.
    """
    path = Path(tempfile.mkdtemp(prefix="polyqueue-test-"))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


@pytest.fixture(scope="session")
def polyqueue_postgres() -> Iterator[PostgresServer]:
    """A running PostgreSQL for the whole session."""
    with _server_directory() as directory:
        server = start_postgres_server(directory)
        yield server
        stop_postgres_server(server)


@pytest.fixture
def polyqueue_server_dir() -> Iterator[Path]:
    """A directory for a test's own embedded PostgreSQL (not under pytest's tmp_path)."""
    with _server_directory() as directory:
        yield directory


@pytest.fixture(scope="session")
def polyqueue_template_database(polyqueue_postgres: PostgresServer) -> Iterator[str]:
    """A database migrated once per session, cloned by `polyqueue_database_url`."""
    worker = os.environ.get("PYTEST_XDIST_WORKER", "main")
    name = f"pq_tpl_{worker}_{uuid.uuid4().hex[:8]}"
    asyncio.run(_create_template(polyqueue_postgres, name))
    yield name
    asyncio.run(drop_database(polyqueue_postgres, name))


async def _create_template(server: PostgresServer, name: str) -> None:
    url = await create_database(server, name)
    connection = await asyncpg.connect(url)
    try:
        await migrate_up(connection, DEFAULT_SCHEMA)
    finally:
        await connection.close()


@pytest.fixture(scope="module")
def polyqueue_database_url(
    polyqueue_postgres: PostgresServer, polyqueue_template_database: str
) -> Iterator[str]:
    """The URL of a fresh, migrated database for one test module."""
    name = f"pq_{uuid.uuid4().hex[:12]}"
    url = asyncio.run(
        create_database(polyqueue_postgres, name, template=polyqueue_template_database)
    )
    yield url
    asyncio.run(drop_database(polyqueue_postgres, name))
