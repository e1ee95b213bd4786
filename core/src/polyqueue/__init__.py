"""Polyqueue: an async-first, typed job queue with PostgreSQL as the source of truth."""

from __future__ import annotations

from polyqueue.app import Polyqueue
from polyqueue.broker import Broker, BrokerEnvironment, Capabilities, Delivery, Message
from polyqueue.context import JobContext
from polyqueue.cron import CronTick
from polyqueue.exceptions import (
    BrokerError,
    BrokerUnavailableError,
    ConfigurationError,
    DatabaseUnavailableError,
    HandlerNotFoundError,
    InvalidPayloadError,
    JobNotFoundError,
    JobTimeoutError,
    MigrationError,
    PayloadTooLargeError,
    PolyqueueError,
    ResultUnavailableError,
    SerializationError,
    StoreError,
    TerminalError,
    UnknownPluginError,
    UnsupportedCapabilityError,
    WorkerLoopError,
)
from polyqueue.hookspecs import hookimpl
from polyqueue.job import Job, JobError
from polyqueue.runner import main
from polyqueue.settings import PolyqueueSettings
from polyqueue.status import JobStatus

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
    "HandlerNotFoundError",
    "InvalidPayloadError",
    "Job",
    "JobContext",
    "JobError",
    "JobNotFoundError",
    "JobStatus",
    "JobTimeoutError",
    "Message",
    "MigrationError",
    "PayloadTooLargeError",
    "Polyqueue",
    "PolyqueueError",
    "PolyqueueSettings",
    "ResultUnavailableError",
    "SerializationError",
    "StoreError",
    "TerminalError",
    "UnknownPluginError",
    "UnsupportedCapabilityError",
    "WorkerLoopError",
    "hookimpl",
    "main",
]
