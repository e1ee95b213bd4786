"""A worker process for the workflow tests: `python workflow_app.py` works until SIGTERM.

Settings come from `POLYQUEUE_*` variables set by the test. A chord's members return their
number after `ms` milliseconds; its callback reads every result and records each run of
itself in `CALLBACKS_TABLE`, so the test counts how often it fired.
`register_handlers` is also used by the test's own producer app, so both agree.
"""

from __future__ import annotations

import asyncio
import os

from pydantic import BaseModel

import polyqueue
from polyqueue import JobContext, Polyqueue

QUEUE = "e2e_workflows"
CALLBACKS_TABLE = "public.e2e_chord_callbacks"
CREATE_CALLBACKS_TABLE = f"""
CREATE TABLE IF NOT EXISTS {CALLBACKS_TABLE} (
    job_id  bigint NOT NULL,
    attempt integer NOT NULL,
    pid     integer NOT NULL,
    results integer NOT NULL,
    total   bigint NOT NULL
)"""


class Member(BaseModel):
    n: int
    ms: int = 0


class Callback(BaseModel):
    pass


def register_handlers(app: Polyqueue) -> None:
    """The chord's handlers, on `app`."""

    @app.register("wf.member", queue=QUEUE, max_attempts=10)
    async def member(payload: Member) -> int:
        if payload.ms:
            await asyncio.sleep(payload.ms / 1000)
        return payload.n

    @app.register("wf.callback", queue=QUEUE, max_attempts=10)
    async def callback(payload: Callback, ctx: JobContext) -> int:
        results = await ctx.results_of(int)
        await app.store.pool.execute(
            f"INSERT INTO {CALLBACKS_TABLE} (job_id, attempt, pid, results, total)"
            " VALUES ($1, $2, $3, $4, $5)",
            ctx.job_id,
            ctx.attempt,
            os.getpid(),
            len(results),
            sum(results),
        )
        return sum(results)


if __name__ == "__main__":
    worker_app = Polyqueue()
    register_handlers(worker_app)
    polyqueue.main(worker_app, queues=[QUEUE], concurrency=10)
