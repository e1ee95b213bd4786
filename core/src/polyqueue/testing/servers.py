"""Real servers for tests: PostgreSQL (embedded or POLYQUEUE_TEST_DATABASE_URL)."""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import TYPE_CHECKING
from urllib.parse import quote, urlsplit, urlunsplit

import asyncpg

from polyqueue.embedded import EmbeddedPostgres

if TYPE_CHECKING:
    from pathlib import Path

__all__ = [
    "PostgresServer",
    "create_database",
    "drop_database",
    "start_postgres_server",
    "stop_postgres_server",
]

TEST_DATABASE_URL_ENV = "POLYQUEUE_TEST_DATABASE_URL"


@dataclass
class PostgresServer:
    """A running PostgreSQL server for tests: embedded, or external from the environment."""

    admin_url: str
    """URL of the database to connect to for CREATE/DROP DATABASE (`postgres` when embedded)."""
    embedded: EmbeddedPostgres | None = None

    @property
    def can_restart(self) -> bool:
        """Whether `restart()` works: only for a server we started."""
        return self.embedded is not None

    def url_for(self, database: str) -> str:
        """The URL of `database` on this server (same user, host, port and query)."""
        parts = urlsplit(self.admin_url)
        return urlunsplit(parts._replace(path="/" + quote(database, safe="")))

    def restart(self) -> None:
        """Stop the server and start it again on the same port; data is kept."""
        if self.embedded is None:
            raise RuntimeError("cannot restart an external server")
        self.embedded.restart()


def start_postgres_server(base_dir: Path) -> PostgresServer:
    """$POLYQUEUE_TEST_DATABASE_URL if set, else an embedded server in `base_dir / "pg"`.

    The embedded server runs with fsync off: fast, and nothing in it needs to survive a crash.
    """
    url = os.environ.get(TEST_DATABASE_URL_ENV)
    if url:
        return PostgresServer(admin_url=url)
    embedded = EmbeddedPostgres(base_dir / "pg", fsync=False)
    return PostgresServer(admin_url=embedded.start(), embedded=embedded)


def stop_postgres_server(server: PostgresServer) -> None:
    """Stop the server if we started it; an external server is left alone."""
    if server.embedded is not None:
        server.embedded.stop()


async def create_database(server: PostgresServer, name: str, template: str | None = None) -> str:
    """Create database `name` (a copy of `template` if given) and return its URL."""
    sql = f"CREATE DATABASE {_quote_ident(name)}"
    if template is not None:
        sql += f" TEMPLATE {_quote_ident(template)}"
    await _execute(server, sql)
    return server.url_for(name)


async def drop_database(server: PostgresServer, name: str) -> None:
    """Drop database `name` if it exists, closing any connections still open to it."""
    await _execute(server, f"DROP DATABASE IF EXISTS {_quote_ident(name)} WITH (FORCE)")


async def _execute(server: PostgresServer, sql: str) -> None:
    connection = await asyncpg.connect(server.admin_url)
    try:
        await connection.execute(sql)
    finally:
        await connection.close()


def _quote_ident(name: str) -> str:
    """Quote an SQL identifier (what PostgreSQL's quote_ident does)."""
    return '"' + name.replace('"', '""') + '"'
