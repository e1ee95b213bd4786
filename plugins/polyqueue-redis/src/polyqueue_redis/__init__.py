"""The Redis broker for Polyqueue: `queue_backend = "redis"`, settings `POLYQUEUE_REDIS_*`."""

from __future__ import annotations

from polyqueue_redis.broker import RedisBroker
from polyqueue_redis.settings import RedisBrokerSettings

__all__ = ["RedisBroker", "RedisBrokerSettings"]
