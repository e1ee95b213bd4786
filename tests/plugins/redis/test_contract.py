"""The Redis broker runs the broker contract suite unchanged, against a real redis-server."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import pytest
from redis.asyncio import Redis

from polyqueue.broker import Broker
from polyqueue.testing.contract import BrokerContract
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
