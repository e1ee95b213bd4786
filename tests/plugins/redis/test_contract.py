"""The Redis broker runs the broker contract suite unchanged, against a real redis-server.

The server-restart cases run on a `redis-server` of the test's own, really stopped and
started again on its port: killed, as the test servers keep nothing on disk (`durable`
False: what was in Redis is gone), and shut down with `SHUTDOWN SAVE`, then started on its
snapshot, as a persistent Redis restarts (`durable`).
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator

import pytest
from redis.asyncio import Redis
from redis_support import RedisServer

from polyqueue.broker import Broker
from polyqueue.testing.contract import BrokerContract, ServerRestartContract
from polyqueue_redis import RedisBroker, RedisBrokerSettings

LEASE = 1.0


class TestRedisBroker(BrokerContract):
    @pytest.fixture
    async def broker(self, redis_settings: RedisBrokerSettings) -> AsyncIterator[RedisBroker]:
        async with RedisBroker(redis_settings, lease_seconds=LEASE) as broker:
            yield broker

    async def inject_raw(self, broker: Broker, queue: str, body: bytes) -> None:
        """A ready member that is not UTF-8 (not an id `publish` makes), with `body`."""
        assert isinstance(broker, RedisBroker)
        keys = broker.keys.queue(queue)
        member = b"\x00\xff" + uuid.uuid4().bytes
        client = Redis.from_url(broker.settings.url)
        try:
            await client.hset(keys.bodies, member, body)
            await client.zadd(keys.ready, {member: 0})
        finally:
            await client.aclose()


@pytest.mark.slow
class TestRedisBrokerServerRestart(ServerRestartContract):
    """Killed and started again empty: the test servers run without persistence."""

    durable = False

    @pytest.fixture
    async def broker(self, dedicated_redis: RedisServer) -> AsyncIterator[RedisBroker]:
        self.server = dedicated_redis
        await asyncio.to_thread(dedicated_redis.start)
        settings = RedisBrokerSettings(url=dedicated_redis.url, key_prefix="restart:")
        async with RedisBroker(settings, lease_seconds=LEASE) as broker:
            yield broker

    @contextlib.asynccontextmanager
    async def restart_server(self, broker: Broker) -> AsyncIterator[None]:  # noqa: ARG002
        await asyncio.to_thread(self.server.kill)
        try:
            yield
        finally:
            await asyncio.to_thread(self.server.start)  # same port


@pytest.mark.slow
class TestRedisBrokerPersistedServerRestart(TestRedisBrokerServerRestart):
    """Shut down with a snapshot and started again on it, as a Redis with persistence is."""

    durable = True

    @contextlib.asynccontextmanager
    async def restart_server(self, broker: Broker) -> AsyncIterator[None]:  # noqa: ARG002
        client = Redis.from_url(self.server.url)
        try:
            await client.shutdown(save=True)  # writes dump.rdb in the server's directory
        finally:
            await client.aclose()
        await asyncio.to_thread(self.server.stop)  # reaps it
        try:
            yield
        finally:
            await asyncio.to_thread(self.server.start)  # same port and directory: loads it
