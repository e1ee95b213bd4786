"""Redis fixtures: a fresh key prefix per test, dedicated servers (the session's server,
`redis_url`, is in tests/conftest.py, shared with the end-to-end tests)."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Iterator

import pytest
from redis.asyncio import Redis
from redis_support import RedisServer, new_redis_server

from polyqueue_redis import RedisBrokerSettings


@pytest.fixture
def dedicated_redis(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    """A server of this test's own (not started), to kill, restart or flush at will."""
    server = new_redis_server(tmp_path_factory.mktemp("redis"))
    yield server
    server.stop()


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
