"""Throwaway databases, one per measurement, and the server's version and settings."""

from __future__ import annotations

import contextlib
from typing import TYPE_CHECKING
from urllib.parse import urlsplit, urlunsplit

import asyncpg

import queries

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

__all__ = ["fresh_database", "server_info"]


async def server_info(admin_url: str) -> dict[str, str]:
    """Version, fsync and synchronous_commit of the server."""
    connection = await asyncpg.connect(admin_url)
    try:
        row = await connection.fetchrow(queries.load()["server_info"])
    finally:
        await connection.close()
    return dict(row)


@contextlib.asynccontextmanager
async def fresh_database(admin_url: str, name: str) -> AsyncIterator[str]:
    """Create database `name` (dropping a leftover first); yield its URL; drop it after."""
    sql = queries.load(database=name)
    connection = await asyncpg.connect(admin_url)
    try:
        await connection.execute(sql["database_drop"])
        await connection.execute(sql["database_create"])
        yield urlunsplit(urlsplit(admin_url)._replace(path=f"/{name}"))
    finally:
        await connection.execute(sql["database_drop"])
        await connection.close()
