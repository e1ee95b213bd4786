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
│   ├── JobNotFoundError            no job with that id
│   └── WorkflowNotFoundError       no workflow with that id
├── WorkerLoopError                 a worker's loop kept crashing: the worker stopped
├── JobTimeoutError                 `wait_for` gave up before the job finished
├── ResultUnavailableError          the job has no result: it has not succeeded
│   └── DependencyFailedError       `ctx.results_of`: a dependency did not succeed (also
│                                   a TerminalError: the job fails without retry)
├── WorkflowError                   a workflow or `depends_on` that cannot be enqueued
│   ├── DependencyCycleError        nodes that wait for each other (field: nodes)
│   └── DependencyNotFoundError     `depends_on` names jobs that do not exist (field: job_ids)
└── BrokerError                     a broker failed (field: broker)
    ├── BrokerUnavailableError      the broker cannot be reached (retryable)
    └── UnsupportedCapabilityError  the broker does not offer what was asked

TerminalError                       raised by handlers: fail now, never retry
Snooze                              raised by handlers: run again later, no attempt used
Retry                               raised by handlers: a failed attempt, retried after `delay`
```

`TerminalError`, `Snooze` and `Retry` live outside `PolyqueueError`: users raise them, the
library does not.
Errors from asyncpg or a broker SDK are chained (`raise ... from exc`) at the boundary.
"""

from __future__ import annotations

import math
from datetime import timedelta
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Sequence

__all__ = [
    "BrokerError",
    "BrokerUnavailableError",
    "ConfigurationError",
    "DatabaseUnavailableError",
    "DependencyCycleError",
    "DependencyFailedError",
    "DependencyNotFoundError",
    "HandlerNotFoundError",
    "InvalidPayloadError",
    "JobNotFoundError",
    "JobTimeoutError",
    "MigrationError",
    "PayloadTooLargeError",
    "PolyqueueError",
    "ResultUnavailableError",
    "Retry",
    "SerializationError",
    "Snooze",
    "StoreError",
    "TerminalError",
    "UnknownPluginError",
    "UnsupportedCapabilityError",
    "WorkerLoopError",
    "WorkflowError",
    "WorkflowNotFoundError",
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


class WorkflowNotFoundError(StoreError):
    """No workflow has that id."""

    def __init__(self, workflow_id: int) -> None:
        self.workflow_id = workflow_id
        super().__init__(f"no workflow with id {workflow_id}")


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


class WorkflowError(PolyqueueError):
    """The workflow cannot be enqueued."""


class DependencyCycleError(WorkflowError):
    """Jobs of a workflow wait for each other in a cycle, so none of them could ever start."""

    def __init__(self, nodes: Sequence[str]) -> None:
        self.nodes = list(nodes)
        super().__init__(
            "the workflow's dependencies form a cycle, so none of these nodes could ever"
            f" start: {', '.join(self.nodes)}"
        )


class DependencyNotFoundError(WorkflowError):
    """`depends_on` names jobs that do not exist (never enqueued, or pruned)."""

    def __init__(self, job_ids: Sequence[int]) -> None:
        self.job_ids = sorted(job_ids)
        super().__init__(
            f"depends_on names jobs that do not exist: {', '.join(map(str, self.job_ids))}"
            " (never enqueued, or pruned after they finished); nothing was enqueued"
        )


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


class DependencyFailedError(ResultUnavailableError, TerminalError):
    """A dependency whose result was asked for did not succeed. Raised in a handler, it fails
    the job at once (a `TerminalError` too): no retry can change a finished dependency."""

    def __init__(self, job_id: int, status: str, dependent: int) -> None:
        self.dependent = dependent
        super().__init__(job_id, status)
        self.args = (
            (
                f"job {dependent} asked for the result of its dependency, job {job_id}, which is"
                f" {status}: only a succeeded job has a result (read `ctx.dependencies()` to see"
                " every dependency's outcome)"
            ),
        )


def _seconds(delay: float | timedelta, what: str) -> float:
    """`delay` in seconds; `ValueError` unless it is a finite number of seconds >= 0."""
    seconds = delay.total_seconds() if isinstance(delay, timedelta) else float(delay)
    if not (math.isfinite(seconds) and seconds >= 0):
        raise ValueError(f"{what} must be a finite number of seconds >= 0, not {delay!r}")
    return seconds


class Snooze(Exception):  # noqa: N818  (a signal, like StopIteration, not an error)
    """Raised by a handler to run its job again after `delay`, without using an attempt.

    The job goes back to `scheduled`, due `delay` (seconds or a `timedelta`) from now. The
    attempt budget is untouched however often a job snoozes: a handler that always snoozes
    runs forever, so cap it yourself if it must end (`ctx.attempt` grows with every run).
    """

    def __init__(self, delay: float | timedelta) -> None:
        self.delay = _seconds(delay, "a snooze's delay")
        super().__init__(f"snoozed for {self.delay:g}s")


class Retry(Exception):  # noqa: N818  (a signal, like StopIteration, not an error)
    """Raised by a handler to fail its attempt and be retried after exactly `delay`.

    The attempt counts. With attempts left the job runs again `delay` (seconds or a
    `timedelta`) from now; `delay=None` uses the handler's backoff. With none left the job
    fails like any retryable error, with error type `Retry` and `reason` as its message.
    """

    def __init__(self, delay: float | timedelta | None = None, reason: str | None = None) -> None:
        self.delay = None if delay is None else _seconds(delay, "a retry's delay")
        self.reason = reason
        super().__init__(reason or "the handler asked for a retry")
