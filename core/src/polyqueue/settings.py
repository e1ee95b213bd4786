"""`PolyqueueSettings`: every knob, read from `POLYQUEUE_*` environment variables."""

from __future__ import annotations

import re
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, Self, TypeVar, get_args, get_origin
from urllib.parse import unquote, urlsplit

from pydantic import (
    Field,
    Secret,
    SecretBytes,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_settings import BaseSettings, SettingsConfigDict

from polyqueue.exceptions import ConfigurationError
from polyqueue.redaction import redact_url

if TYPE_CHECKING:
    from collections.abc import Collection, Mapping

    from pydantic_core import ErrorDetails

__all__ = [
    "ENV_PREFIX",
    "PolyqueueSettings",
    "TimeoutStrategy",
    "check_database_url",
    "describe_database_url",
    "env_variable",
    "load_settings",
    "load_settings_model",
]

ENV_PREFIX = "POLYQUEUE_"
_IDENTIFIER = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")

_SECRET_FIELDS = ("database_url",)  # may carry a password: never echoed

TimeoutStrategy = Literal["retry", "fail", "ignore"]

_MUST_EXCEED = (
    (
        "worker_stale_after",
        "heartbeat_interval",
        "a healthy worker would be declared dead between two heartbeats",
    ),
    (
        "lease_seconds",
        "heartbeat_interval",
        "deliveries would be redelivered before the heartbeat extends them",
    ),
)
"""Pairs of settings whose order matters: (a, b, why a must exceed b)."""


class PolyqueueSettings(BaseSettings):
    """Settings of one Polyqueue app. Each field `x` is read from `POLYQUEUE_X`."""

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX, extra="ignore", populate_by_name=True, frozen=True
    )

    database_url: str | None = None
    """PostgreSQL URL. Unset: an embedded server from `polyqueue[embedded]` is started."""
    queue_backend: str = "postgres"
    """Name of the broker that rings the doorbell: `postgres`, `none`, or a plugin's."""
    schema_name: str = Field(default="polyqueue", validation_alias="POLYQUEUE_SCHEMA")
    """PostgreSQL schema holding every Polyqueue table (env: `POLYQUEUE_SCHEMA`)."""
    data_dir: Path = Path(".polyqueue")
    """Where the embedded PostgreSQL keeps its data (`<data_dir>/postgres`)."""
    connect_timeout: float = Field(default=10.0, gt=0)
    """Seconds to wait for a database connection before failing."""
    statement_timeout: float | None = Field(default=30.0, gt=0)
    """Seconds one statement may run before PostgreSQL cancels it (the client gives up 2 s
    later), so a black-holed connection fails fast instead of hanging a worker's loops for
    the kernel's 15-minute retransmit timeout. Unset: no limit. Migrations are exempt."""
    tcp_keepalive_seconds: float = Field(default=10.0, gt=0)
    """Idle seconds before TCP keepalive probes on database connections (client and server
    side); a peer that stops answering is dropped after about twice this long."""
    pool_max_size: int | None = Field(default=None, ge=2)
    """Connections in the pool. Unset: the worker's concurrency plus 4 (at least 10)."""
    max_payload_bytes: int = Field(default=1024 * 1024, gt=0)
    """Largest encoded payload `enqueue` accepts (default 1 MiB)."""
    default_queue: str = "default"
    """Queue of handlers registered without one."""
    default_max_attempts: int = Field(default=3, ge=1)
    """Attempts of handlers registered without `max_attempts`."""
    default_max_run_seconds: float | None = Field(default=None, gt=0)
    """Time limit of handlers registered without one. Unset: no limit."""
    default_timeout_strategy: TimeoutStrategy = "retry"
    """What a timed-out job does when its handler does not say: retry, fail or ignore."""
    retry_backoff_base: float = Field(default=1.0, ge=0)
    """Backoff before retry n is uniform in [0, min(max, base * 2**(n-1))] seconds."""
    retry_backoff_max: float = Field(default=3600.0, ge=0)
    """Ceiling of the retry backoff, in seconds."""
    concurrency: int = Field(default=10, ge=1)
    """Jobs one worker runs at once, unless `run_worker(concurrency=...)` says otherwise."""
    heartbeat_interval: float = Field(default=5.0, gt=0)
    """Seconds between worker heartbeats (job rows, worker row, broker leases)."""
    lease_seconds: float = Field(default=30.0, gt=0)
    """How long a broker delivery stays owned before it is redelivered, unless extended."""
    shutdown_grace_seconds: float = Field(default=30.0, ge=0)
    """How long a stopping worker lets in-flight jobs finish before giving them back."""
    scheduler_interval: float = Field(default=1.0, gt=0)
    """Longest wait between checks for due `scheduled` jobs."""
    serializer: str = "json"
    """How results are encoded: `json` (pydantic-core), `orjson`, or a plugin's."""
    log_format: Literal["text", "json"] = "text"
    """Log lines of `polyqueue worker` / `polyqueue.main`: `text`, or one JSON object each."""
    log_level: str = "INFO"
    """Log level of `polyqueue worker` / `polyqueue.main`."""
    maintenance: bool = True
    """Whether workers take part in maintenance (one leader per round, cluster-wide)."""
    maintenance_interval: float = Field(default=5.0, gt=0)
    """Seconds between maintenance rounds."""
    worker_stale_after: float = Field(default=30.0, gt=0)
    """A worker with no heartbeat for this long is `dead` and its running jobs are reclaimed."""
    max_reclaims: int = Field(default=3, ge=1)
    """A job whose worker died this many times while running it fails as a poison job."""
    timeout_backstop_seconds: float = Field(default=30.0, ge=0)
    """Grace after `max_run_seconds` before the database backstop applies the strategy."""
    republish_after: float = Field(default=120.0, gt=0)
    """A job `queued` this long without being claimed gets its notice published again."""
    retention_succeeded: float = Field(default=7 * 86400, gt=0)
    """Seconds a succeeded job is kept before maintenance deletes it (default 7 days)."""
    retention_failed: float = Field(default=30 * 86400, gt=0)
    """Seconds a failed job is kept (default 30 days)."""
    retention_cancelled: float = Field(default=7 * 86400, gt=0)
    """Seconds a cancelled job is kept (default 7 days)."""
    retention_workers: float = Field(default=86400, gt=0)
    """Seconds a stopped or dead worker's row is kept in the registry (default 1 day)."""

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        problems = [
            f"{env_variable(type(self), a)} ({getattr(self, a):g}) must be greater than"
            f" {env_variable(type(self), b)} ({getattr(self, b):g}): {why}"
            for a, b, why in _MUST_EXCEED
            if getattr(self, a) <= getattr(self, b)
        ]
        if problems:
            raise ValueError("; ".join(problems))
        return self

    @field_validator("database_url")
    @classmethod
    def _postgres_url(cls, value: str | None) -> str | None:
        if value is not None:
            check_database_url(value)
        return value

    @field_validator("schema_name", "default_queue")
    @classmethod
    def _identifier(cls, value: str) -> str:
        if not _IDENTIFIER.match(value):
            raise ValueError("must be lowercase letters, digits and _, at most 63 characters")
        return value


_MAX_PORT = 65535


def check_database_url(url: str) -> None:
    """`ValueError` naming what is wrong with a PostgreSQL URL (scheme, host, port); the
    message never repeats the URL, which may carry a password."""
    if not url.startswith(("postgres://", "postgresql://")):
        raise ValueError("must be a postgresql:// URL")
    try:
        netloc = urlsplit(url).netloc
    except ValueError as exc:  # "Invalid IPv6 URL": an unclosed [
        raise ValueError(f"is not a valid URL: {exc}") from None
    hosts = netloc.rpartition("@")[2]
    for host in hosts.split(",") if hosts else []:
        _check_host(host)


def _check_host(host: str) -> None:
    """One `host[:port]` of a URL (IPv6 hosts in brackets)."""
    if host.startswith("["):
        name, bracket, rest = host[1:].partition("]")
        if not bracket or not name:
            raise ValueError(f"host {host!r} has an unclosed [ (IPv6 hosts look like [::1])")
        if rest and not rest.startswith(":"):
            raise ValueError(f"unexpected {rest!r} after the IPv6 host [{name}]")
        port = rest[1:] if rest else ""
    else:
        if "[" in host or "]" in host:
            raise ValueError(f"host {host!r} is not valid (IPv6 hosts look like [::1])")
        port = host.partition(":")[2] if ":" in host else ""
    if port and not (port.isdigit() and 0 < int(port) <= _MAX_PORT):
        raise ValueError(f"port {unquote(port)!r} is not a number from 1 to {_MAX_PORT}")


describe_database_url = redact_url
"""The URL without its password: `polyqueue.redaction.redact_url`, under its former name."""

SettingsT = TypeVar("SettingsT", bound=BaseSettings)


def load_settings(**overrides: Any) -> PolyqueueSettings:
    """Build settings from the environment and `overrides`; errors name the variable."""
    return load_settings_model(PolyqueueSettings, overrides, secret_fields=_SECRET_FIELDS)


def load_settings_model(
    model: type[SettingsT],
    overrides: Mapping[str, Any] | None = None,
    *,
    what: str = "settings",
    secret_fields: Collection[str] = (),
) -> SettingsT:
    """Build the pydantic-settings `model` from the environment and `overrides`, or raise
    `ConfigurationError` naming what is wrong. Core and plugins build their settings so.

    An override that is not a field of `model` is refused, listing the known ones. A value
    that fails validation gives `invalid <what>: <VARIABLE>: <reason> (got <value>)`, one
    such part per problem (`env_variable` names the variable), and a check across fields
    gives its own message. The value is never shown for `SecretStr`, `SecretBytes` and
    `Secret[...]` fields nor for those in `secret_fields` (URLs or connection strings that
    may hold a password); any other text is shown through `redact_url`.
    """
    overrides = dict(overrides or {})
    unknown = sorted(set(overrides) - set(model.model_fields) - _aliases(model).keys())
    if unknown:
        raise ConfigurationError(
            f"unknown setting(s): {', '.join(unknown)}; "
            f"known: {', '.join(sorted(model.model_fields))}"
        )
    try:
        return model(**overrides)
    except ValidationError as exc:  # not chained: pydantic's message repeats every input
        problems = "; ".join(_problem(model, error, secret_fields) for error in exc.errors())
        raise ConfigurationError(f"invalid {what}: {problems}") from None


def env_variable(model: type[BaseSettings], name: str) -> str:
    """The environment variable that field `name` of `model` is read from (`name` may be the
    field's alias, as validation errors report it)."""
    field = model.model_fields.get(name)
    if field is None:  # an alias is the variable itself
        return name.upper()
    alias = field.validation_alias or field.alias
    if isinstance(alias, str):
        return alias.upper()
    return (model.model_config.get("env_prefix", "") + name).upper()


def _problem(model: type[BaseSettings], error: ErrorDetails, secret_fields: Collection[str]) -> str:
    """One validation error of `model` as `VARIABLE: reason (got value)`."""
    if not error["loc"]:  # settings that contradict each other: the message names them
        return error["msg"].removeprefix("Value error, ")
    name = str(error["loc"][0])
    field = _aliases(model).get(name, name)
    secret = field in secret_fields or (
        field in model.model_fields and _is_secret(model.model_fields[field].annotation)
    )
    value = error.get("input")
    shown = repr(redact_url(value)) if isinstance(value, str) else redact_url(repr(value))
    got = "" if secret else f" (got {shown})"
    return f"{env_variable(model, name)}: {error['msg']}{got}"


def _aliases(model: type[BaseSettings]) -> dict[str, str]:
    """The fields of `model` that have an alias, by alias."""
    aliases = {}
    for field, info in model.model_fields.items():
        for alias in (info.validation_alias, info.alias):
            if isinstance(alias, str):
                aliases[alias] = field
    return aliases


def _is_secret(annotation: Any) -> bool:
    """Whether a field's type is one of pydantic's secrets, alone or in a union."""
    if isinstance(annotation, type) and issubclass(annotation, (SecretStr, SecretBytes, Secret)):
        return True
    if get_origin(annotation) is Secret:
        return True
    return any(_is_secret(arg) for arg in get_args(annotation))
