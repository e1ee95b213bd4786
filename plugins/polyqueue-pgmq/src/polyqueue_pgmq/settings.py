"""`PgmqBrokerSettings`: the PGMQ broker's knobs, read from `POLYQUEUE_PGMQ_*` variables."""

from __future__ import annotations

import re
from typing import Any

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from polyqueue.settings import load_settings_model

__all__ = ["ENV_PREFIX", "PgmqBrokerSettings", "load_pgmq_settings"]

ENV_PREFIX = "POLYQUEUE_PGMQ_"
_PREFIX = re.compile(r"^[a-z0-9_]{0,30}$")
_SECRET_FIELDS = ("database_url",)  # may carry a password: never echoed


class PgmqBrokerSettings(BaseSettings):
    """Settings of the `pgmq` broker. Each field `x` is read from `POLYQUEUE_PGMQ_X`."""

    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, extra="ignore", frozen=True)

    database_url: str | None = None
    """PostgreSQL URL of the database holding PGMQ. Unset: the jobs database (and only then
    are notices published inside the enqueueing transaction)."""
    queue_prefix: str = "pq_"
    """PGMQ queue of Polyqueue queue `q` is `<queue_prefix><q>` (lowercase, digits, `_`)."""
    install: bool = False
    """Install PGMQ at start when it is missing: `CREATE EXTENSION pgmq` if the server offers
    it, else the SQL-only PGMQ shipped in the `pgmq` package. Off by default: an explicit step."""
    archive: bool = False
    """Acked messages are moved to PGMQ's archive table (`pgmq.a_<queue>`) instead of deleted."""
    visibility_timeout: float | None = Field(default=None, gt=0)
    """Seconds a read message stays invisible (PGMQ's `vt`, rounded up to whole seconds).
    Unset: `POLYQUEUE_LEASE_SECONDS`. Workers extend it while their jobs run."""
    poll_interval: float = Field(default=1.0, gt=0)
    """Longest a waiting `receive` goes without reading again: catches messages sent by other
    means than this broker (no NOTIFY), delays and expired visibility timeouts."""
    pool_max_size: int = Field(default=4, ge=1)
    """Connections in the broker's own pool (the LISTEN connection comes on top)."""

    @field_validator("database_url")
    @classmethod
    def _postgres_url(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith(("postgres://", "postgresql://")):
            raise ValueError("must be a postgresql:// URL")
        return value

    @field_validator("queue_prefix")
    @classmethod
    def _prefix(cls, value: str) -> str:
        if not _PREFIX.match(value):
            raise ValueError("must be lowercase letters, digits and _, at most 30 characters")
        return value


def load_pgmq_settings(**overrides: Any) -> PgmqBrokerSettings:
    """Settings from the environment and `overrides`; errors name the variable."""
    return load_settings_model(
        PgmqBrokerSettings, overrides, what="PGMQ broker settings", secret_fields=_SECRET_FIELDS
    )
