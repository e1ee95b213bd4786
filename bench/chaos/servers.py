"""The servers of a chaos run, each one the runner can stop, crash and start again.

PostgreSQL is embedded (fsync on, as in production: a crash must not lose a commit), on a
fixed port so a restart keeps it. redis-server runs without persistence, so killing it loses
every message. moto runs in this process: stopping it makes the endpoint refuse connections,
and a new server on the same port finds the queues and messages where they were (moto keeps
its state in the process), which is what an SQS outage looks like to a client.
"""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import tempfile
import time
from typing import TYPE_CHECKING, Any

import servers as bench_servers  # bench/servers.py: the redis-server binary
from polyqueue.embedded import EmbeddedPostgres
from polyqueue.testing.processes import LOOPBACK, free_port, wait_listening

if TYPE_CHECKING:
    from pathlib import Path

__all__ = ["Moto", "Postgres", "Redis"]

STOP_TIMEOUT_SECONDS = 30.0


class Postgres:
    """An embedded PostgreSQL in `folder`, on a port of its own for its whole life."""

    def __init__(self, folder: Path) -> None:
        self.port = free_port()
        self._embedded = EmbeddedPostgres(folder / "pg", port=self.port, fsync=True)
        self.admin_url = ""

    @property
    def log(self) -> Path:
        return self._embedded.data_dir / "postgres.log"

    async def start(self) -> None:
        self.admin_url = await asyncio.to_thread(self._embedded.start)

    async def stop_fast(self) -> None:
        """`pg_ctl stop -m fast`: sessions are terminated, a checkpoint is written."""
        await asyncio.to_thread(self._embedded.stop, force=True)

    async def crash(self) -> None:
        """`pg_ctl stop -m immediate`: SIGQUIT to the postmaster; recovery replays the WAL."""
        pid = self._postmaster_pid()
        if pid is None:
            return
        os.kill(pid, signal.SIGQUIT)
        await _until_gone(pid)

    def _postmaster_pid(self) -> int | None:
        try:
            pidfile = self._embedded.data_dir / "pgdata" / "postmaster.pid"
            return int(pidfile.read_text().splitlines()[0])
        except (OSError, ValueError, IndexError):
            return None


class Redis:
    """A redis-server on a fixed loopback port that can be killed and started empty."""

    def __init__(self) -> None:
        self.port = free_port()
        self.url = f"redis://{LOOPBACK}:{self.port}/0"
        self._binary = bench_servers._redis_server_binary()  # noqa: SLF001  (bench's own helper)
        self._dir = tempfile.TemporaryDirectory(prefix="polyqueue-chaos-redis-")
        self._process: subprocess.Popen[bytes] | None = None

    async def start(self) -> None:
        args = [self._binary, "--port", str(self.port), "--bind", LOOPBACK, "--save", ""]
        args += ["--appendonly", "no", "--dir", self._dir.name]
        process = subprocess.Popen(  # noqa: ASYNC220  (returns at once)
            args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        self._process = process
        await asyncio.to_thread(wait_listening, process, self.port, name="redis-server")

    async def kill(self) -> None:
        """SIGKILL: every key is gone (no persistence)."""
        if self._process is not None:
            self._process.kill()
            await asyncio.to_thread(self._process.wait, STOP_TIMEOUT_SECONDS)
            self._process = None

    async def close(self) -> None:
        await self.kill()
        self._dir.cleanup()


class Moto:
    """moto's threaded server (SQS) on a fixed loopback port, stoppable and restartable."""

    def __init__(self) -> None:
        self.port = free_port()
        self.url = f"http://{LOOPBACK}:{self.port}"
        self._server: Any = None

    async def start(self) -> None:
        from moto.server import ThreadedMotoServer  # noqa: PLC0415  (heavy; only for sqs)

        deadline = time.monotonic() + STOP_TIMEOUT_SECONDS
        while not _bindable(self.port):  # moto's start() hangs if it cannot bind
            if time.monotonic() > deadline:
                raise RuntimeError(f"port {self.port} stays busy: cannot restart moto")
            await asyncio.sleep(0.1)
        server = ThreadedMotoServer(ip_address=LOOPBACK, port=self.port, verbose=False)
        await asyncio.to_thread(server.start)
        self._server = server

    async def kill(self) -> None:
        """Stop serving and close the listening socket (the runner resets open connections)."""
        if self._server is not None:
            server, self._server = self._server, None
            await asyncio.to_thread(server.stop)
            server._server.server_close()  # noqa: SLF001  (stop() leaves the socket listening)

    async def close(self) -> None:
        await self.kill()


def _bindable(port: int) -> bool:
    with socket.socket() as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as werkzeug does
        try:
            probe.bind((LOOPBACK, port))
        except OSError:
            return False
    return True


async def _until_gone(pid: int) -> None:
    deadline = time.monotonic() + STOP_TIMEOUT_SECONDS
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return
        await asyncio.sleep(0.05)
    raise RuntimeError(f"process {pid} did not exit within {STOP_TIMEOUT_SECONDS}s")
