"""Server processes started by tests and benchmarks: a free port, and waiting until it listens."""

from __future__ import annotations

import contextlib
import socket
import time
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import subprocess

__all__ = ["LOOPBACK", "free_port", "wait_listening"]

LOOPBACK = "127.0.0.1"


def free_port() -> int:
    """A TCP port on loopback that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind((LOOPBACK, 0))
        return int(sock.getsockname()[1])


def wait_listening(
    process: subprocess.Popen[bytes], port: int, *, name: str, timeout: float = 15.0
) -> None:
    """Return once `port` on loopback accepts a connection.

    A freshly started server says nothing when it is ready, so this polls: every 20 ms,
    within `timeout` seconds (a bound against hanging, not a timing assertion). Raises
    `RuntimeError` naming `name` if the process exits first or the time runs out.
    """
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError), socket.create_connection((LOOPBACK, port), timeout=1):
            return
        if process.poll() is not None:
            raise RuntimeError(f"{name} exited with {process.returncode}")
        time.sleep(0.02)
    raise RuntimeError(f"{name} did not listen on port {port} within {timeout}s")
