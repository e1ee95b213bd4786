"""`AzureBrokerSettings`: the Service Bus broker's knobs, read from `POLYQUEUE_AZURE_*`."""

from __future__ import annotations

import re
from typing import Any

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from polyqueue.settings import load_settings_model

__all__ = [
    "ENV_PREFIX",
    "MAX_ENTITY_NAME",
    "AzureBrokerSettings",
    "load_azure_settings",
    "valid_entity",
]

ENV_PREFIX = "POLYQUEUE_AZURE_"
ENTITY_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._/-]*$")
MAX_ENTITY_NAME = 260
"""Service Bus's longest queue name."""
ENDPOINT_REQUIRED = (
    f"set {ENV_PREFIX}CONNECTION_STRING, or {ENV_PREFIX}FULLY_QUALIFIED_NAMESPACE"
    " (with the `identity` extra), but not both"
)


class AzureBrokerSettings(BaseSettings):
    """Settings of the `azure` broker. Each field `x` is read from `POLYQUEUE_AZURE_X`."""

    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, extra="ignore", frozen=True)

    connection_string: SecretStr | None = None
    """`Endpoint=sb://<namespace>/;SharedAccessKeyName=...;SharedAccessKey=...` (or the
    emulator's, with `UseDevelopmentEmulator=true`)."""
    fully_qualified_namespace: str | None = None
    """`<namespace>.servicebus.windows.net`, authenticated by azure-identity's
    `DefaultAzureCredential` (install `polyqueue-azure[identity]`)."""
    queue_prefix: str = ""
    """Prepended to every Polyqueue queue name to form the Service Bus queue name."""
    prefetch_count: int = Field(default=0, ge=0, le=50_000)
    """Messages each receiver fetches ahead (0: none; prefetched messages are already locked)."""
    max_wait_time: float = Field(default=5.0, gt=0, le=300)
    """Longest single receive call, in seconds; longer waits are several calls."""
    receive_batch: int = Field(default=100, ge=1, le=5000)
    """Most messages one receive call asks for (the broker's `capabilities.max_batch`)."""
    session_queues: str = ""
    """Comma-separated Polyqueue queues whose Service Bus queue requires sessions."""
    session_partitions: int = Field(default=16, ge=1, le=10_000)
    """Session ids used on a session queue: a notice's session id is `job_id % partitions`."""
    dead_letter_foreign: bool = True
    """Dead-letter, at receive, messages no Polyqueue broker sent (no `polyqueue_queue`
    property, or a non-data AMQP body), with reason `not a polyqueue notice`."""
    retry_attempts: int = Field(default=4, ge=1, le=20)
    """Tries of one operation on transient errors (connection, timeout, server busy)."""
    retry_backoff: float = Field(default=0.2, gt=0)
    """Base of the exponential backoff (full jitter) between those tries, in seconds."""
    retry_backoff_max: float = Field(default=5.0, gt=0)
    """Longest wait between two tries, in seconds."""
    sdk_retry_total: int = Field(default=0, ge=0, le=10)
    """The SDK's own retries per call (`retry_total`); the broker retries on top of it."""

    @field_validator("connection_string")
    @classmethod
    def _connection_string(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and "endpoint=" not in value.get_secret_value().lower():
            raise ValueError("must contain Endpoint=sb://<namespace>")
        return value

    @field_validator("fully_qualified_namespace")
    @classmethod
    def _namespace(cls, value: str | None) -> str | None:
        if value is not None and ("://" in value or "/" in value or not value.strip()):
            raise ValueError("must be a host name like <namespace>.servicebus.windows.net")
        return value

    @field_validator("queue_prefix")
    @classmethod
    def _prefix(cls, value: str) -> str:
        if value and not ENTITY_NAME.match(value):
            raise ValueError("may hold letters, digits, '.', '_', '-' and '/' only")
        return value

    @model_validator(mode="after")
    def _one_endpoint(self) -> AzureBrokerSettings:
        if (self.connection_string is None) == (self.fully_qualified_namespace is None):
            raise ValueError(ENDPOINT_REQUIRED)
        return self

    @property
    def sessions(self) -> frozenset[str]:
        """The Polyqueue queues whose Service Bus queue requires sessions."""
        return frozenset(q.strip() for q in self.session_queues.split(",") if q.strip())

    def entity(self, queue: str) -> str:
        """The Service Bus queue that carries the notices of Polyqueue queue `queue`."""
        return self.queue_prefix + queue


def load_azure_settings(**overrides: Any) -> AzureBrokerSettings:
    """Settings from the environment and `overrides`; errors name the variable, never the
    connection string (a `SecretStr`)."""
    return load_settings_model(
        AzureBrokerSettings, overrides, what="Azure Service Bus broker settings"
    )


def valid_entity(name: str) -> bool:
    """Whether Service Bus takes `name` as a queue name: letters, digits, '.', '_', '-' and
    '/', starting and ending with a letter or digit, at most `MAX_ENTITY_NAME` characters."""
    return (
        len(name) <= MAX_ENTITY_NAME and ENTITY_NAME.match(name) is not None and name[-1].isalnum()
    )
