"""Polyqueue: an async-first, typed job queue with PostgreSQL as the source of truth.

The names below are imported on first use (PEP 562), so `import polyqueue` and the
`polyqueue` command line start fast: `polyqueue --help` never loads the app, asyncpg or
pydantic.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from polyqueue.app import Polyqueue
    from polyqueue.broker import Broker, BrokerEnvironment, Capabilities, Delivery, Message
    from polyqueue.context import JobContext
    from polyqueue.cron import CronTick
    from polyqueue.exceptions import (
        BrokerError,
        BrokerUnavailableError,
        ConfigurationError,
        DatabaseUnavailableError,
        DependencyCycleError,
        DependencyFailedError,
        DependencyNotFoundError,
        HandlerNotFoundError,
        InvalidPayloadError,
        JobNotFoundError,
        JobTimeoutError,
        MigrationError,
        PayloadTooLargeError,
        PolyqueueError,
        ResultUnavailableError,
        Retry,
        SerializationError,
        Snooze,
        StoreError,
        TerminalError,
        UnknownPluginError,
        UnsupportedCapabilityError,
        WorkerLoopError,
        WorkflowError,
        WorkflowNotFoundError,
    )
    from polyqueue.executor import RetryPolicy
    from polyqueue.hookspecs import hookimpl
    from polyqueue.job import Job, JobError, JobId, JobIds
    from polyqueue.runner import main
    from polyqueue.settings import PolyqueueSettings
    from polyqueue.status import JobStatus
    from polyqueue.workflow import EnqueuedWorkflow, Node, OnFailure, Workflow
    from polyqueue.workflow_state import DependencyOutcome, WorkflowInfo, WorkflowNode

__all__ = [
    "Broker",
    "BrokerEnvironment",
    "BrokerError",
    "BrokerUnavailableError",
    "Capabilities",
    "ConfigurationError",
    "CronTick",
    "DatabaseUnavailableError",
    "Delivery",
    "DependencyCycleError",
    "DependencyFailedError",
    "DependencyNotFoundError",
    "DependencyOutcome",
    "EnqueuedWorkflow",
    "HandlerNotFoundError",
    "InvalidPayloadError",
    "Job",
    "JobContext",
    "JobError",
    "JobId",
    "JobIds",
    "JobNotFoundError",
    "JobStatus",
    "JobTimeoutError",
    "Message",
    "MigrationError",
    "Node",
    "OnFailure",
    "PayloadTooLargeError",
    "Polyqueue",
    "PolyqueueError",
    "PolyqueueSettings",
    "ResultUnavailableError",
    "Retry",
    "RetryPolicy",
    "SerializationError",
    "Snooze",
    "StoreError",
    "TerminalError",
    "UnknownPluginError",
    "UnsupportedCapabilityError",
    "WorkerLoopError",
    "Workflow",
    "WorkflowError",
    "WorkflowInfo",
    "WorkflowNode",
    "WorkflowNotFoundError",
    "hookimpl",
    "main",
]


_EXCEPTIONS = (
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
)
_HOMES: dict[str, str] = {
    "Polyqueue": "polyqueue.app",
    "Broker": "polyqueue.broker",
    "BrokerEnvironment": "polyqueue.broker",
    "Capabilities": "polyqueue.broker",
    "Delivery": "polyqueue.broker",
    "Message": "polyqueue.broker",
    "JobContext": "polyqueue.context",
    "CronTick": "polyqueue.cron",
    "RetryPolicy": "polyqueue.executor",
    "hookimpl": "polyqueue.hookspecs",
    "Job": "polyqueue.job",
    "JobError": "polyqueue.job",
    "JobId": "polyqueue.job",
    "JobIds": "polyqueue.job",
    "main": "polyqueue.runner",
    "PolyqueueSettings": "polyqueue.settings",
    "JobStatus": "polyqueue.status",
    "EnqueuedWorkflow": "polyqueue.workflow",
    "Node": "polyqueue.workflow",
    "OnFailure": "polyqueue.workflow",
    "Workflow": "polyqueue.workflow",
    "DependencyOutcome": "polyqueue.workflow_state",
    "WorkflowInfo": "polyqueue.workflow_state",
    "WorkflowNode": "polyqueue.workflow_state",
    **dict.fromkeys(_EXCEPTIONS, "polyqueue.exceptions"),
}
"""Where each public name lives: imported from there on first use."""


def __getattr__(name: str) -> Any:
    """Import a public name on first use (PEP 562) and keep it in the module."""
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module 'polyqueue' has no attribute {name!r}")
    value = getattr(importlib.import_module(home), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
