"""The Azure Service Bus broker for Polyqueue: `queue_backend = "azure"`, `POLYQUEUE_AZURE_*`."""

from __future__ import annotations

from polyqueue_azure.broker import AzureBroker
from polyqueue_azure.settings import AzureBrokerSettings

__all__ = ["AzureBroker", "AzureBrokerSettings"]
