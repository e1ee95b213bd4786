"""`Worker`: consumes notices, claims jobs in batches, runs them, and keeps them alive."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from polyqueue.backoff import Backoff
from polyqueue.broker import present
from polyqueue.burst import BURST_RECEIVE_WAIT_SECONDS, jobs_ready
from polyqueue.context import JobContext
from polyqueue.deadlines import run_bounded, sleep_unless, wait_either, wait_tasks
from polyqueue.dependencies import ring_released
from polyqueue.exceptions import (
    BrokerError,
    HandlerNotFoundError,
    PolyqueueError,
    WorkerLoopError,
)
from polyqueue.executor import Executor, RetryPolicy
from polyqueue.flow import declare_limits, flow_channel
from polyqueue.intake import Intake
from polyqueue.listener import Listener
from polyqueue.logs import job_fields
from polyqueue.maintenance import Maintenance
from polyqueue.membership import Membership
from polyqueue.outcomes import OutcomeWriter
from polyqueue.pace import Pace
from polyqueue.reporting import report_finished, report_started
from polyqueue.scheduler import Scheduler
from polyqueue.supervision import supervise

if TYPE_CHECKING:
    from collections.abc import Coroutine, Sequence

    from polyqueue.broker import Delivery
    from polyqueue.job import ClaimedJob, Outcome
    from polyqueue.middleware import DispatchMiddleware
    from polyqueue.runtime import Runtime

__all__ = ["Worker"]

log = logging.getLogger(__name__)

RECEIVE_WAIT_SECONDS = 1.0
OUTCOMES_WAITING_PER_SLOT = 5
"""Finished jobs, per slot, whose outcomes may wait for the group commit before no new job
starts: enough for an outcome statement to carry what the worker finishes during the one
before it, even through a slow link, and a bound on the work a crash makes run again."""
FLUSH_MINIMUM_SECONDS = 2.0
"""A stopping worker tries this long at least to store its last outcomes, even when its
handlers used up the whole grace period (a second signal cuts it short)."""


@dataclass(slots=True)
class _Running:
    job: ClaimedJob
    delivery: Delivery | None  # None: a held-back job started by flow control, no notice
    task: asyncio.Task[None]
    stop_reason: str | None = None  # "shutdown" | "lost" | "cancelled" once told to stop
    recording: bool = False  # the handler is done; the outcome is being written


class Worker:
    """Runs jobs from `queues`, at most `concurrency` at once, until `stop()` is called
    (or, with `burst`, until no job of its queues is ready to run and it runs none)."""

    def __init__(
        self,
        runtime: Runtime,
        middlewares: Sequence[DispatchMiddleware] = (),
        *,
        queues: Sequence[str],
        concurrency: int,
        burst: bool = False,
    ) -> None:
        self.runtime = runtime
        self.queues = list(queues)
        self.concurrency = concurrency
        self.burst = burst
        settings = runtime.settings
        self._slot_freed = asyncio.Event()
        self._executor = Executor(
            RetryPolicy(settings.retry_backoff_base, settings.retry_backoff_max),
            concurrency,
            runtime.handlers,
            runtime.parts.serializer,
            list(middlewares),
            on_thread_released=self._slot_freed.set,
        )
        self._running: dict[int, _Running] = {}
        self._ready: dict[int, tuple[ClaimedJob, Delivery | None]] = {}
        """Jobs claimed ahead (`Pace`), waiting for a slot, in claim order."""
        self._pace = Pace()
        self._dropping: set[asyncio.Task[None]] = set()
        self._stopped_by_shutdown: list[tuple[ClaimedJob, Delivery | None]] = []
        self._stopping = asyncio.Event()
        self._intake = Intake(
            runtime,
            self.queues,
            receive_wait=BURST_RECEIVE_WAIT_SECONDS if burst else RECEIVE_WAIT_SECONDS,
            stopping=self._stopping.is_set,
        )
        self._forced = asyncio.Event()
        self._membership = Membership(
            runtime.store, self.queues, concurrency, lambda: self.running_jobs
        )
        self._failure: WorkerLoopError | None = None
        self._started = False
        self._finished = asyncio.Event()
        self._scheduler = Scheduler(
            runtime.store, runtime.broker, runtime.publisher, settings.scheduler_interval
        )
        self._writer = OutcomeWriter(
            runtime.store,
            runtime.broker,
            self._scheduler.wake_at,
            on_released=lambda released: ring_released(runtime, released),
            flow_channel=flow_channel(settings),
            worker_id=lambda: self.id,
        )
        self._flow_channel = flow_channel(settings)
        self._control = Listener(
            runtime.database_url,
            [runtime.cancel_channel, self._flow_channel],
            self._on_control,
            options=runtime.store.options,
        )

    @property
    def id(self) -> str:
        """The id this worker claims jobs under (a new one after it was declared dead)."""
        return self._membership.id

    @property
    def running_jobs(self) -> int:
        """How many jobs this worker holds right now: running, their outcomes being written,
        or claimed ahead and waiting for a slot."""
        return len(self._running) + len(self._ready)

    def stop(self) -> None:
        """Stop consuming; in-flight jobs get the grace period, unless stop is called again."""
        if self._stopping.is_set():
            self._forced.set()
        self._stopping.set()
        self.runtime.broker.interrupt()

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
        await self._membership.register()
        await declare_limits(self.runtime)
        await self._control.start()
        log.info(
            "worker %s started on queues %s, concurrency %d", self.id, self.queues, self.concurrency
        )
        background = [
            self._background(self._heartbeat_loop(), "polyqueue-heartbeat"),
            self._background(self._scheduler.run(), "polyqueue-scheduler"),
        ]
        if self.runtime.settings.maintenance:
            background.append(self._background(Maintenance(self.runtime).run(), "polyqueue-maint"))
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
        self.runtime.broker.interrupt()

    # -- consuming ----------------------------------------------------------------------------

    async def _consume_loop(self) -> None:
        store = self.runtime.store
        batch = self.runtime.broker.capabilities.max_batch

        async def step() -> None:
            if not self._membership.registered.is_set():
                await wait_either(self._membership.registered, self._stopping)
                return
            if self.burst and not self.running_jobs and not await jobs_ready(store, self.queues):
                log.info("worker %s: no job is ready to run; the burst is over", self.id)
                self.stop()
                return
            if self._holding_suspect():  # claim nothing more until it has run, alone
                self._fill_slots()
                await self._wait_for_slot()
                return
            free = self._free_slots()
            if free > 0 and self._ready:
                self._start_ready(free)
                return
            room = free + self._pace.ahead(self.concurrency) - len(self._ready)
            if room <= 0:
                await self._wait_for_slot()
                return
            await self._consume(min(room, batch), max(free, 0))

        await supervise(
            f"worker {self.id}: consuming",
            step,
            until=self._stopping.is_set,
            backoff=Backoff(base=0.05, cap=5.0),
            sleep=functools.partial(sleep_unless, self._stopping),
        )

    def _free_slots(self) -> int:
        """Handlers that may start now: a finished handler frees its slot at once, while its
        outcome waits for the next group commit (at most `OUTCOMES_WAITING_PER_SLOT` per
        slot wait). A sync handler that timed out keeps its slot until its thread returns."""
        executing = sum(1 for r in self._running.values() if not r.recording)
        executing += self._executor.stuck_threads
        waiting = OUTCOMES_WAITING_PER_SLOT * self.concurrency
        return min(self.concurrency - executing, self.concurrency + waiting - len(self._running))

    async def _wait_for_slot(self) -> None:
        self._slot_freed.clear()
        await wait_either(self._slot_freed, self._stopping)

    async def _consume(self, limit: int, free: int) -> None:
        """Claim up to `limit` jobs (held-back jobs only for the `free` slots) and start as
        many as slots are free; the others wait for a slot in `_ready`."""
        loop = asyncio.get_running_loop()
        held = self._running.keys() | self._ready.keys()
        sent = loop.time()
        claimed = await self._intake.take(limit, self.id, held, held_back_limit=free)
        if len(claimed) == limit:
            self._pace.claimed(loop.time() - sent)
        for job, delivery in claimed:
            self._ready[job.id] = (job, delivery)
        self._fill_slots()

    def _fill_slots(self) -> None:
        """Start jobs claimed ahead in the slots free now, unless the worker is stopping (a
        stopping worker gives them back). Also called as a slot frees, so they never wait
        for the claim loop, which may be waiting for its next claim."""
        if self._ready and not self._stopping.is_set():
            self._start_ready(self._free_slots())

    def _start_ready(self, slots: int) -> None:
        """Start up to `slots` of the jobs claimed ahead, oldest claim first. A suspect job
        (`ClaimedJob.suspect`: its worker was lost before) waits until the worker holds
        nothing else, then starts alone: should it kill the worker again, no other job is
        lost with it and charged a reclaim (the poison count)."""
        chosen: list[int] = []
        for job_id, (job, _) in self._ready.items():  # stops after `slots`: no copy of all
            if len(chosen) >= slots:
                break
            if not job.suspect:
                chosen.append(job_id)
        for job_id in chosen:
            self._start(*self._ready.pop(job_id))
        if not chosen and slots > 0 and self._ready and not self._running:  # only suspects
            self._start(*self._ready.pop(next(iter(self._ready))))

    def _holding_suspect(self) -> bool:
        """Whether a suspect job is waiting for its turn or running."""
        return any(job.suspect for job, _ in self._ready.values()) or any(
            running.job.suspect for running in self._running.values()
        )

    def _start(self, job: ClaimedJob, delivery: Delivery | None) -> None:
        task = asyncio.create_task(self._run_job(job, delivery), name=f"polyqueue-job-{job.id}")
        self._running[job.id] = _Running(job, delivery, task)

    # -- running ------------------------------------------------------------------------------

    async def _run_job(self, job: ClaimedJob, delivery: Delivery | None) -> None:
        fields = {"job_id": job.id, "handler": job.name, "queue": job.queue}
        with job_fields(**fields, attempt=job.attempt, worker_id=self.id):
            await self._run_and_record(job, delivery)

    async def _run_and_record(self, job: ClaimedJob, delivery: Delivery | None) -> None:
        started = asyncio.get_running_loop().time()
        try:
            outcome = await self._execute(job)
        except asyncio.CancelledError:
            await self._after_cancel(job, delivery)
            self._slot_freed.set()
            self._fill_slots()
            return
        self._running[job.id].recording = True  # from here on the task is not cancelled
        self._slot_freed.set()
        self._fill_slots()
        self._pace.ran(asyncio.get_running_loop().time() - started)
        if delivery is None:  # a limited job: held-back jobs may start while its outcome waits
            self._intake.flow.handler_done()
        report_finished(self.runtime.plugin_manager, job, outcome, self.id)
        try:
            current = await self._writer.record(outcome, delivery)
        except PolyqueueError as exc:
            # No longer heartbeated: maintenance reclaims the job, which runs again.
            log.error("the outcome was not stored (%s); the job will be reclaimed", exc)  # noqa: TRY400
            return
        finally:
            self._running.pop(job.id, None)
            self._slot_freed.set()
            self._fill_slots()
            if delivery is None:  # a limited job: its slot is free for the held-back ones
                self._intake.flow.finished()
        if not current:
            log.warning("outcome fenced off: the job was taken away from this worker")

    async def _execute(self, job: ClaimedJob) -> Outcome:
        handler = self.runtime.handlers.get(job.name)
        if handler is None:
            return self._executor.failure(
                job, HandlerNotFoundError(job.name, list(self.runtime.handlers))
            )
        ctx = JobContext.of(job, self.id, self.runtime.store)
        report_started(self.runtime.plugin_manager, job, self.id)
        return await self._executor.run(handler, job, ctx)

    async def _after_cancel(self, job: ClaimedJob, delivery: Delivery | None) -> None:
        running = self._running.pop(job.id, None)
        reason = running.stop_reason if running else None
        if reason == "shutdown":
            self._stopped_by_shutdown.append((job, delivery))  # given back together, below
            return
        await self._settle_stopped(delivery, reason)
        log.info("job %s stopped: %s", job.id, reason or "cancelled")

    async def _give_back(self) -> None:
        stopped, self._stopped_by_shutdown = self._stopped_by_shutdown, []
        if stopped:
            await self._intake.give_back(stopped, self.id)
            log.info("worker %s: gave back %d stopped jobs", self.id, len(stopped))

    def _on_control(self, channel: str, payload: str) -> None:
        if channel == self._flow_channel:
            self._intake.flow.poke()  # a limited job finished elsewhere, or limits changed
            return
        for job_id in payload.split(","):
            with contextlib.suppress(ValueError):
                self._stop_job(int(job_id), "taken away by an operator")

    def _stop_job(self, job_id: int, reason: str) -> None:
        if job_id in self._ready:  # claimed ahead, never started
            self._drop_ready(job_id, reason)
            return
        running = self._running.get(job_id)
        if running is not None and running.stop_reason is None and not running.recording:
            running.stop_reason = reason
            running.task.cancel()

    def _drop_ready(self, job_id: int, reason: str) -> None:
        """Let go of a job claimed ahead that is no longer this worker's to run (lost, or
        cancelled by an operator): its notice is settled as a stopped job's is."""
        job, delivery = self._ready.pop(job_id)
        task = asyncio.create_task(
            self._settle_stopped(delivery, reason), name=f"polyqueue-drop-{job.id}"
        )
        self._dropping.add(task)
        task.add_done_callback(self._dropping.discard)
        log.info("job %s stopped before it started: %s", job.id, reason)

    async def _settle_stopped(self, delivery: Delivery | None, reason: str | None) -> None:
        """The notice of a job stopped here: acked, unless the job was lost (no longer this
        worker's: it may be queued again, its claim lost in a server crash, and needs its
        notice; a redelivery of a job running or finished elsewhere is dropped)."""
        with contextlib.suppress(PolyqueueError):
            if reason == "lost":
                await self.runtime.broker.nack(present([delivery]))
            else:
                await self.runtime.broker.ack(present([delivery]))
        if delivery is None:
            self._intake.flow.finished()

    # -- keeping alive ------------------------------------------------------------------------

    async def _heartbeat_loop(self) -> None:
        interval = self.runtime.settings.heartbeat_interval

        async def step() -> None:
            await asyncio.sleep(interval)
            await self._heartbeat()

        await supervise(f"worker {self.id}: heartbeat", step)

    async def _heartbeat(self) -> None:
        """Heartbeat every job this worker holds (a running job whose own heartbeat goes
        stale is reclaimed by maintenance, so a claim whose reply never arrived costs a
        reclaim, never a job), extend their deliveries, then the worker's own row."""
        held = [(r.job, r.delivery) for r in self._running.values()]
        held += self._ready.values()
        if held:
            alive = await self.runtime.store.job_heartbeat_many(
                [(job.id, job.attempt) for job, _ in held], self.id
            )
            for job, _ in held:
                if job.id not in alive:
                    self._stop_job(job.id, "lost")
            deliveries = present([delivery for job, delivery in held if job.id in alive])
            with contextlib.suppress(BrokerError):
                await self.runtime.broker.extend(deliveries, self.runtime.broker.lease_seconds)
        await self._membership.heartbeat()

    # -- stopping -----------------------------------------------------------------------------

    async def _shutdown(
        self, background: list[asyncio.Task[None]], writer: asyncio.Task[None]
    ) -> None:
        """Let in-flight jobs finish within the grace period, give back the others, store the
        last outcomes, and leave. Bounded: the whole shutdown takes the grace period plus a
        few seconds at most (a second `stop()` cuts it short), whatever the database does."""
        loop = asyncio.get_running_loop()
        grace_ends = loop.time() + self.runtime.settings.shutdown_grace_seconds
        self._stopped_by_shutdown += self._ready.values()  # never started: given back below
        self._ready.clear()
        tasks = [r.task for r in self._running.values()]
        if tasks:
            grace = self.runtime.settings.shutdown_grace_seconds
            log.info("worker %s: waiting up to %gs for %d jobs", self.id, grace, len(tasks))
            await wait_tasks(tasks, grace_ends, self._forced)
        for job_id in list(self._running):
            self._stop_job(job_id, "shutdown")
        self._writer.close()
        flush_ends = max(grace_ends, loop.time() + FLUSH_MINIMUM_SECONDS)
        last = [*(r.task for r in self._running.values()), *self._dropping, writer]
        if self._forced.is_set():  # a second signal: the flush gets its minimum, no more
            await asyncio.wait(last, timeout=FLUSH_MINIMUM_SECONDS)
        else:
            await wait_tasks(last, flush_ends, self._forced)
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
        self._intake.flow.close()
        await self._bounded(self._membership.leave(), flush_ends)
        log.info("worker %s stopped", self.id)

    async def _bounded(self, work: Coroutine[Any, Any, None], until: float) -> None:
        """One step of the shutdown: it must not keep the process from exiting."""
        await run_bounded(work, until, FLUSH_MINIMUM_SECONDS, f"worker {self.id}: shutdown")
