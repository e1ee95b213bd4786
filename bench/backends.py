"""The environment each broker plugin reads, per measurement, and the servers it needs.

Every measurement runs under `scoped_env(backend_env(...))`: the variables are set in this
process (the producer reads them) and inherited by the worker and producer subprocesses.
Redis keys and SQS queues get a prefix of the measurement's own, so no run sees another's.
"""

from __future__ import annotations

import contextlib
import os
import uuid
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Iterator, Mapping

__all__ = ["NEEDS_SERVER", "Endpoints", "backend_env", "scoped_env", "unique_tag"]

NEEDS_SERVER = {"redis": "redis", "sqs": "moto"}
"""Backends that need a server besides PostgreSQL, and which."""

# moto accepts any credentials; these keep the AWS chain away from real profiles and metadata.
_DUMMY_AWS = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_SESSION_TOKEN": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
    "AWS_EC2_METADATA_DISABLED": "true",
    "AWS_PROFILE": None,
    "AWS_CONFIG_FILE": None,
    "AWS_SHARED_CREDENTIALS_FILE": None,
}


@dataclass(frozen=True, slots=True)
class Endpoints:
    """URLs of the servers started for this invocation (None: not needed)."""

    redis: str | None = None
    sqs: str | None = None


def unique_tag(label: str) -> str:
    """`label` plus a random suffix: letters, digits and `-`, fit for key and queue prefixes."""
    return f"{label}-{uuid.uuid4().hex[:8]}"


def backend_env(backend: str, tag: str, endpoints: Endpoints) -> dict[str, str | None]:
    """Variables for `backend` in a measurement tagged `tag` (None: unset the variable)."""
    if backend == "redis":
        return {
            "POLYQUEUE_REDIS_URL": _need(endpoints.redis),
            "POLYQUEUE_REDIS_KEY_PREFIX": f"pqb-{tag}:",
        }
    if backend == "pgmq":
        return {"POLYQUEUE_PGMQ_INSTALL": "true"}  # PGMQ's SQL, into each fresh database
    if backend == "sqs":
        return {
            **_DUMMY_AWS,
            "POLYQUEUE_SQS_ENDPOINT_URL": _need(endpoints.sqs),
            "POLYQUEUE_SQS_REGION": "us-east-1",
            "POLYQUEUE_SQS_QUEUE_PREFIX": f"pqb-{tag}-",
            "POLYQUEUE_SQS_CREATE_QUEUES": "true",
        }
    return {}


@contextlib.contextmanager
def scoped_env(values: Mapping[str, str | None]) -> Iterator[None]:
    """Set (or, for None, unset) `values` in `os.environ` for the block; restore them after."""
    saved = {name: os.environ.get(name) for name in values}
    try:
        _apply(values)
        yield
    finally:
        _apply(saved)


def _apply(values: Mapping[str, str | None]) -> None:
    for name, value in values.items():
        if value is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = value


def _need(url: str | None) -> str:
    if url is None:
        raise RuntimeError("the server this backend needs was not started")
    return url
