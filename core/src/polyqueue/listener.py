"""`Listener`: one LISTEN connection that survives database restarts and black holes."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import TYPE_CHECKING

from polyqueue.backoff import Backoff
from polyqueue.pgconnect import ConnectionOptions

if TYPE_CHECKING:
    from collections.abc import Callable

    import asyncpg

__all__ = ["Listener"]

log = logging.getLogger(__name__)

CHECK_INTERVAL = 5.0
"""Seconds between checks that the LISTEN connection still answers (a connection behind a
black hole looks open and simply stops delivering notifications)."""


class Listener:
    """Calls `callback(channel, payload)` for each notification on its channels.

    A watchdog task keeps the connection: when it drops, stops answering, or reconnecting
    fails in any way, it reconnects with backoff, and then calls `on_reconnect`, because
    notifications sent while it was away are lost: listeners must re-check state.
    """

    def __init__(
        self,
        url: str,
        channels: list[str],
        callback: Callable[[str, str], None],
        on_reconnect: Callable[[], None] = lambda: None,
        *,
        options: ConnectionOptions | None = None,
        check_interval: float = CHECK_INTERVAL,
    ) -> None:
        self._url = url
        self._channels = channels
        self._callback = callback
        self._on_reconnect = on_reconnect
        self._options = options or ConnectionOptions()
        self._check_interval = check_interval
        self._connection: asyncpg.Connection | None = None
        self._lost = asyncio.Event()
        self._watchdog: asyncio.Task[None] | None = None
        self._closed = False

    @property
    def connected(self) -> bool:
        """Whether the LISTEN connection is up right now."""
        return self._connection is not None and not self._connection.is_closed()

    async def start(self) -> None:
        """Connect and LISTEN; raises if the database cannot be reached now."""
        await self._connect()
        self._watchdog = asyncio.get_running_loop().create_task(
            self._keep_connected(), name="polyqueue-listener"
        )

    async def _connect(self) -> None:
        connection = await self._options.connect(self._url)
        try:
            for channel in self._channels:
                await connection.add_listener(channel, self._dispatch)
        except BaseException:
            connection.terminate()
            raise
        connection.add_termination_listener(self._terminated)
        self._connection = connection
        self._lost.clear()

    def _dispatch(self, _conn: object, _pid: int, channel: str, payload: str) -> None:
        try:
            self._callback(channel, payload)
        except Exception:  # a callback's bug must not stop the notifications behind it
            log.exception("LISTEN callback failed on channel %s", channel)

    def _terminated(self, _conn: object) -> None:
        self._lost.set()

    async def _keep_connected(self) -> None:
        """Check the connection every `check_interval` seconds (at once when it drops), and
        reconnect after any failure, for as long as the listener is open."""
        while not self._closed:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._lost.wait(), self._check_interval)
            if self._is_closed():
                return
            if self._lost.is_set() or not await self._answers():
                await self._reconnect()

    def _is_closed(self) -> bool:
        return self._closed

    async def _answers(self) -> bool:
        connection = self._connection
        if connection is None or connection.is_closed():
            return False
        try:
            await connection.fetchval("SELECT 1", timeout=self._options.connect_timeout)
        except Exception as exc:
            log.warning("LISTEN connection stopped answering (%s); reconnecting", exc)
            return False
        return True

    async def _reconnect(self) -> None:
        log.warning("LISTEN connection lost; reconnecting")
        self._drop_connection()
        backoff = Backoff(base=0.05, cap=2.0)
        while not self._closed:
            try:
                await self._connect()
            except Exception as exc:
                log.debug("LISTEN reconnect failed: %s: %s", type(exc).__name__, exc)
                await backoff.sleep()
                continue
            log.info("LISTEN connection restored")
            try:
                self._on_reconnect()
            except Exception:
                log.exception("LISTEN on_reconnect callback failed")
            return

    def _drop_connection(self) -> None:
        connection, self._connection = self._connection, None
        if connection is not None and not connection.is_closed():
            connection.terminate()

    async def close(self) -> None:
        """Stop listening and close the connection."""
        self._closed = True
        self._lost.set()
        if self._watchdog is not None:
            self._watchdog.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._watchdog
            self._watchdog = None
        connection, self._connection = self._connection, None
        if connection is not None:
            try:
                await asyncio.wait_for(connection.close(), timeout=2)
            except Exception:
                connection.terminate()
