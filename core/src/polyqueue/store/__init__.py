"""The job store: PostgreSQL as the truth of every job, worker and cron schedule.

- `jobstore`: `JobStore`, the pool and one method per named block of `sql/queries.sql`;
- `maintenance`, `inspection`: its housekeeping and read-only query methods;
- `records`: the small types its methods take and return;
- `errors`: what counts as a lost connection, and how asyncpg errors become Polyqueue's.
"""

from __future__ import annotations

from polyqueue.store.errors import CONNECTION_ERRORS, connection_lost, translate_errors
from polyqueue.store.jobstore import JobStore, describe_url
from polyqueue.store.records import InsertedJob, SqlExecutor, WorkerRegistration

__all__ = [
    "CONNECTION_ERRORS",
    "InsertedJob",
    "JobStore",
    "SqlExecutor",
    "WorkerRegistration",
    "connection_lost",
    "describe_url",
    "translate_errors",
]
