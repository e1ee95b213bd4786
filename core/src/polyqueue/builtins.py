"""The built-in plugin: registers the core's brokers and serializers like any other plugin."""

from __future__ import annotations

from typing import TYPE_CHECKING

from polyqueue.brokers.in_process import InProcessBroker
from polyqueue.brokers.postgres import PostgresBroker
from polyqueue.hookspecs import hookimpl
from polyqueue.serializers import JsonSerializer, OrjsonSerializer

if TYPE_CHECKING:
    from polyqueue.broker import Broker
    from polyqueue.serializers import Serializer


@hookimpl
def polyqueue_register_brokers() -> list[type[Broker]]:
    """The two brokers that ship with the core."""
    return [PostgresBroker, InProcessBroker]


@hookimpl
def polyqueue_register_serializers() -> list[type[Serializer]]:
    """`json` (the default) and `orjson` (needs the `orjson` extra when selected)."""
    return [JsonSerializer, OrjsonSerializer]
