"""Running a worker until the process is told to stop (SIGTERM, SIGINT)."""

from __future__ import annotations

import asyncio
import signal
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from polyqueue.worker import Worker

__all__ = ["run_until_signalled"]

STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)


async def run_until_signalled(worker: Worker) -> None:
    """Run `worker` until it stops; SIGTERM or SIGINT stop it gracefully, a second signal
    skips the grace period. The signal handlers are removed again afterwards."""
    loop = asyncio.get_running_loop()
    for signum in STOP_SIGNALS:
        loop.add_signal_handler(signum, worker.stop)
    try:
        await worker.run()
    finally:
        for signum in STOP_SIGNALS:
            loop.remove_signal_handler(signum)
