"""`Worker`: consumes notices, claims jobs in batches, runs them, and keeps them alive."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import uuid
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from polyqueue.backoff import Backoff
from polyqueue.brokers.postgres import colocated
from polyqueue.burst import BURST_RECEIVE_WAIT_SECONDS, jobs_ready
from polyqueue.context import JobContext
from polyqueue.exceptions import (
    BrokerError,
    HandlerNotFoundError,
    PolyqueueError,
    WorkerLoopError,
)
from polyqueue.executor import Executor, RetryPolicy
from polyqueue.listener import Listener
from polyqueue.logs import job_fields
from polyqueue.maintenance import Maintenance
from polyqueue.middleware import flatten
from polyqueue.notices import InvalidNoticeError, decode_notice, notice_message
from polyqueue.outcomes import OutcomeWriter
from polyqueue.reporting import report_finished, report_started
from polyqueue.scheduler import Scheduler
from polyqueue.store import WorkerRegistration
from polyqueue.supervision import supervise

if TYPE_CHECKING:
    from collections.abc import Coroutine, Sequence

    from polyqueue.app import Polyqueue
    from polyqueue.broker import Delivery
    from polyqueue.brokers.postgres import PostgresBroker
    from polyqueue.job import ClaimedJob, Outcome

__all__ = ["Worker", "new_worker_id"]

log = logging.getLogger(__name__)

RECEIVE_WAIT_SECONDS = 1.0
FLUSH_MINIMUM_SECONDS = 2.0
"""A stopping worker tries this long at least to store its last outcomes, even when its
handlers used up the whole grace period (a second signal cuts it short)."""


def new_worker_id() -> str:
    """Unique per process start: host, pid and a random suffix (never reused after restart)."""
    return f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:8]}"


@dataclass(slots=True)
class _Running:
    job: ClaimedJob
    delivery: Delivery
    task: asyncio.Task[None]
    stop_reason: str | None = None  # "shutdown" | "lost" | "cancelled" once told to stop
    recording: bool = False  # the handler is done; the outcome is being written


class Worker:
    """Runs jobs from `queues`, at most `concurrency` at once, until `stop()` is called
    (or, with `burst`, until no job of its queues is ready to run and it runs none)."""

    def __init__(
        self, app: Polyqueue, *, queues: Sequence[str], concurrency: int, burst: bool = False
    ) -> None:
        self.app = app
        self.id = new_worker_id()
        self.queues = list(queues)
        self.concurrency = concurrency
        self.burst = burst
        self._receive_wait = BURST_RECEIVE_WAIT_SECONDS if burst else RECEIVE_WAIT_SECONDS
        settings = app.settings
        middlewares = flatten(app.plugin_manager.hook.polyqueue_dispatch_middleware(app=app))
        self._slot_freed = asyncio.Event()
        self._executor = Executor(
            RetryPolicy(settings.retry_backoff_base, settings.retry_backoff_max),
            concurrency,
            app.handlers,
            app.serializer,
            middlewares,
            on_thread_released=self._slot_freed.set,
        )
        self._running: dict[int, _Running] = {}
        self._stopped_by_shutdown: list[tuple[ClaimedJob, Delivery]] = []
        self._stopping = asyncio.Event()
        self._forced = asyncio.Event()
        self._registered = asyncio.Event()  # cleared while declared dead and not yet re-registered
        self._failure: WorkerLoopError | None = None
        self._started = False
        self._finished = asyncio.Event()
        self._scheduler = Scheduler(
            app.store, app.broker, app.publisher, settings.scheduler_interval
        )
        self._writer = OutcomeWriter(app.store, app.broker, self._scheduler.wake_at)
        self._control = Listener(
            app.database_url, [app.cancel_channel], self._on_cancel, options=app.store.options
        )

    @property
    def running_jobs(self) -> int:
        """How many jobs this worker runs right now (including outcomes being written)."""
        return len(self._running)

    def stop(self) -> None:
        """Stop consuming; in-flight jobs get the grace period, unless stop is called again."""
        if self._stopping.is_set():
            self._forced.set()
        self._stopping.set()
        self.app.broker.interrupt()

    async def wait_stopped(self) -> None:
        """Return once `run` has finished (at once if it never started)."""
        if self._started:
            await self._finished.wait()

    async def run(self) -> None:
        """Register, work until `stop()`, then shut down gracefully.

        Raises `WorkerLoopError` if one of its loops kept crashing and stopped it: the
        process should then exit non-zero, so that its supervisor starts a fresh one.
        """
        self._started = True
        try:
            await self._run()
        finally:
            self._finished.set()
        if self._failure is not None:
            raise self._failure

    async def _run(self) -> None:
        await self._register(self.id)
        await self._control.start()
        log.info(
            "worker %s started on queues %s, concurrency %d", self.id, self.queues, self.concurrency
        )
        background = [
            self._background(self._heartbeat_loop(), "polyqueue-heartbeat"),
            self._background(self._scheduler.run(), "polyqueue-scheduler"),
        ]
        if self.app.settings.maintenance:
            background.append(self._background(Maintenance(self.app).run(), "polyqueue-maint"))
        writer = self._background(self._writer.run(), "polyqueue-outcomes")
        try:
            await self._consume_loop()
        except WorkerLoopError as exc:
            self._fail(exc)
        finally:
            await self._shutdown(background, writer)

    def _background(self, loop: Coroutine[Any, Any, None], name: str) -> asyncio.Task[None]:
        """Start a supervised loop; should it end with an error, the worker stops."""
        task = asyncio.create_task(loop, name=name)
        task.add_done_callback(self._loop_ended)
        return task

    def _loop_ended(self, task: asyncio.Task[None]) -> None:
        if task.cancelled():
            return
        exc = task.exception()
        if exc is None:
            return
        if not isinstance(exc, WorkerLoopError):  # supervise() lets nothing else out: a bug
            log.critical("worker %s: %s ended", self.id, task.get_name(), exc_info=exc)
            exc = WorkerLoopError(task.get_name(), exc)
        self._fail(exc)

    def _fail(self, exc: WorkerLoopError) -> None:
        """Stop the worker at once because a loop cannot go on; `run()` raises `exc`."""
        if self._failure is None:
            self._failure = exc
            log.critical("worker %s stops: %s", self.id, exc)
        self._stopping.set()
        self._forced.set()
        self.app.broker.interrupt()

    # -- consuming ----------------------------------------------------------------------------

    async def _consume_loop(self) -> None:
        app = self.app
        batch = app.broker.capabilities.max_batch

        async def step() -> None:
            if not self._registered.is_set():
                await self._wait_until(self._registered)
                return
            if self.burst and not self._running and not await jobs_ready(app.store, self.queues):
                log.info("worker %s: no job is ready to run; the burst is over", self.id)
                self.stop()
                return
            free = self._free_slots()
            if free <= 0:
                await self._wait_for_slot()
                return
            await self._consume(min(free, batch))

        await supervise(
            f"worker {self.id}: consuming",
            step,
            until=self._stopping.is_set,
            backoff=Backoff(base=0.05, cap=5.0),
            sleep=self._sleep_unless_stopping,
        )

    def _free_slots(self) -> int:
        """Handlers that may start now: a finished handler frees its slot at once, while its
        outcome waits for the next group commit (at most `concurrency` outcomes wait). A sync
        handler that timed out keeps its slot until its thread returns."""
        executing = sum(1 for r in self._running.values() if not r.recording)
        executing += self._executor.stuck_threads
        return min(self.concurrency - executing, 2 * self.concurrency - len(self._running))

    async def _wait_for_slot(self) -> None:
        self._slot_freed.clear()
        await self._wait_until(self._slot_freed)

    async def _wait_until(self, event: asyncio.Event) -> None:
        """Wait for `event`, or until the worker stops."""
        stopping = asyncio.create_task(self._stopping.wait())
        waited = asyncio.create_task(event.wait())
        try:
            await asyncio.wait({stopping, waited}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            stopping.cancel()
            waited.cancel()

    async def _sleep_unless_stopping(self, seconds: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._stopping.wait(), seconds)

    async def _consume(self, limit: int) -> None:
        """Receive up to `limit` notices, claim their jobs and start them."""
        app = self.app
        postgres = colocated(app.broker, app.store.url, app.store.schema)
        if postgres is not None:
            await self._consume_claiming(postgres, limit)
            return
        deliveries = await app.broker.receive(
            self.queues, max_messages=limit, wait_seconds=self._receive_wait
        )
        await self._dispatch(deliveries)

    async def _consume_claiming(self, broker: PostgresBroker, limit: int) -> None:
        """The built-in broker beside the jobs: one statement leases notices and claims their
        jobs (one commit per pickup, not two); what it could not claim goes the usual way."""
        store, grace = self.app.store, self.app.settings.timeout_backstop_seconds
        notices = await broker.poll(
            lambda: store.job_claim_notices(
                self.queues,
                max_messages=limit,
                lease_seconds=broker.lease_seconds,
                worker_id=self.id,
                timeout_grace=grace,
                held=list(self._running),
            ),
            self._receive_wait,
        )
        started: set[int] = set()
        duplicates: list[Delivery] = []
        unclaimed: list[Delivery] = []
        for notice in notices:
            delivery = broker.delivery(
                notice.message_id, notice.deliveries, notice.queue, notice.body
            )
            job = notice.job
            if job is not None and job.id in started:
                duplicates.append(delivery)  # two notices of one job in this batch
            elif job is not None and job.id not in self._running:
                self._start(job, delivery)
                started.add(job.id)
            else:  # not a notice, a job this worker holds, or one locked elsewhere
                unclaimed.append(delivery)
        await broker.ack(duplicates)
        if unclaimed:
            await self._dispatch(unclaimed)

    async def _dispatch(self, deliveries: list[Delivery]) -> None:
        if self._stopping.is_set():
            await self.app.broker.nack(deliveries)
            return
        wanted, drop, held = self._sort_deliveries(deliveries)
        claimed = []
        if wanted:
            claimed = await self.app.store.job_claim_many(
                list(wanted), self.id, self.app.settings.timeout_backstop_seconds
            )
        for job in claimed:
            self._start(job, wanted.pop(job.id))
        await self._settle_unclaimed(wanted, drop)
        if held:
            # This worker still holds an attempt of these jobs (recording its outcome before a
            # retry, or stale after a requeue): look again once it lets go, never drop them.
            await self.app.broker.nack(held, delay=0.1)

    def _sort_deliveries(
        self, deliveries: list[Delivery]
    ) -> tuple[dict[int, Delivery], list[Delivery], list[Delivery]]:
        wanted: dict[int, Delivery] = {}
        drop: list[Delivery] = []
        held: list[Delivery] = []
        for delivery in deliveries:
            try:
                job_id = decode_notice(delivery.body)
            except InvalidNoticeError as exc:
                log.warning(
                    "dropping a message on queue %r that is not a notice: %s", delivery.queue, exc
                )
                drop.append(delivery)
                continue
            if job_id in wanted:
                drop.append(delivery)  # a duplicate within this batch
            elif job_id in self._running:
                held.append(delivery)
            else:
                wanted[job_id] = delivery
        return wanted, drop, held

    async def _settle_unclaimed(self, unclaimed: dict[int, Delivery], drop: list[Delivery]) -> None:
        """Drop notices of jobs that are not claimable; keep those of jobs still queued."""
        retry: list[Delivery] = []
        if unclaimed:
            statuses = await self.app.store.job_status_many(list(unclaimed))
            for job_id, delivery in unclaimed.items():
                status = statuses.get(job_id)
                if status == "queued":
                    retry.append(delivery)  # locked by a concurrent transaction: look again
                else:
                    log.info("dropping notice of job %s (%s)", job_id, status or "unknown job id")
                    drop.append(delivery)
        await self.app.broker.ack(drop)
        if retry:
            await self.app.broker.nack(retry, delay=0.1)

    def _start(self, job: ClaimedJob, delivery: Delivery) -> None:
        task = asyncio.create_task(self._run_job(job, delivery), name=f"polyqueue-job-{job.id}")
        self._running[job.id] = _Running(job, delivery, task)

    # -- running ------------------------------------------------------------------------------

    async def _run_job(self, job: ClaimedJob, delivery: Delivery) -> None:
        fields = {"job_id": job.id, "handler": job.name, "queue": job.queue}
        with job_fields(**fields, attempt=job.attempt, worker_id=self.id):
            await self._run_and_record(job, delivery)

    async def _run_and_record(self, job: ClaimedJob, delivery: Delivery) -> None:
        try:
            outcome = await self._execute(job)
        except asyncio.CancelledError:
            await self._after_cancel(job, delivery)
            self._slot_freed.set()
            return
        self._running[job.id].recording = True  # from here on the task is not cancelled
        self._slot_freed.set()
        report_finished(self.app.plugin_manager, job, outcome, self.id)
        try:
            current = await self._writer.record(outcome, delivery)
        except PolyqueueError as exc:
            # No longer heartbeated: maintenance reclaims the job, which runs again.
            log.error("the outcome was not stored (%s); the job will be reclaimed", exc)  # noqa: TRY400
            return
        finally:
            self._running.pop(job.id, None)
            self._slot_freed.set()
        if not current:
            log.warning("outcome fenced off: the job was taken away from this worker")

    async def _execute(self, job: ClaimedJob) -> Outcome:
        handler = self.app.handlers.get(job.name)
        if handler is None:
            return self._executor.failure(
                job, HandlerNotFoundError(job.name, list(self.app.handlers))
            )
        ctx = JobContext(
            job_id=job.id,
            name=job.name,
            queue=job.queue,
            attempt=job.attempt,
            max_attempts=job.max_attempts,
            headers=job.headers,
            worker_id=self.id,
            _store=self.app.store,
        )
        report_started(self.app.plugin_manager, job, self.id)
        return await self._executor.run(handler, job, ctx)

    async def _after_cancel(self, job: ClaimedJob, delivery: Delivery) -> None:
        running = self._running.pop(job.id, None)
        reason = running.stop_reason if running else None
        if reason == "shutdown":
            self._stopped_by_shutdown.append((job, delivery))  # given back together, below
            return
        with contextlib.suppress(PolyqueueError):
            await self.app.broker.ack([delivery])
        log.info("job %s stopped: %s", job.id, reason or "cancelled")

    async def _give_back(self) -> None:
        """Queue the jobs the shutdown stopped again, with fresh notices (their deliveries may
        have expired): one statement, one publish and one ack for all of them."""
        stopped, self._stopped_by_shutdown = self._stopped_by_shutdown, []
        if not stopped:
            return
        with contextlib.suppress(PolyqueueError):
            jobs = [job for job, _ in stopped]
            released = await self.app.store.job_release_many([(j.id, j.attempt) for j in jobs])
            notices = [notice_message(j.id, j.queue, j.priority) for j in jobs if j.id in released]
            await self.app.publisher.publish(notices)
            await self.app.broker.ack([delivery for _, delivery in stopped])
        log.info("worker %s: gave back %d stopped jobs", self.id, len(stopped))

    def _on_cancel(self, _channel: str, payload: str) -> None:
        for job_id in payload.split(","):
            with contextlib.suppress(ValueError):
                self._stop_job(int(job_id), "taken away by an operator")

    def _stop_job(self, job_id: int, reason: str) -> None:
        running = self._running.get(job_id)
        if running is not None and running.stop_reason is None and not running.recording:
            running.stop_reason = reason
            running.task.cancel()

    # -- keeping alive ------------------------------------------------------------------------

    async def _heartbeat_loop(self) -> None:
        interval = self.app.settings.heartbeat_interval

        async def step() -> None:
            await asyncio.sleep(interval)
            await self._heartbeat()

        await supervise(f"worker {self.id}: heartbeat", step)

    async def _heartbeat(self) -> None:
        """Heartbeat every job this worker holds (a running job whose own heartbeat goes
        stale is reclaimed by maintenance, so a claim whose reply never arrived costs a
        reclaim, never a job), extend their deliveries, then the worker's own row."""
        running = list(self._running.values())
        if running:
            alive = await self.app.store.job_heartbeat_many(
                [(r.job.id, r.job.attempt) for r in running]
            )
            for r in running:
                if r.job.id not in alive:
                    self._stop_job(r.job.id, "lost")
            deliveries = [r.delivery for r in running if r.job.id in alive]
            with contextlib.suppress(BrokerError):
                await self.app.broker.extend(deliveries, self.app.broker.lease_seconds)
        if self._registered.is_set():
            if await self.app.store.worker_heartbeat(self._registration(self.id)):
                return
            log.error("worker %s was declared dead (a stall); its jobs were reclaimed", self.id)
            self._registered.clear()  # claim nothing more under the dead id
        await self._reregister()

    async def _reregister(self) -> None:
        """Carry on under a new id, registered before anything is claimed under it."""
        old = self.id
        await self._register(new_worker_id())
        log.warning("worker %s continues as %s", old, self.id)

    async def _register(self, worker_id: str) -> None:
        """Add `worker_id` to the registry, then claim under it from now on."""
        await self.app.store.worker_register(self._registration(worker_id))
        self.id = worker_id
        self._registered.set()

    def _registration(self, worker_id: str) -> WorkerRegistration:
        return WorkerRegistration(
            worker_id,
            socket.gethostname(),
            os.getpid(),
            self.queues,
            self.concurrency,
            len(self._running),
        )

    # -- stopping -----------------------------------------------------------------------------

    async def _shutdown(
        self, background: list[asyncio.Task[None]], writer: asyncio.Task[None]
    ) -> None:
        """Let in-flight jobs finish within the grace period, give back the others, store the
        last outcomes, and leave. Bounded: the whole shutdown takes the grace period plus a
        few seconds at most (a second `stop()` cuts it short), whatever the database does."""
        loop = asyncio.get_running_loop()
        grace_ends = loop.time() + self.app.settings.shutdown_grace_seconds
        tasks = [r.task for r in self._running.values()]
        if tasks:
            grace = self.app.settings.shutdown_grace_seconds
            log.info("worker %s: waiting up to %gs for %d jobs", self.id, grace, len(tasks))
            await self._wait_forced(tasks, grace_ends)
        for job_id in list(self._running):
            self._stop_job(job_id, "shutdown")
        self._writer.close()
        flush_ends = max(grace_ends, loop.time() + FLUSH_MINIMUM_SECONDS)
        last = [*(r.task for r in self._running.values()), writer]
        if self._forced.is_set():  # a second signal: the flush gets its minimum, no more
            await asyncio.wait(last, timeout=FLUSH_MINIMUM_SECONDS)
        else:
            await self._wait_forced(last, flush_ends)
        if not writer.done():
            log.error(
                "worker %s: %d outcomes could not be stored in time; their jobs will be"
                " reclaimed and run again",
                self.id,
                self._writer.pending,
            )
            writer.cancel()
            self._writer.abandon("the worker stopped before the outcome could be stored")
        await asyncio.wait([*tasks, writer], timeout=FLUSH_MINIMUM_SECONDS)
        await self._bounded(self._give_back(), flush_ends)
        for task in background:
            task.cancel()
        await asyncio.wait(background, timeout=FLUSH_MINIMUM_SECONDS)
        await self._bounded(self._control.close(), flush_ends)
        self._executor.close()
        await self._bounded(self.app.store.worker_stop(self.id), flush_ends)
        log.info("worker %s stopped", self.id)

    async def _wait_forced(self, tasks: Sequence[asyncio.Future[Any]], until: float) -> None:
        """Wait for `tasks` until the loop time `until`, or a second `stop()`."""
        pending = [task for task in tasks if not task.done()]
        if not pending or self._forced.is_set():
            return
        forced = asyncio.create_task(self._forced.wait())
        finished = asyncio.create_task(asyncio.wait(pending))  # cancelling it spares `tasks`
        timeout = max(0.0, until - asyncio.get_running_loop().time())
        await asyncio.wait({forced, finished}, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
        forced.cancel()
        finished.cancel()

    async def _bounded(self, work: Coroutine[Any, Any, None], until: float) -> None:
        """Run one step of the shutdown, given up at `until` (two seconds at least) or on
        any failure: it must not keep the process from exiting."""
        timeout = max(FLUSH_MINIMUM_SECONDS, until - asyncio.get_running_loop().time())
        try:
            async with asyncio.timeout(timeout):
                await work
        except (PolyqueueError, TimeoutError) as exc:
            log.warning("worker %s: shutdown step skipped: %s", self.id, exc or "timed out")
