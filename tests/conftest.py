"""Shared fixtures: an app factory on the module's fresh database (real PostgreSQL)."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import asyncpg
import pytest
from redis_support import TEST_REDIS_URL_ENV, new_redis_server

from polyqueue import Polyqueue

AppFactory = Callable[..., Polyqueue]

FAST = {
    "retry_backoff_base": 0.01,
    "retry_backoff_max": 0.05,
    "heartbeat_interval": 0.2,
    "lease_seconds": 2.0,
    "scheduler_interval": 0.1,
    "shutdown_grace_seconds": 5.0,
}
"""Settings that keep tests quick; no assertion depends on them being met in time."""


@pytest.fixture
async def clean_database(polyqueue_database_url: str) -> str:
    """The module's database with every Polyqueue table emptied."""
    connection = await asyncpg.connect(polyqueue_database_url)
    try:
        await connection.execute(
            "TRUNCATE polyqueue.jobs, polyqueue.workers, polyqueue.broker_messages,"
            " polyqueue.cron_schedules, polyqueue.flow_limits, polyqueue.paused_queues,"
            " polyqueue.flow_starts, polyqueue.job_dependencies, polyqueue.workflows"
        )
    finally:
        await connection.close()
    return polyqueue_database_url


@pytest.fixture
async def make_app(clean_database: str) -> AsyncIterator[AppFactory]:
    """Build apps on the test database (not started); closes any started ones afterwards."""
    apps: list[Polyqueue] = []

    def factory(**overrides: Any) -> Polyqueue:
        app = Polyqueue(**{"database_url": clean_database, **FAST, **overrides})
        apps.append(app)
        return app

    yield factory
    for app in apps:
        if app.started:
            await app.close()


@pytest.fixture
async def db(clean_database: str) -> AsyncIterator[asyncpg.Connection]:
    """A direct connection to the test database, for arranging and inspecting rows."""
    connection = await asyncpg.connect(clean_database)
    yield connection
    await connection.close()


@pytest.fixture(scope="session")
def redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """$POLYQUEUE_TEST_REDIS_URL, else a `redis-server` started on a free loopback port, once
    per session (the Redis plugin's tests and the end-to-end tests share it)."""
    url = os.environ.get(TEST_REDIS_URL_ENV)
    if url:
        yield url
        return
    server = new_redis_server(tmp_path_factory.mktemp("redis"))
    server.start()
    yield server.url
    server.stop()
