"""pytest fixtures with real servers: one PostgreSQL per session, a fresh database per module.

Every fixture name starts with `polyqueue_`. Set `POLYQUEUE_TEST_DATABASE_URL` to use an
existing server instead of the embedded one.

For users' own tests (docs/testing.md):

- `polyqueue_test_settings`: settings for an app under test: the module's database, emptied
  for each test, and retries due at once.
- `polyqueue_target`: the app under test; override it to return your own (the default is a
  new, empty `Polyqueue`).
- `polyqueue_app` (async tests, needs pytest-asyncio) and `polyqueue_sync_app` (sync tests,
  through `app.sync`): that app, configured with `polyqueue_test_settings` and started;
  closed after the test.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import tempfile
import uuid
from importlib.util import find_spec
from pathlib import Path
from typing import TYPE_CHECKING, Any

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
    from collections.abc import AsyncIterator, Iterator

    from polyqueue.app import Polyqueue

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


# -- an app under test ---------------------------------------------------------------------------

TEST_SETTINGS: dict[str, Any] = {
    "retry_backoff_base": 0.0,  # a retry is due at once, so run_until_idle runs it too
    "retry_backoff_max": 0.0,
    "scheduler_interval": 0.1,
    "shutdown_grace_seconds": 5.0,
}
"""What `polyqueue_test_settings` sets beside the database URL."""

_TABLES = ("jobs", "workers", "broker_messages", "cron_schedules")


@pytest.fixture
def polyqueue_test_settings(polyqueue_database_url: str) -> dict[str, Any]:
    """Settings for an app under test: the module's migrated database with every Polyqueue
    table emptied (a throwaway database per test), and retries due at once."""
    tables = ", ".join(f"{DEFAULT_SCHEMA}.{table}" for table in _TABLES)
    asyncio.run(_execute(polyqueue_database_url, f"TRUNCATE {tables}"))
    return {"database_url": polyqueue_database_url, **TEST_SETTINGS}


async def _execute(url: str, sql: str) -> None:
    connection = await asyncpg.connect(url)
    try:
        await connection.execute(sql)
    finally:
        await connection.close()


@pytest.fixture
def polyqueue_target() -> Polyqueue:
    """The app `polyqueue_app` and `polyqueue_sync_app` start. Override it in your
    conftest.py to return your own app (e.g. `from myproject.tasks import app`)."""
    from polyqueue.app import Polyqueue  # noqa: PLC0415  (the plugin loads in every session)

    return Polyqueue()


@pytest.fixture
def polyqueue_sync_app(
    polyqueue_target: Polyqueue, polyqueue_test_settings: dict[str, Any]
) -> Iterator[Polyqueue]:
    """`polyqueue_target` configured for the test and started on `app.sync`'s thread, for
    sync tests (Django, Flask, scripts): call `app.sync.enqueue(...)`,
    `app.sync.run_until_idle()`. Closed after the test."""
    polyqueue_target.configure(**polyqueue_test_settings)
    with polyqueue_target.sync:
        yield polyqueue_target


if find_spec("pytest_asyncio") is not None:
    import pytest_asyncio

    @pytest_asyncio.fixture
    async def polyqueue_app(
        polyqueue_target: Polyqueue, polyqueue_test_settings: dict[str, Any]
    ) -> AsyncIterator[Polyqueue]:
        """`polyqueue_target` configured for the test and started in the test's event loop,
        for async tests: `await app.enqueue(...)`, `await app.run_until_idle()`."""
        polyqueue_target.configure(**polyqueue_test_settings)
        async with polyqueue_target:
            yield polyqueue_target
