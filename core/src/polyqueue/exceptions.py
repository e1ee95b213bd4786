"""Every error Polyqueue raises, in one tree; plus the signals handlers raise.

```
PolyqueueError
├── ConfigurationError              bad settings, bad registration, missing extra
│   └── UnknownPluginError          a plugin name nobody registered (kind, name, available)
├── HandlerNotFoundError            enqueue or dispatch of a name with no handler
├── InvalidPayloadError             a payload, or an enqueue option, that cannot be stored
├── SerializationError              a value that cannot be encoded as JSON
│   └── PayloadTooLargeError        an encoded payload over `max_payload_bytes`
├── MigrationError                  the schema could not be brought up to date
├── StoreError                      the database refused or could not be reached
│   ├── DatabaseUnavailableError    could not connect (bad URL, server down)
│   └── JobNotFoundError            no job with that id
├── WorkerLoopError                 a worker's loop kept crashing: the worker stopped
├── JobTimeoutError                 `wait_for` gave up before the job finished
├── ResultUnavailableError          the job has no result: it has not succeeded
└── BrokerError                     a broker failed (field: broker)
    ├── BrokerUnavailableError      the broker cannot be reached (retryable)
    └── UnsupportedCapabilityError  the broker does not offer what was asked

TerminalError                       raised by handlers: fail now, never retry
```

`TerminalError` lives outside `PolyqueueError`: users raise it, the library does not.
Errors from asyncpg or a broker SDK are chained (`raise ... from exc`) at the boundary.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Sequence

__all__ = [
    "BrokerError",
    "BrokerUnavailableError",
    "ConfigurationError",
    "DatabaseUnavailableError",
    "HandlerNotFoundError",
    "InvalidPayloadError",
    "JobNotFoundError",
    "JobTimeoutError",
    "MigrationError",
    "PayloadTooLargeError",
    "PolyqueueError",
    "ResultUnavailableError",
    "SerializationError",
    "StoreError",
    "TerminalError",
    "UnknownPluginError",
    "UnsupportedCapabilityError",
    "WorkerLoopError",
]


class PolyqueueError(Exception):
    """Polyqueue failed."""

    def __init__(self, message: str | None = None) -> None:
        super().__init__(message or (type(self).__doc__ or "").strip())


class ConfigurationError(PolyqueueError):
    """Polyqueue is configured wrongly."""


class UnknownPluginError(ConfigurationError):
    """No plugin is registered under that name."""

    def __init__(self, kind: str, name: str, available: Sequence[str], hint: str = "") -> None:
        self.kind = kind
        self.name = name
        self.available = sorted(available)
        super().__init__(
            f"unknown {kind} {name!r}; available: {', '.join(self.available) or '(none)'}"
            + (f"; {hint}" if hint else "")
        )


class HandlerNotFoundError(PolyqueueError):
    """No handler is registered under that name."""

    def __init__(self, name: str, available: Sequence[str] = ()) -> None:
        self.name = name
        known = ", ".join(sorted(available)) or "(none)"
        super().__init__(f"no handler registered as {name!r}; registered: {known}")


class InvalidPayloadError(PolyqueueError):
    """The payload does not match the handler's model."""


class SerializationError(PolyqueueError):
    """The value cannot be encoded as JSON."""


class PayloadTooLargeError(SerializationError):
    """The encoded payload is larger than `max_payload_bytes`."""


class MigrationError(PolyqueueError):
    """The database schema could not be migrated."""


class StoreError(PolyqueueError):
    """The job store failed."""


class DatabaseUnavailableError(StoreError):
    """The database cannot be reached."""


class JobNotFoundError(StoreError):
    """No job has that id."""

    def __init__(self, job_id: int) -> None:
        self.job_id = job_id
        super().__init__(f"no job with id {job_id}")


class WorkerLoopError(PolyqueueError):
    """A loop of the worker kept crashing, so the worker stopped."""

    def __init__(self, loop: str, cause: BaseException) -> None:
        self.loop = loop
        self.cause = cause
        super().__init__(
            f"{loop} kept crashing ({type(cause).__name__}: {cause}); the worker stopped so"
            " that its supervisor can start it afresh"
        )


class JobTimeoutError(PolyqueueError):
    """The job did not finish in time."""


class ResultUnavailableError(PolyqueueError):
    """The job has not succeeded, so it has no result."""

    def __init__(self, job_id: int, status: str) -> None:
        self.job_id = job_id
        self.status = status
        super().__init__(f"job {job_id} is {status}: only a succeeded job has a result")


class BrokerError(PolyqueueError):
    """The broker failed."""

    def __init__(self, message: str | None = None, *, broker: str = "") -> None:
        self.broker = broker
        super().__init__(message)


class BrokerUnavailableError(BrokerError):
    """The broker cannot be reached."""


class UnsupportedCapabilityError(BrokerError):
    """The broker does not support this operation."""


class TerminalError(Exception):
    """Raised by a handler to fail its job at once, without retry."""
