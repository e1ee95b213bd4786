"""`Proxy`: a TCP forwarder on loopback whose link the runner breaks on purpose.

One proxy stands between one client process (a worker, the producer) and one server
(PostgreSQL, redis-server, moto). Its mode says what the link does:

- `pass`: bytes flow both ways;
- `pause`: a black hole. Nothing is forwarded and new connections are accepted but not
  connected upstream; the held bytes flow again when the mode goes back to `pass`, as after a
  network partition healed before TCP gave up;
- `drop`: the server looks gone. Every connection is reset and new ones are reset at once;
- `reset()`: every open connection is reset now; the mode is unchanged.

Traffic only ever goes to and from 127.0.0.1.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import struct

from polyqueue.testing.processes import LOOPBACK

__all__ = ["Proxy"]

CHUNK = 64 * 1024
MODES = ("pass", "pause", "drop")


class Proxy:
    """Forwards 127.0.0.1:`port` to 127.0.0.1:`upstream_port`."""

    def __init__(self, upstream_port: int) -> None:
        self.upstream_port = upstream_port
        self.port = 0
        self.mode = "pass"
        self._flowing = asyncio.Event()
        self._flowing.set()
        self._server: asyncio.Server | None = None
        self._links: set[_Link] = set()

    async def start(self) -> None:
        """Listen on a free loopback port (`self.port`)."""
        self._server = await asyncio.start_server(self._accept, LOOPBACK, 0)
        self.port = self._server.sockets[0].getsockname()[1]

    async def close(self) -> None:
        """Stop listening and reset every connection."""
        if self._server is not None:
            self._server.close()
        self.reset()
        if self._server is not None:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(2):
                    await self._server.wait_closed()

    def set_mode(self, mode: str) -> None:
        """`pass`, `pause` or `drop` (see the module docstring)."""
        if mode not in MODES:
            raise ValueError(f"unknown proxy mode {mode!r}")
        self.mode = mode
        if mode == "pause":
            self._flowing.clear()
        else:
            self._flowing.set()
        if mode == "drop":
            self.reset()

    def reset(self) -> None:
        """Reset (RST) every open connection."""
        for link in list(self._links):
            link.abort()

    @property
    def connections(self) -> int:
        return len(self._links)

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self.mode == "drop":
            _abort(writer)
            return
        link = _Link(writer)
        self._links.add(link)
        try:
            await self._flowing.wait()
            if self.mode == "drop":
                return
            try:
                up_reader, up_writer = await asyncio.open_connection(LOOPBACK, self.upstream_port)
            except OSError:
                return  # the server is down: the client sees its connection closed
            link.upstream = up_writer
            await asyncio.gather(
                self._pump(reader, up_writer, link), self._pump(up_reader, writer, link)
            )
        finally:
            link.abort()
            self._links.discard(link)

    async def _pump(
        self, source: asyncio.StreamReader, sink: asyncio.StreamWriter, link: _Link
    ) -> None:
        """Copy `source` to `sink`, holding the bytes while the proxy is paused."""
        try:
            while not link.closed:
                data = await source.read(CHUNK)
                if not data:
                    break
                await self._flowing.wait()
                if link.closed:
                    break
                sink.write(data)
                await sink.drain()
        except (OSError, ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            link.abort()


class _Link:
    """Both sockets of one proxied connection."""

    def __init__(self, downstream: asyncio.StreamWriter) -> None:
        self.downstream = downstream
        self.upstream: asyncio.StreamWriter | None = None
        self.closed = False

    def abort(self) -> None:
        if self.closed:
            return
        self.closed = True
        _abort(self.downstream)
        if self.upstream is not None:
            _abort(self.upstream)


def _abort(writer: asyncio.StreamWriter) -> None:
    """Close with a TCP reset (SO_LINGER 0), as a broken network or a dead peer does."""
    sock = writer.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    writer.transport.abort()
