"""The plugin's hooks: registers `RedisBroker` as `redis`. Imports no Redis SDK."""

from __future__ import annotations

from typing import TYPE_CHECKING

from polyqueue.hookspecs import hookimpl
from polyqueue_redis.broker import RedisBroker

if TYPE_CHECKING:
    from polyqueue.broker import Broker


@hookimpl
def polyqueue_register_brokers() -> list[type[Broker]]:
    """The `redis` broker."""
    return [RedisBroker]
