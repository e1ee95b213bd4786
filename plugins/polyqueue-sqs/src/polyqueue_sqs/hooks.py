"""The plugin's hooks: registers `SqsBroker` as `sqs`. Imports no AWS SDK."""

from __future__ import annotations

from typing import TYPE_CHECKING

from polyqueue.hookspecs import hookimpl
from polyqueue_sqs.broker import SqsBroker

if TYPE_CHECKING:
    from polyqueue.broker import Broker


@hookimpl
def polyqueue_register_brokers() -> list[type[Broker]]:
    """The `sqs` broker."""
    return [SqsBroker]
