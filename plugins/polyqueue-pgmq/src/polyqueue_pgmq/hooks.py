"""Registers the `pgmq` broker with Polyqueue (entry point `polyqueue`); imports no SDK."""

from __future__ import annotations

from typing import TYPE_CHECKING

from polyqueue.hookspecs import hookimpl
from polyqueue_pgmq.broker import PgmqBroker

if TYPE_CHECKING:
    from polyqueue.broker import Broker


@hookimpl
def polyqueue_register_brokers() -> list[type[Broker]]:
    """The `pgmq` broker (`POLYQUEUE_QUEUE_BACKEND=pgmq`)."""
    return [PgmqBroker]
