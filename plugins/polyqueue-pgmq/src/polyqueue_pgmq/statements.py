"""The SQL of `sql/broker.sql`, aimed at one PGMQ queue's tables, and PGMQ queue names."""

from __future__ import annotations

import functools
import re

from polyqueue.exceptions import BrokerError
from polyqueue.sql import load_queries, quote_identifier

__all__ = ["MAX_PGMQ_NAME", "SQL", "pgmq_queue_name", "quote_literal", "statement"]

MAX_PGMQ_NAME = 47  # PGMQ's own limit: its longest table name must fit in 63 characters
_NAME = re.compile(r"^[a-z0-9_]+$")

SQL = {name: q.sql for name, q in load_queries("sql/broker.sql", "pgmq", "polyqueue_pgmq").items()}
"""Every statement of `sql/broker.sql` by block name."""


def pgmq_queue_name(prefix: str, queue: str) -> str:
    """PGMQ queue `<prefix><queue>`; `BrokerError` for a name PGMQ would mangle or refuse."""
    name = prefix + queue
    if not _NAME.match(name) or len(name) > MAX_PGMQ_NAME:
        raise BrokerError(
            f"queue {queue!r} cannot be a PGMQ queue: {name!r} must be lowercase letters, "
            f"digits and _, at most {MAX_PGMQ_NAME} characters with the prefix",
            broker="pgmq",
        )
    return name


@functools.cache
def statement(block: str, pgmq_queue: str) -> str:
    """Block `block` with `{queue_table}`/`{archive_table}` set to `pgmq_queue`'s tables."""
    return (
        SQL[block]
        .replace("{queue_table}", "pgmq." + quote_identifier(f"q_{pgmq_queue}"))
        .replace("{archive_table}", "pgmq." + quote_identifier(f"a_{pgmq_queue}"))
    )


def quote_literal(text: str) -> str:
    """`text` as a SQL string literal (for the settings written into `notice_sender`)."""
    return "'" + text.replace("'", "''") + "'"
