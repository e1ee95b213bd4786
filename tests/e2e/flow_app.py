"""A worker process for the flow-control tests: `python flow_app.py` works until SIGTERM.

Settings come from `POLYQUEUE_*` variables set by the test. Every handler records when it
started and ended (this host's clock) in `RUNS_TABLE`, so the test can count how many ran at
once; `register_handlers` is also used by the test's own producer app, so both agree.
"""

from __future__ import annotations

import asyncio
import os
import time

from pydantic import BaseModel

import polyqueue
from polyqueue import JobContext, Polyqueue

QUEUE = "e2e_flow"
GLOBAL_LIMIT = 3
RATE = "10/s"
RUNS_TABLE = "public.e2e_flow_runs"
CREATE_RUNS_TABLE = f"""
CREATE TABLE IF NOT EXISTS {RUNS_TABLE} (
    job_id  bigint NOT NULL,
    attempt integer NOT NULL,
    handler text NOT NULL,
    key     text NOT NULL,
    pid     integer NOT NULL,
    started double precision NOT NULL,
    ended   double precision
)"""


class Work(BaseModel):
    account: str = ""
    ms: int


async def _run(app: Polyqueue, ctx: JobContext, payload: Work) -> None:
    """Record the start, work, record the end: the interval lies within the claim."""
    await app.store.pool.execute(
        f"INSERT INTO {RUNS_TABLE} (job_id, attempt, handler, key, pid, started)"
        " VALUES ($1, $2, $3, $4, $5, $6)",
        ctx.job_id,
        ctx.attempt,
        ctx.name,
        payload.account,
        os.getpid(),
        time.time(),
    )
    await asyncio.sleep(payload.ms / 1000)
    await app.store.pool.execute(
        f"UPDATE {RUNS_TABLE} SET ended = $3 WHERE job_id = $1 AND attempt = $2",
        ctx.job_id,
        ctx.attempt,
        time.time(),
    )


def register_handlers(app: Polyqueue) -> None:
    """The flow-control handlers, on `app`."""

    @app.register("flow.global", queue=QUEUE, concurrency_limit=GLOBAL_LIMIT, max_attempts=10)
    async def global_limit(payload: Work, ctx: JobContext) -> None:
        await _run(app, ctx, payload)

    @app.register("flow.keyed", queue=QUEUE, concurrency_limit=1, concurrency_key="account")
    async def keyed(payload: Work, ctx: JobContext) -> None:
        await _run(app, ctx, payload)

    @app.register("flow.rated", queue=QUEUE, rate_limit=RATE)
    async def rated(payload: Work, ctx: JobContext) -> None:
        await _run(app, ctx, payload)


if __name__ == "__main__":
    worker_app = Polyqueue()
    register_handlers(worker_app)
    polyqueue.main(worker_app, queues=[QUEUE], concurrency=10)
