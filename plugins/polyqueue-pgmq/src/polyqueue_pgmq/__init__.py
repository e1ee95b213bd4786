"""Polyqueue's `pgmq` broker: job notices in PGMQ queues of PostgreSQL."""

from __future__ import annotations

from polyqueue_pgmq.broker import PgmqBroker
from polyqueue_pgmq.install import install
from polyqueue_pgmq.settings import PgmqBrokerSettings

__all__ = ["PgmqBroker", "PgmqBrokerSettings", "install"]
