"""The Redis broker runs the broker contract suite unchanged, against a real redis-server."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from polyqueue.testing.contract import BrokerContract
from polyqueue_redis import RedisBroker, RedisBrokerSettings

LEASE = 1.0


class TestRedisBroker(BrokerContract):
    @pytest.fixture
    async def broker(self, redis_settings: RedisBrokerSettings) -> AsyncIterator[RedisBroker]:
        async with RedisBroker(redis_settings, lease_seconds=LEASE) as broker:
            yield broker
