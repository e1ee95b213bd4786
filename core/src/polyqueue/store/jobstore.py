"""`JobStore`: the asyncpg pool and one method per named block of `sql/queries.sql`."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import replace
from typing import TYPE_CHECKING

import asyncpg

from polyqueue.exceptions import DatabaseUnavailableError, JobNotFoundError, StoreError
from polyqueue.job import ClaimedJob, Job, NewJobs, Outcome
from polyqueue.pgconnect import ConnectionOptions
from polyqueue.settings import describe_database_url as describe_url
from polyqueue.sql import claim_fragments, load_queries
from polyqueue.store.errors import CONNECTION_ERRORS, translate_errors
from polyqueue.store.flow import FlowQueries
from polyqueue.store.inspection import InspectionQueries
from polyqueue.store.maintenance import MaintenanceQueries
from polyqueue.store.records import InsertedJob, ReleasedJob, WorkerRegistration
from polyqueue.store.workflows import WorkflowQueries, released_jobs

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Sequence
    from datetime import datetime

    from asyncpg import Connection, Record

    from polyqueue.store.records import SqlExecutor

__all__ = ["CompletedJobs", "JobStore", "describe_url"]

log = logging.getLogger(__name__)

_UNIQUE_TRIES = 3  # a unique insert again if the job holding a key went away meanwhile
CLAIM_POOL_SIZE = 2  # a worker claims in one loop; the second is for a flow claim beside it


class CompletedJobs(dict[int, "datetime | None"]):
    """What `job_complete_many` returns: each stored outcome's job id with its `run_at` if
    it was scheduled, and the dependents the outcomes released."""

    released: list[ReleasedJob]


class JobStore(MaintenanceQueries, InspectionQueries, FlowQueries, WorkflowQueries):
    """The authoritative state of every job and worker, in one PostgreSQL schema."""

    def __init__(
        self,
        url: str,
        schema: str,
        *,
        pool_size: int,
        options: ConnectionOptions | None = None,
    ) -> None:
        self.url = url
        self.schema = schema
        self.options = options or ConnectionOptions()
        self.queries = load_queries("queries.sql", schema)
        fragments = claim_fragments(schema)
        flow = load_queries("flow.sql", schema, fragments=fragments)
        workflows = load_queries("workflows.sql", schema, fragments=fragments)
        every = {**self.queries, **flow, **workflows}
        self._sql = {name: query.sql for name, query in every.items()}
        self.sends_notices = False
        """Whether `job_insert_batch` sends the notices itself (`send_notices_with`)."""
        self._pool_size = pool_size
        self._pool: asyncpg.Pool | None = None
        self._claim_pool: asyncpg.Pool | None = None

    async def open(self) -> None:
        """Create the pool; fail fast with a clear error if the database cannot be reached."""
        try:
            async with asyncio.timeout(self.options.connect_timeout):
                self._pool = await asyncpg.create_pool(
                    self.url, min_size=1, max_size=self._pool_size, **self.options.pool_arguments()
                )
                # Claims only, whose commits are not waited for (docs/decisions.md); it
                # connects at the first claim, so an app that only enqueues opens none.
                self._claim_pool = await asyncpg.create_pool(
                    self.url,
                    min_size=0,
                    max_size=CLAIM_POOL_SIZE,
                    **self.options.pool_arguments(wait_for_flush=False),
                )
        except (*CONNECTION_ERRORS, asyncpg.PostgresError, ValueError) as exc:
            raise DatabaseUnavailableError(
                f"cannot connect to {describe_url(self.url)}: {type(exc).__name__}: {exc}"
            ) from exc

    @contextlib.asynccontextmanager
    async def migration_connection(self) -> AsyncIterator[Connection]:
        """A connection of its own without the statement timeout: a migration may take long."""
        unlimited = replace(self.options, statement_timeout=None)
        with translate_errors("connect for migrations"):
            connection = await unlimited.connect(self.url)
        try:
            yield connection
        finally:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(connection.close(), timeout=5)

    async def close(self) -> None:
        """Close the pools, waiting briefly for connections in use."""
        for pool in (self._claim_pool, self._pool):
            if pool is not None:
                try:
                    await asyncio.wait_for(pool.close(), timeout=5)
                except TimeoutError:
                    pool.terminate()
        self._pool = self._claim_pool = None

    @property
    def pool(self) -> asyncpg.Pool:
        """The connection pool; only between `open` and `close`."""
        if self._pool is None:
            raise StoreError("the job store is not open: use `async with app:`")
        return self._pool

    @property
    def claim_pool(self) -> asyncpg.Pool:
        """The pool of the claims, whose commits return before the disk flush: a claim lost
        in a server crash only means the job runs again (its outcome then is fenced off)."""
        if self._claim_pool is None:
            raise StoreError("the job store is not open: use `async with app:`")
        return self._claim_pool

    @contextlib.asynccontextmanager
    async def transaction(self) -> AsyncIterator[Connection]:
        """A pooled connection inside a transaction."""
        with translate_errors("transaction"):
            async with self.pool.acquire() as connection, connection.transaction():
                yield connection

    # -- jobs ---------------------------------------------------------------------------------

    async def job_insert_many(
        self, jobs: NewJobs, executor: SqlExecutor, announce_channel: str | None = None
    ) -> list[InsertedJob]:
        """Insert `jobs` on `executor`; ids come back in the order of the payloads.

        With `announce_channel`, the same statement writes the built-in `postgres` broker's
        notice of every job it queued and NOTIFYs that channel. One job takes the
        `job_insert_one` statement, which also honours an idempotency key; jobs with unique
        keys take `job_insert_unique`.
        """
        if jobs.unique_keys is not None:
            return await self.job_insert_unique(jobs, executor, announce_channel)
        if len(jobs.payloads) == 1:
            return [await self.job_insert_one(jobs, executor, announce_channel)]
        with translate_errors("enqueue"):
            rows = await executor.fetch(
                self._sql["job_insert_many"],
                *_insert_columns(jobs, jobs.payloads),
                announce_channel,
                _keys(jobs.concurrency_keys),
            )
        return [_inserted(row, jobs) for row in rows]

    async def job_insert_one(
        self, jobs: NewJobs, executor: SqlExecutor, announce_channel: str | None = None
    ) -> InsertedJob:
        """Insert the one job of `jobs`; a taken idempotency key returns the older job."""
        (payload,) = jobs.payloads
        with translate_errors("enqueue"):
            row = await executor.fetchrow(
                self._sql["job_insert_one"],
                jobs.name,
                jobs.queue,
                payload,
                jobs.headers,
                jobs.priority,
                jobs.max_attempts,
                jobs.max_run_seconds,
                jobs.timeout_strategy,
                jobs.idempotency_key,
                jobs.run_at,
                announce_channel,
                None if jobs.concurrency_keys is None else jobs.concurrency_keys[0],
            )
            job_id, status = row["id"], row["status"]
        if job_id is None:  # the key was taken by a transaction that committed after ours began
            (holder,) = await self.job_key_holders([jobs.idempotency_key or ""], [], executor)
            job_id, status = holder["id"], holder["status"]
        return InsertedJob(
            job_id, status, jobs.queue, jobs.priority, row["created"], row["held_back"]
        )

    async def job_insert_batch(
        self, batch: Sequence[NewJobs], executor: SqlExecutor, announce_channel: str | None = None
    ) -> list[InsertedJob]:
        """Insert one job from each of `batch` (any handlers and options, no idempotency or
        unique key) in one statement; rows come back in the order of `batch`."""
        with translate_errors("enqueue"):
            rows = await executor.fetch(
                self._sql["job_insert_batch"],
                [jobs.name for jobs in batch],
                [jobs.queue for jobs in batch],
                [jobs.payloads[0] for jobs in batch],
                [jobs.headers for jobs in batch],
                [jobs.priority for jobs in batch],
                [jobs.max_attempts for jobs in batch],
                [jobs.max_run_seconds for jobs in batch],
                [jobs.timeout_strategy for jobs in batch],
                [jobs.run_at for jobs in batch],
                [None if j.concurrency_keys is None else j.concurrency_keys[0] for j in batch],
                announce_channel,
            )
        return [
            replace(_inserted(row, jobs), notice_sent=row["notice_sent"])
            for jobs, row in zip(batch, rows, strict=True)
        ]

    def send_notices_with(self, notice_sender: str) -> None:
        """Have `job_insert_batch` send the notices of the jobs it queues with a broker's
        `notice_sender` SQL (see `Broker.notice_sender`), in the same statement."""
        fragments = {"notice_sender": notice_sender}
        queries = load_queries("queries.sql", self.schema, fragments=fragments)
        self._sql["job_insert_batch"] = queries["job_insert_batch"].sql
        self.sends_notices = True

    async def job_insert_unique(
        self, jobs: NewJobs, executor: SqlExecutor, announce_channel: str | None = None
    ) -> list[InsertedJob]:
        """Insert those of `jobs` whose unique key is free; the others (and a payload whose
        key an earlier one of the call took) come back as the job that holds the key."""
        keys = list(jobs.unique_keys or ())
        result: list[InsertedJob | None] = [None] * len(keys)
        todo = list(range(len(keys)))  # the positions not answered yet
        for _ in range(_UNIQUE_TRIES):
            with translate_errors("enqueue"):
                rows = await executor.fetch(
                    self._sql["job_insert_unique"],
                    *_insert_columns(jobs, [jobs.payloads[n] for n in todo]),
                    announce_channel,
                    [keys[n] for n in todo],
                    jobs.unique_for,
                    None
                    if jobs.concurrency_keys is None
                    else [jobs.concurrency_keys[n] for n in todo],
                )
            late = [n for n, row in zip(todo, rows, strict=True) if row["id"] is None]
            for n, row in zip(todo, rows, strict=True):
                if row["id"] is not None:
                    result[n] = _inserted(row, jobs, created=row["created"])
            holders = {}
            if late:  # held by jobs committed after the statement began: read them now
                found = await self.job_key_holders([], [keys[n] for n in late], executor)
                holders = {row["unique_key"]: row for row in found}
            for n in late:
                if (holder := holders.get(keys[n])) is not None:
                    result[n] = InsertedJob(
                        holder["id"], holder["status"], jobs.queue, jobs.priority, created=False
                    )
            todo = [n for n in late if result[n] is None]  # the holder went away: try again
            if not todo:
                return [row for row in result if row is not None]
        raise StoreError(f"enqueue: the unique keys {[keys[n] for n in todo]} kept changing hands")

    async def job_key_holders(
        self, idempotency_keys: Sequence[str], unique_keys: Sequence[str], executor: SqlExecutor
    ) -> list[Record]:
        """The jobs holding any of these idempotency keys or unique keys now."""
        with translate_errors("enqueue"):
            return list(
                await executor.fetch(
                    self._sql["job_key_holders"], list(idempotency_keys), list(unique_keys)
                )
            )

    async def job_claim_many(
        self, job_ids: Sequence[int], worker_id: str, timeout_grace: float
    ) -> list[ClaimedJob]:
        """Claim those of `job_ids` that are queued; the rest are not claimable."""
        with translate_errors("claim"):
            rows = await self.claim_pool.fetch(
                self._sql["job_claim_many"], worker_id, timeout_grace, list(job_ids)
            )
        return [ClaimedJob.from_row(row) for row in rows]

    async def job_complete_many(
        self,
        outcomes: Sequence[Outcome],
        executor: SqlExecutor | None = None,
        receipts: Sequence[tuple[int, int] | None] = (),
        announce_channel: str | None = None,
        flow_channel: str | None = None,
        *,
        worker_id: str | None = None,
    ) -> CompletedJobs:
        """Record `outcomes`. Return the ids whose attempt was still current (the others were
        fenced off), each with its `run_at` if it was scheduled (a retry or a snooze; a
        snoozed outcome uses no attempt), and in `released` the dependents these outcomes
        released (their edges are settled in the same statement).

        `receipts` of the built-in `postgres` broker's deliveries, one per outcome (None for a
        job started without a notice), are acked in the same statement if their outcome is
        stored, else made available again; with `announce_channel` the released jobs'
        notices are written;
        `flow_channel` is NOTIFYed if a released job is held back by flow control. With
        `worker_id`, only attempts that worker claimed are stored (the fencing token is the
        attempt and the worker: a claim lost in a crash leaves its number to the next).
        Rows are locked in job id order, as the heartbeat and the give-back lock them, so
        that concurrent statements of one worker never deadlock.
        """
        if receipts:
            pairs = sorted(zip(outcomes, receipts, strict=True), key=lambda p: p[0].job_id)
            outcomes, receipts = [o for o, _ in pairs], [r for _, r in pairs]
        else:
            outcomes = sorted(outcomes, key=lambda o: o.job_id)
        columns = (
            [o.job_id for o in outcomes],
            [o.attempt for o in outcomes],
            [o.status for o in outcomes],
            [o.result for o in outcomes],
            [o.error_type for o in outcomes],
            [o.error_message for o in outcomes],
            [o.error_traceback for o in outcomes],
            [o.delay for o in outcomes],
            [o.snoozed for o in outcomes],
        )
        with translate_errors("record outcomes"):
            rows = await (executor or self.pool).fetch(
                self._sql["job_complete_many"],
                *columns,
                [None if r is None else r[0] for r in receipts] if receipts else [],
                [None if r is None else r[1] for r in receipts] if receipts else [],
                announce_channel,
                flow_channel,
                worker_id,
            )
        completed = CompletedJobs(
            (row["id"], row["run_at"] if row["status"] == "scheduled" else None)
            for row in rows
            if not row["released"]
        )
        completed.released = released_jobs([row for row in rows if row["released"]])
        return completed

    async def job_release_many(
        self, attempts: Sequence[tuple[int, int]], worker_id: str | None = None
    ) -> set[int]:
        """Give running attempts `(job_id, attempt)` back to the queue; return those released.
        With `worker_id`, only attempts that worker claimed (as for `job_complete_many`)."""
        with translate_errors("release"):
            rows = await self.pool.fetch(
                self._sql["job_release_many"], *_unzip(sorted(attempts)), worker_id
            )
        return {row["id"] for row in rows}

    async def job_heartbeat_many(
        self, attempts: Sequence[tuple[int, int]], worker_id: str | None = None
    ) -> set[int]:
        """Heartbeat running attempts; return the ids still owned by them (with `worker_id`,
        by that worker: as for `job_complete_many`)."""
        with translate_errors("heartbeat"):
            rows = await self.pool.fetch(
                self._sql["job_heartbeat_many"], *_unzip(sorted(attempts)), worker_id
            )
        return {row["id"] for row in rows}

    async def job_progress(
        self,
        job_id: int,
        attempt: int,
        fraction: float,
        message: str | None,
        worker_id: str | None = None,
    ) -> bool:
        """Store progress of a running attempt; False if the attempt is no longer current (or,
        with `worker_id`, not that worker's)."""
        with translate_errors("progress"):
            row = await self.pool.fetchrow(
                self._sql["job_progress"], job_id, attempt, fraction, message, worker_id
            )
        return row is not None

    async def job_promote_due(self, limit: int, executor: SqlExecutor) -> list[Record]:
        """Queue up to `limit` due scheduled jobs; return `(id, queue, priority)` rows."""
        with translate_errors("promote"):
            rows: list[Record] = await executor.fetch(self._sql["job_promote_due"], limit)
        return rows

    async def job_next_run_at(self) -> datetime | None:
        """When the earliest scheduled job falls due, if any."""
        with translate_errors("next run"):
            value: datetime | None = await self.pool.fetchval(self._sql["job_next_run_at"])
        return value

    async def job_get(self, job_id: int) -> Job:
        """One job; `JobNotFoundError` if there is none."""
        with translate_errors("get job"):
            row = await self.pool.fetchrow(self._sql["job_get"], job_id)
        if row is None:
            raise JobNotFoundError(job_id)
        return Job.from_row(row)

    async def job_status_many(self, job_ids: Sequence[int]) -> dict[int, str]:
        """The status of each existing job among `job_ids`."""
        with translate_errors("job status"):
            rows = await self.pool.fetch(self._sql["job_status_many"], list(job_ids))
        return {row["id"]: row["status"] for row in rows}

    async def job_cancel_many(self, job_ids: Sequence[int], executor: SqlExecutor) -> list[Record]:
        """Cancel the unfinished jobs among `job_ids`; return `(id, worker_id)` of each."""
        with translate_errors("cancel"):
            rows: list[Record] = await executor.fetch(self._sql["job_cancel_many"], list(job_ids))
        return rows

    async def job_requeue_many(self, job_ids: Sequence[int], executor: SqlExecutor) -> list[Record]:
        """Queue the failed, cancelled or running jobs among `job_ids` again."""
        with translate_errors("requeue"):
            rows: list[Record] = await executor.fetch(self._sql["job_requeue_many"], list(job_ids))
        return rows

    async def job_fail_many(
        self, job_ids: Sequence[int], reason: str, executor: SqlExecutor
    ) -> list[Record]:
        """Fail the unfinished jobs among `job_ids` with `reason` (an operator's decision)."""
        with translate_errors("fail"):
            rows: list[Record] = await executor.fetch(
                self._sql["job_fail_many"], list(job_ids), reason
            )
        return rows

    # -- workers ------------------------------------------------------------------------------

    async def worker_register(self, worker: WorkerRegistration) -> None:
        """Add this worker to the registry."""
        with translate_errors("register worker"):
            await self.pool.execute(self._sql["worker_register"], *worker.columns())

    async def worker_heartbeat(self, worker: WorkerRegistration) -> bool:
        """Mark the worker alive (registering it if its row is missing); False if it is no
        longer `running` in the registry (it was declared dead)."""
        with translate_errors("worker heartbeat"):
            row = await self.pool.fetchrow(self._sql["worker_heartbeat"], *worker.columns())
        return row is not None

    async def worker_stop(self, worker_id: str) -> None:
        """Mark the worker stopped."""
        with translate_errors("stop worker"):
            await self.pool.execute(self._sql["worker_stop"], worker_id)

    # -- notifications ------------------------------------------------------------------------

    async def notify(self, channel: str, payload: str, executor: SqlExecutor) -> None:
        """Send a notification, delivered when `executor`'s transaction commits."""
        with translate_errors("notify"):
            await executor.execute(self._sql["notify"], channel, payload)


def _insert_columns(jobs: NewJobs, payloads: Sequence[str]) -> tuple[object, ...]:
    """$1 to $9 of `job_insert_many` and `job_insert_unique`: `payloads` with `jobs`' options."""
    return (
        jobs.name,
        jobs.queue,
        payloads,
        jobs.headers,
        jobs.priority,
        jobs.max_attempts,
        jobs.max_run_seconds,
        jobs.timeout_strategy,
        jobs.run_at,
    )


def _keys(keys: Sequence[str | None] | None) -> list[str | None] | None:
    return None if keys is None else list(keys)


def _unzip(pairs: Sequence[tuple[int, int]]) -> tuple[list[int], list[int]]:
    return [p[0] for p in pairs], [p[1] for p in pairs]


def _inserted(row: Record, jobs: NewJobs, *, created: bool = True) -> InsertedJob:
    """The `InsertedJob` of an insert statement's row for a job of `jobs`."""
    return InsertedJob(
        row["id"], row["status"], jobs.queue, jobs.priority, created, row["held_back"]
    )
