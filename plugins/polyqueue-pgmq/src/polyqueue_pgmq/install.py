"""Installing PGMQ: the extension where the server offers it, else the `pgmq` package's SQL."""

from __future__ import annotations

import importlib.util
import logging
from pathlib import Path
from typing import TYPE_CHECKING, Literal

import asyncpg

from polyqueue.exceptions import ConfigurationError, MigrationError
from polyqueue_pgmq.statements import SQL

if TYPE_CHECKING:
    from asyncpg import Connection

__all__ = ["PGMQ_SQL_PACKAGE", "Installed", "install", "packaged_sql", "packaged_version"]

log = logging.getLogger(__name__)

PGMQ_SQL_PACKAGE = "pgmq"
"""The PyPI package whose `pgmq/sql/pgmq.sql` is PGMQ's SQL-only install script."""

Installed = Literal["present", "extension", "sql"]


async def install(connection: Connection) -> Installed:
    """Make sure PGMQ is installed in `connection`'s database; say how it got there.

    `"present"`: it already was (extension or SQL-only). `"extension"`: `CREATE EXTENSION pgmq`
    (the server offers it and this role may create it). `"sql"`: PGMQ's SQL-only schema, from
    the script shipped in the `pgmq` package. Safe to run concurrently (advisory lock) and
    again (it checks first); runs in one transaction (a savepoint inside the caller's).
    """
    try:
        async with connection.transaction():
            await connection.execute(SQL["pgmq_install_lock"])
            state = await connection.fetchrow(SQL["pgmq_state"])
            if state["installed"]:
                return "present"
            if state["available"] and await _create_extension(connection):
                return "extension"
            await connection.execute(packaged_sql())
    except asyncpg.PostgresError as exc:
        raise MigrationError(f"installing PGMQ failed: {exc}") from exc
    log.info("installed the SQL-only PGMQ %s from the pgmq package", packaged_version())
    return "sql"


async def _create_extension(connection: Connection) -> bool:
    """`CREATE EXTENSION pgmq` in a savepoint; False if this role may not."""
    try:
        async with connection.transaction():
            await connection.execute(SQL["pgmq_create_extension"])
    except asyncpg.InsufficientPrivilegeError as exc:
        log.warning("cannot CREATE EXTENSION pgmq (%s); installing the SQL-only PGMQ", exc)
        return False
    log.info("created the pgmq extension")
    return True


def packaged_sql() -> str:
    """PGMQ's install script from the `pgmq` package (read, never imported)."""
    return (_package_dir() / "sql" / "pgmq.sql").read_text(encoding="utf-8")


def packaged_version() -> str:
    """The PGMQ version of that script (`pgmq/sql/VERSION`)."""
    text = (_package_dir() / "sql" / "VERSION").read_text(encoding="utf-8")
    return next((line.strip() for line in text.splitlines() if line.strip()), "unknown")


def _package_dir() -> Path:
    spec = importlib.util.find_spec(PGMQ_SQL_PACKAGE)  # finds it without importing psycopg
    locations = spec.submodule_search_locations if spec is not None else None
    if not locations:
        raise ConfigurationError(
            "the `pgmq` package is not installed: `pip install pgmq` (it ships PGMQ's SQL)"
        )
    return Path(next(iter(locations)))
