"""Brings a schema up (or down) to date with the numbered migrations, one process at a time."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

import asyncpg

from polyqueue.exceptions import MigrationError
from polyqueue.sql import CORE_LINE, MigrationLine, load_queries

if TYPE_CHECKING:
    from collections.abc import Sequence

    from polyqueue.sql import Migration

__all__ = ["migrate_all", "migrate_down", "migrate_up", "migration_labels"]

log = logging.getLogger(__name__)


async def migrate_up(
    connection: asyncpg.Connection, schema: str, line: MigrationLine = CORE_LINE
) -> list[int]:
    """Apply every migration of `line` not yet applied; return the versions applied now."""
    plan: Sequence[Migration] = line.migrations(schema)
    sql = load_queries("migrate.sql", schema)
    applied_now: list[int] = []
    try:
        async with connection.transaction():
            await connection.execute(sql["migration_lock"].sql, schema)
            await connection.execute(sql["migration_bootstrap"].sql)
            applied = await connection.fetch(sql["migration_applied"].sql, line.name)
            done = {row["version"] for row in applied}
            for migration in plan:
                if migration.version in done:
                    continue
                log.info(
                    "applying %s migration %04d_%s", line.name, migration.version, migration.name
                )
                await connection.execute(migration.up)
                await connection.execute(
                    sql["migration_record"].sql, line.name, migration.version, migration.name
                )
                applied_now.append(migration.version)
    except asyncpg.PostgresError as exc:
        raise MigrationError(f"migrating schema {schema!r} failed: {exc}") from exc
    return applied_now


async def migrate_down(
    connection: asyncpg.Connection,
    schema: str,
    to_version: int = 0,
    line: MigrationLine = CORE_LINE,
) -> None:
    """Undo applied migrations of `line` newer than `to_version`, newest first."""
    plan = {m.version: m for m in line.migrations(schema)}
    sql = load_queries("migrate.sql", schema)
    try:
        async with connection.transaction():
            await connection.execute(sql["migration_lock"].sql, schema)
            await connection.execute(sql["migration_bootstrap"].sql)
            applied = await connection.fetch(sql["migration_applied"].sql, line.name)
            for version in sorted((row["version"] for row in applied), reverse=True):
                if version <= to_version:
                    break
                await connection.execute(plan[version].down)
                await connection.execute(sql["migration_forget"].sql, line.name, version)
    except asyncpg.PostgresError as exc:
        raise MigrationError(f"reverting schema {schema!r} failed: {exc}") from exc


async def migrate_all(
    connection: asyncpg.Connection, schema: str, lines: Sequence[MigrationLine] = ()
) -> dict[str, list[int]]:
    """Apply the core line, then each plugin line; return the versions applied per line."""
    return {line.name: await migrate_up(connection, schema, line) for line in (CORE_LINE, *lines)}


def migration_labels(
    schema: str, applied: dict[str, list[int]], lines: Sequence[MigrationLine] = ()
) -> list[str]:
    """`0001_initial` for the core's versions, `<line>:0001_name` for a plugin's."""
    labels = []
    for line in (CORE_LINE, *lines):
        names = {m.version: f"{m.version:04d}_{m.name}" for m in line.migrations(schema)}
        prefix = "" if line is CORE_LINE else f"{line.name}:"
        labels += [prefix + names[version] for version in applied.get(line.name, [])]
    return labels
