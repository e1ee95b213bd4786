"""`RedisBrokerSettings`: the Redis broker's knobs, read from `POLYQUEUE_REDIS_*` variables."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from polyqueue.redaction import redact_url  # its former home: still importable here
from polyqueue.settings import load_settings_model

__all__ = ["ENV_PREFIX", "RedisBrokerSettings", "load_redis_settings", "redact_url"]

ENV_PREFIX = "POLYQUEUE_REDIS_"
URL_SCHEMES = ("redis", "rediss", "unix")


class RedisBrokerSettings(BaseSettings):
    """Settings of the `redis` broker. Each field `x` is read from `POLYQUEUE_REDIS_X`."""

    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, extra="ignore", frozen=True)

    url: str = "redis://localhost:6379/0"
    """`redis://[[user]:password@]host[:port][/db]`, `rediss://` for TLS, or `unix://path`."""
    key_prefix: str = "polyqueue:"
    """Every key and channel of the broker starts with this (several apps can share a server)."""
    publish_chunk_size: int = Field(default=500, ge=1, le=10_000)
    """Messages stored per Lua call when publishing; all chunks go in one pipeline."""
    sweep_limit: int = Field(default=1000, ge=1)
    """Expired leases and due delayed messages moved back to ready, and garbage ids (without a
    body) dropped, per queue per receive."""
    socket_timeout: float = Field(default=5.0, gt=0)
    """Seconds to wait for a reply before the server counts as unreachable."""
    connect_timeout: float = Field(default=5.0, gt=0)
    """Seconds to wait for a connection."""

    @field_validator("url")
    @classmethod
    def _redis_url(cls, value: str) -> str:
        if urlsplit(value).scheme not in URL_SCHEMES:
            raise ValueError("must be a redis://, rediss:// or unix:// URL")
        return value

    @field_validator("key_prefix")
    @classmethod
    def _prefix(cls, value: str) -> str:
        if not value or any(char.isspace() for char in value):
            raise ValueError("must be non-empty, without whitespace")
        return value


def load_redis_settings(**overrides: Any) -> RedisBrokerSettings:
    """Settings from the environment and `overrides`; errors name the variable, never the URL
    (it may hold a password)."""
    return load_settings_model(
        RedisBrokerSettings, overrides, what="Redis broker settings", secret_fields=("url",)
    )
