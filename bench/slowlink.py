"""`slow_link`: a loopback TCP proxy that delays every chunk each way, in a process of its own.

It is `polyqueue.testing.proxy.FaultProxy` with `delay`, run by this file as a script so that
its forwarding does not share an event loop (or a GIL) with the process being measured. Its
own CPU is readable (`SlowLink.cpu_seconds`): on a small machine it competes with the rest.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import urlsplit, urlunsplit

from procstat import read_stat

if TYPE_CHECKING:
    from collections.abc import Iterator

__all__ = ["SlowLink", "slow_link"]

READY_TIMEOUT_SECONDS = 15.0


@dataclass(frozen=True, slots=True)
class SlowLink:
    """A running proxy: its port, its process, the delay it adds each way."""

    port: int
    pid: int
    delay: float

    def url_for(self, url: str) -> str:
        """`url` (any PostgreSQL or Redis URL on loopback) pointed at the proxy."""
        parts = urlsplit(url)
        netloc = parts.netloc.rsplit("@", 1)
        host = f"127.0.0.1:{self.port}"
        return urlunsplit(parts._replace(netloc=f"{netloc[0]}@{host}" if len(netloc) > 1 else host))

    def cpu_seconds(self) -> float:
        stat = read_stat(self.pid)
        return stat.cpu if stat is not None else 0.0


@contextlib.contextmanager
def slow_link(upstream_port: int, delay: float) -> Iterator[SlowLink]:
    """A proxy to 127.0.0.1:`upstream_port` adding `delay` seconds each way, until exit."""
    command = [sys.executable, str(Path(__file__).resolve()), str(upstream_port), str(delay)]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, text=True)
    try:
        assert process.stdout is not None  # noqa: S101
        line = process.stdout.readline()
        if not line.strip().isdigit():
            raise RuntimeError(f"the slow link did not start (it said {line!r})")
        yield SlowLink(int(line), process.pid, delay)
    finally:
        process.terminate()
        try:
            process.wait(READY_TIMEOUT_SECONDS)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


async def _serve(upstream_port: int, delay: float) -> None:
    from polyqueue.testing.proxy import FaultProxy  # noqa: PLC0415  (the child only)

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    async with FaultProxy(upstream_port, delay=delay) as proxy:
        print(proxy.port, flush=True)
        await stop.wait()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description="a delaying loopback proxy (see slowlink.py)")
    parser.add_argument("upstream_port", type=int)
    parser.add_argument("delay", type=float, help="seconds added each way")
    args = parser.parse_args()
    asyncio.run(_serve(args.upstream_port, args.delay))
