"""`SqsBrokerSettings`: the SQS broker's knobs, read from `POLYQUEUE_SQS_*` variables."""

from __future__ import annotations

import re
from typing import Any, Literal

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from polyqueue.settings import load_settings_model

__all__ = ["ENV_PREFIX", "MAX_WAIT_SECONDS", "SqsBrokerSettings", "load_sqs_settings"]

ENV_PREFIX = "POLYQUEUE_SQS_"
MAX_WAIT_SECONDS = 20
"""SQS's longest long poll."""
_PREFIX = re.compile(r"^[A-Za-z0-9_-]{0,40}$")


class SqsBrokerSettings(BaseSettings):
    """Settings of the `sqs` broker. Each field `x` is read from `POLYQUEUE_SQS_X`.

    Credentials are not settings: they come from the normal AWS chain (environment,
    shared config and credentials files, SSO, container and instance roles).
    """

    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, extra="ignore", frozen=True)

    region: str | None = None
    """AWS region. Unset: the AWS chain (`AWS_REGION`, `AWS_DEFAULT_REGION`, config file)."""
    endpoint_url: str | None = None
    """Another endpoint than AWS's (a VPC endpoint, moto, LocalStack, ElasticMQ)."""
    queue_prefix: str = "polyqueue-"
    """SQS queue of Polyqueue queue `q` is `<queue_prefix><q>` (`+ ".fifo"` with `fifo`)."""
    create_queues: bool = False
    """Create missing queues at first use. Off by default: production queues are declared
    by infrastructure code, with their own retention, encryption and access policy."""
    fifo: bool = False
    """Use FIFO queues (`.fifo` names). Notices need no order, so standard queues are better
    unless your account policy requires FIFO."""
    fifo_group: Literal["job", "queue"] = "job"
    """FIFO `MessageGroupId`: `job` (one group per job: full parallelism, the default) or
    `queue` (one group per queue: SQS hands out one batch at a time, in order)."""
    wait_time_seconds: int = Field(default=MAX_WAIT_SECONDS, ge=0, le=MAX_WAIT_SECONDS)
    """Longest single long poll; a `receive` never waits past its own deadline either."""
    visibility_timeout: float | None = Field(default=None, gt=0, le=43_200)
    """Seconds a received notice stays invisible (rounded up). Unset:
    `POLYQUEUE_LEASE_SECONDS`. Workers extend it on every heartbeat while their job runs."""
    max_attempts: int = Field(default=3, ge=1, le=10)
    """Attempts per API call, botocore's `standard` retry mode (backoff, throttling)."""
    connect_timeout: float = Field(default=5.0, gt=0)
    """Seconds to wait for a connection to the endpoint."""
    max_pool_connections: int = Field(default=20, ge=1)
    """HTTP connections of the broker's one client (long polls hold one each)."""

    @field_validator("queue_prefix")
    @classmethod
    def _prefix(cls, value: str) -> str:
        if not _PREFIX.match(value):
            raise ValueError("must be letters, digits, - and _, at most 40 characters")
        return value

    @field_validator("endpoint_url")
    @classmethod
    def _endpoint(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith(("http://", "https://")):
            raise ValueError("must be an http:// or https:// URL")
        return value


def load_sqs_settings(**overrides: Any) -> SqsBrokerSettings:
    """Settings from the environment and `overrides`; errors name the variable."""
    return load_settings_model(SqsBrokerSettings, overrides, what="SQS broker settings")
