"""Brings a schema up (or down) to date with the numbered migrations, one process at a time."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

import asyncpg

from polyqueue.exceptions import MigrationError
from polyqueue.sql import Migration, load_migrations, load_queries

if TYPE_CHECKING:
    from collections.abc import Sequence

__all__ = ["migrate_down", "migrate_up"]

log = logging.getLogger(__name__)


async def migrate_up(
    connection: asyncpg.Connection, schema: str, migrations: Sequence[Migration] | None = None
) -> list[int]:
    """Apply every migration not yet applied; return the versions applied now (idempotent)."""
    plan = list(migrations) if migrations is not None else load_migrations(schema)
    sql = load_queries("migrate.sql", schema)
    applied_now: list[int] = []
    try:
        async with connection.transaction():
            await connection.execute(sql["migration_lock"].sql, schema)
            await connection.execute(sql["migration_bootstrap"].sql)
            done = {row["version"] for row in await connection.fetch(sql["migration_applied"].sql)}
            for migration in plan:
                if migration.version in done:
                    continue
                log.info("applying migration %04d_%s", migration.version, migration.name)
                await connection.execute(migration.up)
                await connection.execute(
                    sql["migration_record"].sql, migration.version, migration.name
                )
                applied_now.append(migration.version)
    except asyncpg.PostgresError as exc:
        raise MigrationError(f"migrating schema {schema!r} failed: {exc}") from exc
    return applied_now


async def migrate_down(connection: asyncpg.Connection, schema: str, to_version: int = 0) -> None:
    """Undo applied migrations newer than `to_version`, newest first."""
    plan = {m.version: m for m in load_migrations(schema)}
    sql = load_queries("migrate.sql", schema)
    try:
        async with connection.transaction():
            await connection.execute(sql["migration_lock"].sql, schema)
            await connection.execute(sql["migration_bootstrap"].sql)
            done = [row["version"] for row in await connection.fetch(sql["migration_applied"].sql)]
            for version in sorted(done, reverse=True):
                if version <= to_version:
                    break
                await connection.execute(plan[version].down)
                await connection.execute(sql["migration_forget"].sql, version)
    except asyncpg.PostgresError as exc:
        raise MigrationError(f"reverting schema {schema!r} failed: {exc}") from exc
