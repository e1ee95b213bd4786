"""The built-in plugin: registers the `postgres` and `none` brokers like any other plugin."""

from __future__ import annotations

from typing import TYPE_CHECKING

from polyqueue.brokers.memory import InProcessBroker
from polyqueue.brokers.postgres import PostgresBroker
from polyqueue.hookspecs import hookimpl

if TYPE_CHECKING:
    from polyqueue.broker import Broker


@hookimpl
def polyqueue_register_brokers() -> list[type[Broker]]:
    """The two brokers that ship with the core."""
    return [PostgresBroker, InProcessBroker]
