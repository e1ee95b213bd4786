"""How Polyqueue connects to PostgreSQL: timeouts, TCP keepalives and session settings.

Every pool and connection (the job store, the built-in broker, LISTEN connections, the PGMQ
plugin) is opened with the same `ConnectionOptions`, so a black-holed connection fails after
`statement_timeout` or the keepalive probes instead of the kernel's 15-minute retransmit
timeout, and no loop can hang on it.
"""

from __future__ import annotations

import logging
import socket
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import asyncpg

if TYPE_CHECKING:
    from asyncpg import Connection

    from polyqueue.settings import PolyqueueSettings

__all__ = ["ConnectionOptions", "keep_session"]

log = logging.getLogger(__name__)

CLIENT_WAIT_MARGIN = 2.0
"""Seconds the client waits beyond `statement_timeout`, so the server's own cancel (a clear
error on a working connection) normally comes first, and the client's only on a dead one."""


async def keep_session(_connection: Connection) -> None:
    """Pool reset that skips asyncpg's `RESET ALL; UNLISTEN *; ...` round trip on every
    release (asyncpg still rolls back an open transaction first). Polyqueue keeps no session
    state on pooled connections (its settings are `SET LOCAL`, its locks transaction-scoped),
    so a release costs nothing; code borrowing a pooled connection must not leave session
    state behind either."""


@dataclass(frozen=True, slots=True)
class ConnectionOptions:
    """The timeouts and keepalives of every database connection Polyqueue opens."""

    connect_timeout: float = 10.0
    statement_timeout: float | None = 30.0
    keepalive: float = 10.0

    @classmethod
    def from_settings(cls, settings: PolyqueueSettings) -> ConnectionOptions:
        """The options the settings ask for."""
        return cls(
            connect_timeout=settings.connect_timeout,
            statement_timeout=settings.statement_timeout,
            keepalive=settings.tcp_keepalive_seconds,
        )

    @property
    def command_timeout(self) -> float | None:
        """The client's wait for any one statement (asyncpg's `command_timeout`)."""
        if self.statement_timeout is None:
            return None
        return self.statement_timeout + CLIENT_WAIT_MARGIN

    def server_settings(self, *, wait_for_flush: bool = True) -> dict[str, str]:
        """Session settings sent at connect: generic plans, the statement timeout, and the
        server's own keepalives (so it notices a vanished client and frees its locks).

        With `wait_for_flush=False` a commit returns before its WAL reaches the disk
        (`synchronous_commit = off`): only for connections whose every write is redone if a
        server crash loses it, the claims (see docs/decisions.md, "Claims do not wait for the
        disk"). The WAL is flushed in order, so anything committed later and waited for
        (an outcome) makes the claims before it durable too."""
        idle, interval, count = self._probes()
        settings = {
            # Every statement of the store is prepared once per connection and run with one
            # plan: short OLTP statements on indexed columns, whose best plan does not depend
            # on the values (planning `unnest` parameters afresh cost more than running them).
            "plan_cache_mode": "force_generic_plan",
            "tcp_keepalives_idle": str(idle),
            "tcp_keepalives_interval": str(interval),
            "tcp_keepalives_count": str(count),
            "tcp_user_timeout": str(self._user_timeout_ms()),
        }
        if self.statement_timeout is not None:
            settings["statement_timeout"] = str(int(self.statement_timeout * 1000))
        if not wait_for_flush:
            settings["synchronous_commit"] = "off"
        return settings

    def pool_arguments(self, *, wait_for_flush: bool = True) -> dict[str, Any]:
        """Keyword arguments of `asyncpg.create_pool` (besides the URL and sizes);
        `wait_for_flush` as for `server_settings`."""
        return {
            "timeout": self.connect_timeout,
            "command_timeout": self.command_timeout,
            "reset": keep_session,
            "server_settings": self.server_settings(wait_for_flush=wait_for_flush),
            "init": self.on_connect,
        }

    async def connect(self, url: str) -> Connection:
        """One connection outside any pool (LISTEN), with the same options."""
        connection: Connection = await asyncpg.connect(
            url,
            timeout=self.connect_timeout,
            command_timeout=self.command_timeout,
            server_settings=self.server_settings(),
        )
        await self.on_connect(connection)
        return connection

    async def on_connect(self, connection: Connection) -> None:
        """Turn on the client's TCP keepalives (asyncpg has no parameter for them)."""
        transport = getattr(connection, "_transport", None)
        sock = transport.get_extra_info("socket") if transport is not None else None
        if sock is None or sock.family not in (socket.AF_INET, socket.AF_INET6):
            return  # a Unix socket: nothing in between can black-hole it
        idle, interval, count = self._probes()
        user_timeout = self._user_timeout_ms()
        options = [
            (socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1),
            (socket.IPPROTO_TCP, getattr(socket, "TCP_KEEPIDLE", None), idle),
            (socket.IPPROTO_TCP, getattr(socket, "TCP_KEEPINTVL", None), interval),
            (socket.IPPROTO_TCP, getattr(socket, "TCP_KEEPCNT", None), count),
            (socket.IPPROTO_TCP, getattr(socket, "TCP_USER_TIMEOUT", None), user_timeout),
        ]
        for level, option, value in options:
            if option is None:
                continue  # not on this platform
            try:
                sock.setsockopt(level, option, value)
            except OSError as exc:  # pragma: no cover - platform specific
                log.debug("cannot set socket option %s: %s", option, exc)

    def _probes(self) -> tuple[int, int, int]:
        """Keepalive idle seconds, seconds between probes, and probes before giving up."""
        idle = max(1, round(self.keepalive))
        return idle, max(1, round(self.keepalive / 3)), 3

    def _user_timeout_ms(self) -> int:
        """Unacknowledged data is given up on after about twice the keepalive time."""
        idle, interval, count = self._probes()
        return (idle + interval * count) * 1000
