"""`FaultProxy`: a TCP forwarder on loopback whose link a test breaks on purpose.

It stands between clients (a worker, a producer) and one server (PostgreSQL, redis-server,
moto). Its mode says what the link does:

- `pass`: bytes flow both ways;
- `pause`: a black hole. Nothing is forwarded and new connections are accepted but not
  connected upstream; the held bytes flow again when the mode goes back to `pass`, as after
  a network partition that healed before TCP gave up;
- `mute`: requests reach the server, its replies are thrown away: a statement commits and
  its client never hears of it (the server crashing between a commit and its reply);
- `drop`: the server looks gone. Every connection is reset and new ones are reset at once.

`reset()` resets every open connection without changing the mode. Traffic only ever goes to
and from 127.0.0.1.

`delay` (seconds, default 0) holds every chunk that long in each direction before passing it
on, without limiting how many are on their way: a slow network link, as to a cloud database
a hop away (`bench/latency.py` measures Polyqueue through it).
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import struct
from typing import Literal, Self

from polyqueue.testing.processes import LOOPBACK

__all__ = ["FaultProxy", "ProxyMode"]

ProxyMode = Literal["pass", "pause", "mute", "drop"]
CHUNK = 64 * 1024


class FaultProxy:
    """Forwards 127.0.0.1:`port` (once started) to 127.0.0.1:`upstream_port`."""

    def __init__(self, upstream_port: int, *, delay: float = 0.0) -> None:
        if delay < 0:
            raise ValueError(f"proxy delay must be >= 0 seconds, not {delay!r}")
        self.upstream_port = upstream_port
        self.delay = delay
        self.port = 0
        self.mode: ProxyMode = "pass"
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

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    def url_for(self, url: str) -> str:
        """`url` (a server URL on the upstream port) pointed at the proxy instead."""
        return url.replace(f":{self.upstream_port}/", f":{self.port}/", 1)

    def set_mode(self, mode: ProxyMode) -> None:
        """Change what the link does (see the module docstring)."""
        if mode not in ("pass", "pause", "mute", "drop"):
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
        """Connections open through the proxy right now."""
        return len(self._links)

    def _dropping(self) -> bool:
        return self.mode == "drop"

    def _muted(self) -> bool:
        return self.mode == "mute"

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self._dropping():
            _abort(writer)
            return
        link = _Link(writer)
        self._links.add(link)
        try:
            await self._flowing.wait()
            if self._dropping():
                return
            try:
                up_reader, up_writer = await asyncio.open_connection(LOOPBACK, self.upstream_port)
            except OSError:
                return  # the server is down: the client sees its connection closed
            link.upstream = up_writer
            await asyncio.gather(
                self._pump(reader, up_writer, link, replies=False),
                self._pump(up_reader, writer, link, replies=True),
            )
        finally:
            link.abort()
            self._links.discard(link)

    async def _pump(
        self,
        source: asyncio.StreamReader,
        sink: asyncio.StreamWriter,
        link: _Link,
        *,
        replies: bool,
    ) -> None:
        """Copy `source` to `sink`, holding bytes while paused, dropping replies while muted."""
        line = _DelayLine(sink, self.delay) if self.delay else None
        try:
            while link.is_open():
                data = await source.read(CHUNK)
                if not data:
                    break
                await self._flowing.wait()
                if not link.is_open():
                    break
                if replies and self._muted():
                    continue
                if line is not None:
                    line.send(data)
                    continue
                sink.write(data)
                await sink.drain()
            if line is not None:
                await line.flush()
        except (OSError, asyncio.IncompleteReadError):
            pass
        finally:
            if line is not None:
                line.close()
            link.abort()


class _DelayLine:
    """Writes each chunk to `sink` `delay` seconds after it was sent, in order."""

    def __init__(self, sink: asyncio.StreamWriter, delay: float) -> None:
        self._sink = sink
        self._delay = delay
        self._loop = asyncio.get_running_loop()
        self._queue: asyncio.Queue[tuple[float, bytes]] = asyncio.Queue()
        self._task = asyncio.create_task(self._run())

    def send(self, data: bytes) -> None:
        self._queue.put_nowait((self._loop.time() + self._delay, data))

    async def flush(self) -> None:
        """Wait until every chunk sent so far is written (or the sink failed)."""
        done = asyncio.ensure_future(self._queue.join())
        await asyncio.wait([done, self._task], return_when=asyncio.FIRST_COMPLETED)
        done.cancel()

    def close(self) -> None:
        self._task.cancel()

    async def _run(self) -> None:
        with contextlib.suppress(OSError):
            while True:
                due, data = await self._queue.get()
                wait = due - self._loop.time()
                if wait > 0:
                    await asyncio.sleep(wait)
                self._sink.write(data)
                self._queue.task_done()
                await self._sink.drain()


class _Link:
    """Both sockets of one proxied connection."""

    def __init__(self, downstream: asyncio.StreamWriter) -> None:
        self.downstream = downstream
        self.upstream: asyncio.StreamWriter | None = None
        self.closed = False

    def is_open(self) -> bool:
        return not self.closed

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
