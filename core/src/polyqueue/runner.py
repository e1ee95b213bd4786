"""`main`: run a worker for an app from a `__main__` block, with logging and signals."""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING

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
    log_level: str = "INFO",
) -> None:
    """Start `app`, run a worker until SIGTERM/SIGINT, and close everything cleanly."""
    logging.basicConfig(level=log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if metrics is not None:
        app.add_plugin(metrics)

    async def run() -> None:
        async with app:
            await app.run_worker(queues=queues, concurrency=concurrency)

    asyncio.run(run())
