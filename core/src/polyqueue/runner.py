"""`main`: run a worker for an app from a `__main__` block, with logging and signals."""

from __future__ import annotations

import asyncio
import sys
from typing import TYPE_CHECKING

from polyqueue.exceptions import WorkerLoopError
from polyqueue.logs import configure_logging

if TYPE_CHECKING:
    from collections.abc import Sequence

    from polyqueue.app import Polyqueue

__all__ = ["main"]


def main(
    app: Polyqueue,
    *,
    metrics: object | None = None,
    queues: Sequence[str] | None = None,
    concurrency: int | None = None,
    log_level: str | None = None,
    burst: bool = False,
) -> None:
    """Start `app`, run a worker until SIGTERM/SIGINT, and close everything cleanly.

    Logging goes to stderr at `log_level` (default: the `log_level` setting), as text or
    JSON lines per the `log_format` setting, with the job's fields on every line. If one of
    the worker's loops kept crashing (`WorkerLoopError`, logged with its traceback), the
    process exits with status 1 once the worker has stopped, so that its supervisor
    (systemd, Kubernetes, supervisord) starts a fresh one. With `burst`, the worker stops by
    itself once no job of its queues is ready to run (exit status 0).
    """
    configure_logging(log_level or app.settings.log_level, app.settings.log_format)
    if metrics is not None:
        app.add_plugin(metrics)

    async def run() -> None:
        async with app:
            await app.run_worker(queues=queues, concurrency=concurrency, burst=burst)

    try:
        asyncio.run(run())
    except WorkerLoopError:
        sys.exit(1)  # already logged, traceback included
