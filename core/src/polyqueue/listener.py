"""`Listener`: one LISTEN connection that survives database restarts."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import TYPE_CHECKING

import asyncpg

from polyqueue.backoff import Backoff
from polyqueue.store import CONNECTION_ERRORS

if TYPE_CHECKING:
    from collections.abc import Callable

__all__ = ["Listener"]

log = logging.getLogger(__name__)


class Listener:
    """Calls `callback(channel, payload)` for each notification on its channels.

    When the connection drops it reconnects with backoff and then calls `on_reconnect`,
    because notifications sent while it was down are lost: listeners must re-check state.
    """

    def __init__(
        self,
        url: str,
        channels: list[str],
        callback: Callable[[str, str], None],
        on_reconnect: Callable[[], None] = lambda: None,
    ) -> None:
        self._url = url
        self._channels = channels
        self._callback = callback
        self._on_reconnect = on_reconnect
        self._connection: asyncpg.Connection | None = None
        self._reconnecting: asyncio.Task[None] | None = None
        self._closed = False

    async def start(self) -> None:
        """Connect and LISTEN; raises if the database cannot be reached now."""
        await self._connect()

    async def _connect(self) -> None:
        connection = await asyncpg.connect(self._url, timeout=10)
        for channel in self._channels:
            await connection.add_listener(channel, self._dispatch)
        connection.add_termination_listener(self._terminated)
        self._connection = connection

    def _dispatch(self, _conn: object, _pid: int, channel: str, payload: str) -> None:
        self._callback(channel, payload)

    def _terminated(self, _conn: object) -> None:
        if not self._closed and self._reconnecting is None:
            log.warning("LISTEN connection lost; reconnecting")
            self._reconnecting = asyncio.get_running_loop().create_task(self._reconnect())

    async def _reconnect(self) -> None:
        backoff = Backoff(base=0.05, cap=2.0)
        while not self._closed:
            try:
                await self._connect()
            except (*CONNECTION_ERRORS, asyncpg.PostgresError) as exc:
                log.debug("LISTEN reconnect failed: %s", exc)
                await backoff.sleep()
            else:
                log.info("LISTEN connection restored")
                self._reconnecting = None
                self._on_reconnect()
                return

    async def close(self) -> None:
        """Stop listening and close the connection."""
        self._closed = True
        if self._reconnecting is not None:
            self._reconnecting.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._reconnecting
        if self._connection is not None:
            with contextlib.suppress(*CONNECTION_ERRORS, asyncpg.PostgresError):
                await asyncio.wait_for(self._connection.close(), timeout=2)
            self._connection = None
