"""A worker process for the fault tests: `python recovery_app.py` works until SIGTERM/SIGINT.

Settings come from `POLYQUEUE_*` variables set by the test. `register_handlers` is also used
by the tests' own apps, so both sides agree on names, queues and options.
"""

from __future__ import annotations

import asyncio
import os
import time
from pathlib import Path
from typing import TYPE_CHECKING

from pydantic import BaseModel

import polyqueue
from polyqueue import JobContext, Polyqueue

if TYPE_CHECKING:
    from collections.abc import Callable

QUEUE = "e2e_recovery"
RUNS_TABLE = "public.e2e_runs"
CREATE_RUNS_TABLE = f"""
CREATE TABLE IF NOT EXISTS {RUNS_TABLE} (
    job_id  bigint NOT NULL,
    attempt integer NOT NULL,
    pid     integer NOT NULL,
    at      timestamptz NOT NULL DEFAULT clock_timestamp()
)"""
LIMIT = 0.5  # max_run_seconds of the blocking handlers
BLOCK_AT_MOST = 30.0  # a blocked handler gives up after this long whatever happens


class Work(BaseModel):
    n: int
    ms: int


class Block(BaseModel):
    release_file: str


def block_until(release: Path) -> None:
    """Block the calling thread (in an `async def`: the event loop) until `release` exists."""
    deadline = time.monotonic() + BLOCK_AT_MOST
    while not release.exists() and time.monotonic() < deadline:
        time.sleep(0.02)


def register_handlers(app: Polyqueue) -> None:
    """The handlers of the fault tests, on `app`."""

    @app.register("recovery.work", queue=QUEUE, max_attempts=5)
    async def work(payload: Work, ctx: JobContext) -> int:
        await app.store.pool.execute(
            f"INSERT INTO {RUNS_TABLE} (job_id, attempt, pid) VALUES ($1, $2, $3)",
            ctx.job_id,
            ctx.attempt,
            os.getpid(),
        )
        await asyncio.sleep(payload.ms / 1000)
        return payload.n

    @app.register("recovery.poison", queue=QUEUE, max_attempts=10)
    async def poison(payload: Work) -> int:
        os._exit(1)  # like a segfault or the OOM killer: no cleanup, no outcome

    def blocking(strategy: str) -> Callable[[Block, JobContext], object]:
        async def block(payload: Block, ctx: JobContext) -> dict[str, int]:
            if ctx.attempt == 1:
                block_until(Path(payload.release_file))
            return {"attempt": ctx.attempt, "pid": os.getpid()}

        return block

    @app.register("recovery.stuck_sync", queue=QUEUE, max_attempts=3)
    def stuck_sync(payload: Block) -> None:
        """A sync handler stuck in its thread, deaf to cancellation (a C call, a lock)."""
        block_until(Path(payload.release_file))

    for strategy in ("fail", "retry"):
        app.register(
            f"recovery.block_{strategy}",
            queue=QUEUE,
            max_attempts=3,
            max_run_seconds=LIMIT,
            timeout_strategy=strategy,  # type: ignore[arg-type]
        )(blocking(strategy))


def break_the_scheduler() -> None:
    """Make the scheduler's loop crash at every step (and give up after three crashes)."""
    from polyqueue import supervision  # noqa: PLC0415
    from polyqueue.scheduler import Scheduler  # noqa: PLC0415

    async def broken(self: Scheduler) -> int:
        raise RuntimeError("the scheduler is broken on purpose")

    Scheduler.promote_due = broken  # type: ignore[method-assign]
    supervision.MAX_CRASHES = 3


if __name__ == "__main__":
    if os.environ.get("POLYQUEUE_TEST_BREAK_SCHEDULER"):
        break_the_scheduler()
    worker_app = Polyqueue()
    register_handlers(worker_app)
    polyqueue.main(worker_app)
