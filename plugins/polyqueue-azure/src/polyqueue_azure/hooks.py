"""The plugin's hooks: registers `AzureBroker` as `azure`. Imports no Azure SDK."""

from __future__ import annotations

from typing import TYPE_CHECKING

from polyqueue.hookspecs import hookimpl
from polyqueue_azure.broker import AzureBroker

if TYPE_CHECKING:
    from polyqueue.broker import Broker


@hookimpl
def polyqueue_register_brokers() -> list[type[Broker]]:
    """The `azure` broker."""
    return [AzureBroker]
