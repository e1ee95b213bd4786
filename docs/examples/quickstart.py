# ruff: noqa: T201, INP001  (an example script: it prints, and it is not in a package)
"""Polyqueue quickstart: register handlers, run a worker, enqueue jobs, read typed results.

A worker and a producer are two processes on the same database:

    export POLYQUEUE_DATABASE_URL=postgresql://postgres@localhost/postgres
    python quickstart.py worker     # a worker until SIGTERM/SIGINT
    python quickstart.py            # the producer: enqueues jobs, prints their results, exits
"""

from __future__ import annotations

import asyncio
import sys

import asyncpg
from pydantic import BaseModel

import polyqueue
from polyqueue import JobContext, JobNotFoundError, Polyqueue, TerminalError

app = Polyqueue()  # settings come from POLYQUEUE_* environment variables


class Resize(BaseModel):
    url: str
    width: int


class Resized(BaseModel):
    path: str
    width: int


class Text(BaseModel):
    text: str


@app.register("images.resize", queue="images", max_attempts=5, max_run_seconds=30)
async def resize(payload: Resize, ctx: JobContext) -> Resized:
    """An async handler: runs on the worker's event loop."""
    await ctx.progress(0.5, "half way")  # stored on the job row; also a heartbeat
    name = payload.url.rsplit("/", 1)[-1]
    return Resized(path=f"/thumbs/{payload.width}/{name}", width=payload.width)


@app.register("text.count_words")
def count_words(payload: Text) -> int:
    """A sync handler: runs in the worker's thread pool, never on the event loop."""
    if not payload.text:
        raise TerminalError("nothing to count")  # fail at once, no retry
    return len(payload.text.split())


class PaymentDeclinedError(Exception):
    def __init__(self, job_id: int) -> None:
        super().__init__(f"payment declined (job {job_id} rolled back)")
        self.job_id = job_id


async def place_order(connection: asyncpg.Connection, order_id: int, *, paid: bool) -> int:
    """Insert an order and enqueue its job in one transaction; an error rolls back both."""
    async with connection.transaction():
        await connection.execute("INSERT INTO orders VALUES ($1)", order_id)
        job_id = await app.enqueue(
            count_words, Text(text=f"order {order_id} placed"), connection=connection
        )
        if not paid:
            raise PaymentDeclinedError(job_id)
    return job_id


async def produce() -> None:
    async with app:  # opens the pool, applies migrations, starts the broker
        # One job, from a model; another from a dict (validated against Resize here).
        first = await app.enqueue("images.resize", Resize(url="https://x/cat.png", width=64))
        second = await app.enqueue(resize, {"url": "https://x/dog.png", "width": 128}, priority=5)

        # Many jobs of one handler in one round trip.
        counts = await app.enqueue_many(
            count_words, [Text(text="to be or not to be"), Text(text="hello world")]
        )

        # An idempotency key: the second enqueue returns the first job's id.
        keyed = await app.enqueue(count_words, Text(text="once"), idempotency_key="once-1")
        again = await app.enqueue(count_words, Text(text="once"), idempotency_key="once-1")
        print("same job for the same key:", keyed == again)

        # A job that raises TerminalError fails without retry.
        empty = await app.enqueue(count_words, Text(text=""))

        # Transactional enqueue: the job exists if and only if the transaction commits.
        connection = await asyncpg.connect(app.database_url)
        try:
            await connection.execute("CREATE TEMP TABLE orders (id int PRIMARY KEY)")
            committed = await place_order(connection, 1, paid=True)
            try:
                await place_order(connection, 2, paid=False)
            except PaymentDeclinedError as exc:
                rolled_back = exc.job_id
        finally:
            await connection.close()

        # Wait for the jobs and read their results.
        job = await app.wait_for(first, timeout=30)
        print("first:", job.status, job.progress, job.progress_message)
        resized = await app.get_job_result_typed(first, Resized)  # validated as Resized
        print("first result:", resized.path)
        await app.wait_for(second, timeout=30)
        print("second result:", await app.get_job_result(second))  # the JSON as stored
        for job_id in counts:
            await app.wait_for(job_id, timeout=30)
            print("words:", await app.get_job_result_typed_via_registry(job_id))  # as `int`
        print("keyed:", (await app.wait_for(keyed, timeout=30)).status)
        failed = await app.wait_for(empty, timeout=30)
        print("empty:", failed.status, failed.attempt, failed.error and failed.error.message)
        print("committed:", (await app.wait_for(committed, timeout=30)).status)
        try:
            await app.get_job(rolled_back)
        except JobNotFoundError:
            print("rolled back: no such job")


if __name__ == "__main__":
    if sys.argv[1:] == ["worker"]:
        polyqueue.main(app)  # a worker until SIGTERM / SIGINT, with logging configured
    else:
        asyncio.run(produce())
