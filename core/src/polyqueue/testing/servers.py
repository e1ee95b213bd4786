"""Real servers for tests: PostgreSQL (embedded or POLYQUEUE_TEST_DATABASE_URL)."""

from __future__ import annotations

import asyncio
import contextlib
import os
from dataclasses import dataclass
from typing import TYPE_CHECKING, Self
from urllib.parse import quote, urlsplit, urlunsplit

import asyncpg

from polyqueue.embedded import EmbeddedPostgres
from polyqueue.testing.proxy import FaultProxy

if TYPE_CHECKING:
    from collections.abc import AsyncIterator
    from pathlib import Path

__all__ = [
    "PostgresOutage",
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


class PostgresOutage:
    """Takes a test PostgreSQL down for a block, for clients connected through `url_for`.

    An embedded server is really stopped (a `fast` shutdown: every session ends) and started
    again on the same port when the block exits, its data kept. An external server is not
    ours to stop: a `FaultProxy` in front of it drops every connection instead. Use it as
    `async with PostgresOutage(server) as outage:` so that the proxy, if any, is closed.
    """

    def __init__(self, server: PostgresServer) -> None:
        self.server = server
        self.proxy: FaultProxy | None = None

    @staticmethod
    def possible(server: PostgresServer) -> bool:
        """Whether an outage can be made: an embedded server, or an external one on loopback
        (the proxy only forwards to 127.0.0.1)."""
        host = urlsplit(server.admin_url).hostname
        return server.can_restart or host in {"127.0.0.1", "localhost"}

    async def __aenter__(self) -> Self:
        if not self.possible(self.server):
            raise RuntimeError(f"cannot take {self.server.admin_url} down: not on loopback")
        if not self.server.can_restart:
            port = urlsplit(self.server.admin_url).port or 5432
            self.proxy = FaultProxy(port)
            await self.proxy.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        if self.proxy is not None:
            await self.proxy.close()

    @property
    def restarts(self) -> bool:
        """Whether `down()` really stops the server (else the proxy drops connections)."""
        return self.proxy is None

    def url_for(self, url: str) -> str:
        """`url` (a database on this server) as clients must use it: through the proxy if any."""
        if self.proxy is None:
            return url
        parts = urlsplit(url)
        netloc = parts.netloc.rsplit(":", 1)[0] if parts.port else parts.netloc
        return urlunsplit(parts._replace(netloc=f"{netloc}:{self.proxy.port}"))

    @contextlib.asynccontextmanager
    async def down(self) -> AsyncIterator[None]:
        """The server unreachable inside the block, accepting connections again after it."""
        if self.proxy is not None:
            self.proxy.set_mode("drop")
            try:
                yield
            finally:
                self.proxy.set_mode("pass")
            return
        embedded = self.server.embedded
        if embedded is None:  # pragma: no cover  (can_restart said otherwise in __aenter__)
            raise RuntimeError("cannot stop an external server")
        port = embedded.live_port
        await asyncio.to_thread(embedded.stop, force=True)
        try:
            yield
        finally:
            await asyncio.to_thread(embedded._start, port)  # noqa: SLF001  (same port, like restart())


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
