"""`Polyqueue`: the app object that registers handlers, enqueues, reads jobs and runs workers."""

from __future__ import annotations

import asyncio
import logging
import signal
import uuid
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Self, TypeVar, overload

from pydantic import BaseModel, TypeAdapter

from polyqueue.broker import Broker, BrokerEnvironment, Message
from polyqueue.brokers.postgres import colocated
from polyqueue.cron import CronSchedule, CronTick, Misfire
from polyqueue.events import JobEnqueued
from polyqueue.exceptions import (
    ConfigurationError,
    HandlerNotFoundError,
    JobNotFoundError,
    JobTimeoutError,
    ResultUnavailableError,
)
from polyqueue.handlers import Handler, build_handler
from polyqueue.listener import Listener
from polyqueue.middleware import EnqueueContext, compose, flatten
from polyqueue.migrations import migrate_all
from polyqueue.notices import notice_message
from polyqueue.pgconnect import ConnectionOptions
from polyqueue.plugins import (
    check_hookimpls,
    check_plugin,
    create_plugin_manager,
    emit,
    migration_lines,
    select_broker,
    select_serializer,
)
from polyqueue.producer import EnqueueOptions, Producer
from polyqueue.psycopg_executor import adapt_connection
from polyqueue.publisher import NoticePublisher
from polyqueue.settings import PolyqueueSettings, TimeoutStrategy, load_settings
from polyqueue.status import FINISHED, JobStatus
from polyqueue.store import Executor, JobStore
from polyqueue.sync import SyncPolyqueue
from polyqueue.worker import Worker

if TYPE_CHECKING:
    from datetime import datetime, timedelta

    from polyqueue.embedded import EmbeddedPostgres
    from polyqueue.job import Job

__all__ = ["Polyqueue"]

log = logging.getLogger(__name__)

F = TypeVar("F", bound=Callable[..., Any])
T = TypeVar("T")
HandlerRef = str | Callable[..., Any]
Payload = BaseModel | Mapping[str, Any]


def _given(value: T | None, default: T) -> T:
    """`value` unless it is None (0 is a value: `build_handler` refuses it, not replaces it)."""
    return default if value is None else value


class Polyqueue:
    """One job queue: settings, handlers, the job store and the broker.

    `async with app:` opens the pool (starting the embedded PostgreSQL when no
    `database_url` is set), applies migrations and starts the broker.
    """

    def __init__(
        self,
        settings: PolyqueueSettings | None = None,
        *,
        plugins: Sequence[object] = (),
        metrics: object | None = None,
        **overrides: Any,
    ) -> None:
        self._given_settings = settings
        self._overrides = overrides
        extra = [*plugins, *([metrics] if metrics is not None else [])]
        self.plugin_manager = create_plugin_manager(*extra)
        self._apply_settings(settings if settings is not None else load_settings(**overrides))
        self.migration_lines = migration_lines(self.plugin_manager)
        self.handlers: dict[str, Handler] = {}
        self.cron_schedules: dict[str, CronSchedule] = {}
        self._names: dict[Callable[..., Any], str] = {}
        self._store: JobStore | None = None
        self._broker: Broker | None = None
        self._producer: Producer | None = None
        self._publisher: NoticePublisher | None = None
        self._relays: set[asyncio.Task[None]] = set()
        self._workers: list[Worker] = []
        self._outbox: Listener | None = None
        self._embedded: EmbeddedPostgres | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._sync: SyncPolyqueue | None = None
        self._enqueue_chain: Callable[[EnqueueContext], Awaitable[list[int]]] = self._enqueue
        self.plugin_manager.hook.polyqueue_configure.call_historic(kwargs={"app": self})

    def _apply_settings(self, settings: PolyqueueSettings) -> None:
        self.settings = settings
        self.broker_class = select_broker(self.plugin_manager, settings.queue_backend)
        self.serializer = select_serializer(self.plugin_manager, settings.serializer)
        self.database_url = settings.database_url or ""
        self.cancel_channel = f"{settings.schema_name}_cancel"

    def configure(self, **overrides: Any) -> None:
        """Change settings before `start`, e.g. in a test: the environment is read again, and
        the constructor's overrides, then these, go on top (with a `PolyqueueSettings` given
        to the constructor: that object's values, then these). Handlers keep the queue and
        limits they resolved when they were registered."""
        if self._loop is not None:
            raise ConfigurationError("configure() must come before start: the app is running")
        self._overrides = {**self._overrides, **overrides}
        given = self._given_settings
        if given is None:
            self._apply_settings(load_settings(**self._overrides))
        else:
            self._apply_settings(load_settings(**{**given.model_dump(), **self._overrides}))

    @property
    def loop(self) -> asyncio.AbstractEventLoop | None:
        """The event loop the app was started on; None while it is not started."""
        return self._loop

    @property
    def sync(self) -> SyncPolyqueue:
        """Blocking calls for sync code (`app.sync.enqueue(...)`): see `polyqueue.sync`."""
        if self._sync is None:
            self._sync = SyncPolyqueue(self)
        return self._sync

    def add_plugin(self, plugin: object) -> None:
        """Register a plugin object (metrics, middleware...) after construction."""
        check_plugin(self.plugin_manager, plugin)
        self.plugin_manager.register(plugin)
        try:
            check_hookimpls(self.plugin_manager)
        except ConfigurationError:
            self.plugin_manager.unregister(plugin)
            raise

    # -- handlers -----------------------------------------------------------------------------

    def register(
        self,
        name: str | None = None,
        *,
        queue: str | None = None,
        max_attempts: int | None = None,
        max_run_seconds: float | None = None,
        timeout_strategy: TimeoutStrategy | None = None,
    ) -> Callable[[F], F]:
        """Register a handler `(payload: Model[, ctx: JobContext]) -> result` under `name`."""
        settings = self.settings

        def decorate(function: F) -> F:
            handler_name = name or f"{function.__module__}.{function.__qualname__}"
            if handler_name in self.handlers:
                raise ConfigurationError(f"a handler is already registered as {handler_name!r}")
            self.handlers[handler_name] = build_handler(
                function,
                name=handler_name,
                queue=queue or settings.default_queue,
                max_attempts=_given(max_attempts, settings.default_max_attempts),
                max_run_seconds=_given(max_run_seconds, settings.default_max_run_seconds),
                timeout_strategy=timeout_strategy or settings.default_timeout_strategy,
            )
            self._names[function] = handler_name
            return function

        return decorate

    def cron(
        self,
        expression: str,
        *,
        name: str | None = None,
        misfire: Misfire = "skip",
        queue: str | None = None,
        max_attempts: int | None = None,
        max_run_seconds: float | None = None,
    ) -> Callable[[F], F]:
        """Register a handler `(tick: CronTick[, ctx]) -> ...` and fire it on `expression`.

        Each tick becomes one job (idempotency key: schedule name + tick), so any number of
        workers fire it exactly once. `misfire` says what happens to ticks missed while no
        worker ran: `skip` them, or `run_once` for the latest.
        """

        def decorate(function: F) -> F:
            schedule_name = name or f"{function.__module__}.{function.__qualname__}"
            if schedule_name in self.cron_schedules:
                raise ConfigurationError(f"a cron schedule is already named {schedule_name!r}")
            schedule = CronSchedule(schedule_name, expression, schedule_name, misfire)
            self.register(
                schedule_name,
                queue=queue,
                max_attempts=max_attempts,
                max_run_seconds=max_run_seconds,
            )(function)
            if self.handlers[schedule_name].payload_model is not CronTick:
                del self.handlers[schedule_name]
                raise ConfigurationError(
                    f"cron handler {schedule_name!r} must take `tick: CronTick` as its payload"
                )
            self.cron_schedules[schedule_name] = schedule
            return function

        return decorate

    def handler_name(self, ref: HandlerRef) -> str:
        """The registered name of a handler given by name or by function."""
        if isinstance(ref, str):
            return ref
        if ref in self._names:
            return self._names[ref]
        raise HandlerNotFoundError(getattr(ref, "__qualname__", repr(ref)), list(self.handlers))

    # -- lifecycle ----------------------------------------------------------------------------

    async def start(self) -> None:
        """Open the store, migrate, start the broker (and the outbox relay if needed)."""
        settings = self.settings
        if not settings.database_url:
            self.database_url = await self._start_embedded()
        store = JobStore(
            self.database_url,
            settings.schema_name,
            pool_size=settings.pool_max_size or max(10, settings.concurrency + 4),
            options=ConnectionOptions.from_settings(settings),
        )
        await store.open()
        self._store = store
        async with store.migration_connection() as connection:
            await migrate_all(connection, settings.schema_name, self.migration_lines)
        middlewares = flatten(self.plugin_manager.hook.polyqueue_enqueue_middleware(app=self))
        self._enqueue_chain = compose(middlewares, self._enqueue)
        environment = BrokerEnvironment(settings, self.database_url, settings.schema_name)
        self._broker = self.broker_class.from_environment(environment)
        await self._broker.start()
        self._publisher = NoticePublisher(self._broker)
        outbox = f"pq_outbox_{uuid.uuid4().hex[:16]}"
        postgres_broker = colocated(self._broker, store.url, store.schema)
        self._producer = Producer(
            store,
            self._broker,
            self._publisher,
            handlers=self.handlers,
            settings=settings,
            outbox_channel=outbox,
            announce_channel=None if postgres_broker is None else postgres_broker.channel,
        )
        if not self._broker.capabilities.transactional_publish:
            self._outbox = Listener(self.database_url, [outbox], self._relay, options=store.options)
            await self._outbox.start()
        self._loop = asyncio.get_running_loop()

    async def _start_embedded(self) -> str:
        from polyqueue.embedded import EmbeddedPostgres  # noqa: PLC0415  (optional extra)

        self._embedded = EmbeddedPostgres(self.settings.data_dir / "postgres", record=True)
        return await asyncio.to_thread(self._embedded.start)

    def _relay(self, _channel: str, payload: str) -> None:
        task = asyncio.get_running_loop().create_task(self.producer.relay_outbox(payload))
        self._relays.add(task)
        task.add_done_callback(self._relay_done)

    def _relay_done(self, task: asyncio.Task[None]) -> None:
        self._relays.discard(task)
        if not task.cancelled() and (exc := task.exception()) is not None:
            # The jobs are committed: the republisher rings for them if this relay failed.
            log.error("relaying outbox notices failed", exc_info=exc)

    async def close(self) -> None:
        """Stop this app's workers, then close the broker, the store and the embedded server."""
        for worker in self._workers:
            worker.stop()
        await asyncio.gather(*(worker.wait_stopped() for worker in self._workers))
        self._workers.clear()
        if self._outbox is not None:
            await self._outbox.close()
        if self._relays:
            await asyncio.gather(*self._relays, return_exceptions=True)
        if self._publisher is not None:
            await self._publisher.close()
        if self._broker is not None:
            await self._broker.close()
        if self._store is not None:
            await self._store.close()
        if self._embedded is not None:
            await asyncio.to_thread(self._embedded.stop)
        self._store = self._broker = self._producer = self._outbox = self._embedded = None
        self._publisher = self._loop = None

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    @property
    def store(self) -> JobStore:
        """The job store (after `start`)."""
        if self._store is None:
            raise RuntimeError("the app is not started: use `async with app:`")
        return self._store

    @property
    def broker(self) -> Broker:
        """The broker (after `start`)."""
        if self._broker is None:
            raise RuntimeError("the app is not started: use `async with app:`")
        return self._broker

    @property
    def publisher(self) -> NoticePublisher:
        """Publishes notices of committed jobs, retrying while the broker is down."""
        if self._publisher is None:
            raise RuntimeError("the app is not started: use `async with app:`")
        return self._publisher

    @property
    def producer(self) -> Producer:
        """The producer (after `start`)."""
        if self._producer is None:
            raise RuntimeError("the app is not started: use `async with app:`")
        return self._producer

    # -- enqueue ------------------------------------------------------------------------------

    async def enqueue(
        self,
        handler: HandlerRef,
        payload: Payload,
        *,
        delay: float | timedelta | None = None,
        run_at: datetime | None = None,
        priority: int = 0,
        queue: str | None = None,
        idempotency_key: str | None = None,
        max_attempts: int | None = None,
        headers: Mapping[str, str] | None = None,
        connection: Executor | None = None,
    ) -> int:
        """Enqueue one job; return its id (the existing job's id if the key is taken).

        With `connection`, the job is inserted in that connection's transaction: rolled back
        means no job and no notice.
        """
        options = EnqueueOptions(
            delay=delay,
            run_at=run_at,
            priority=priority,
            queue=queue,
            idempotency_key=idempotency_key,
            max_attempts=max_attempts,
            headers=headers,
        )
        context = EnqueueContext(self.handler_name(handler), [payload], options, connection)
        (job_id,) = await self._enqueue_chain(context)
        return job_id

    async def enqueue_many(
        self,
        handler: HandlerRef,
        payloads: Sequence[Payload],
        *,
        delay: float | timedelta | None = None,
        run_at: datetime | None = None,
        priority: int = 0,
        queue: str | None = None,
        max_attempts: int | None = None,
        headers: Mapping[str, str] | None = None,
        connection: Executor | None = None,
    ) -> list[int]:
        """Enqueue many jobs of one handler in one round trip; return their ids in order.

        Every payload is validated first: one invalid payload enqueues nothing.
        """
        options = EnqueueOptions(
            delay=delay,
            run_at=run_at,
            priority=priority,
            queue=queue,
            max_attempts=max_attempts,
            headers=headers,
        )
        if not payloads:
            return []
        context = EnqueueContext(self.handler_name(handler), payloads, options, connection)
        return await self._enqueue_chain(context)

    async def _enqueue(self, context: EnqueueContext) -> list[int]:
        """The innermost step of the enqueue middleware chain: insert, publish, emit."""
        jobs = self.producer.build(context.name, context.payloads, context.options)
        inserted = await self.producer.insert(jobs, adapt_connection(context.connection))
        if self.plugin_manager.hook.polyqueue_job_enqueued.get_hookimpls():  # else no events
            for row in inserted:
                if row.created:
                    event = JobEnqueued(row.id, context.name, row.queue, row.status == "scheduled")
                    emit(self.plugin_manager, "polyqueue_job_enqueued", event)
        return [row.id for row in inserted]

    # -- reading ------------------------------------------------------------------------------

    async def get_job(self, job_id: int) -> Job:
        """The job as stored now; `JobNotFoundError` if there is none."""
        return await self.store.job_get(job_id)

    async def wait_for(self, job_id: int, timeout: float | None = None) -> Job:
        """Wait until the job is succeeded, failed or cancelled; give up after `timeout` s."""
        delay = 0.005
        try:
            async with asyncio.timeout(timeout):
                while True:
                    status = (await self.store.job_status_many([job_id])).get(job_id)
                    if status is None:
                        raise JobNotFoundError(job_id)
                    if JobStatus(status) in FINISHED:
                        return await self.get_job(job_id)
                    await asyncio.sleep(delay)
                    delay = min(delay * 2, 0.25)
        except TimeoutError as exc:
            raise JobTimeoutError(f"job {job_id} did not finish within {timeout}s") from exc

    async def get_job_result(self, job_id: int) -> Any:
        """The result as stored (decoded JSON); `ResultUnavailableError` unless it succeeded."""
        job = await self.get_job(job_id)
        if job.status is not JobStatus.SUCCEEDED:
            raise ResultUnavailableError(job_id, job.status.value)
        return job.result

    @overload
    async def get_job_result_typed(self, job_id: int, model: type[T]) -> T: ...
    @overload
    async def get_job_result_typed(self, job_id: int, model: Any) -> Any: ...
    async def get_job_result_typed(self, job_id: int, model: Any) -> Any:
        """The result validated as `model` (a BaseModel or any type pydantic understands)."""
        return TypeAdapter(model).validate_python(await self.get_job_result(job_id))

    async def get_job_result_typed_via_registry(self, job_id: int) -> Any:
        """The result validated as the return annotation of the job's registered handler."""
        job = await self.get_job(job_id)
        handler = self.handlers.get(job.name)
        if handler is None:
            raise HandlerNotFoundError(job.name, list(self.handlers))
        if job.status is not JobStatus.SUCCEEDED:
            raise ResultUnavailableError(job_id, job.status.value)
        return TypeAdapter(handler.returns).validate_python(job.result)

    # -- control ------------------------------------------------------------------------------

    async def cancel(self, job_id: int) -> bool:
        """Cancel a scheduled, queued or running job; False if it had already finished."""
        return await self._control("cancel", [job_id]) == [job_id] or await self._missing(job_id)

    async def requeue(self, job_id: int) -> bool:
        """Queue a failed, cancelled (or running) job again with fresh attempts.

        Returns False if the job's status does not allow it (scheduled, queued, succeeded).
        """
        return await self._control("requeue", [job_id]) == [job_id] or await self._missing(job_id)

    async def fail(self, job_id: int, reason: str = "failed by an operator") -> bool:
        """Fail a scheduled, queued or running job now; False if it had already finished."""
        return await self._control("fail", [job_id], reason) == [job_id] or await self._missing(
            job_id
        )

    async def _missing(self, job_id: int) -> bool:
        await self.get_job(job_id)  # raises JobNotFoundError if there is no such job
        return False

    async def control_many(
        self, action: str, job_ids: Sequence[int], reason: str = ""
    ) -> list[int]:
        """Apply `action` (cancel, requeue, fail) to `job_ids`; return the ids it changed."""
        if action not in {"cancel", "requeue", "fail"}:
            raise ValueError(f"unknown action {action!r}: use cancel, requeue or fail")
        return await self._control(action, job_ids, reason or "failed by an operator")

    async def _control(self, action: str, job_ids: Sequence[int], reason: str = "") -> list[int]:
        store, broker = self.store, self.broker
        messages: list[Message] = []
        async with store.transaction() as connection:
            if action == "requeue":
                rows = await store.job_requeue_many(job_ids, connection)
                messages = [notice_message(r["id"], r["queue"], r["priority"]) for r in rows]
                if messages and broker.capabilities.transactional_publish:
                    await broker.publish_in(connection, messages)
                    messages = []
            elif action == "cancel":
                rows = await store.job_cancel_many(job_ids, connection)
            else:
                rows = await store.job_fail_many(job_ids, reason, connection)
            stopped = [str(r["id"]) for r in rows if r["worker_id"]]
            for chunk in range(0, len(stopped), 500):
                payload = ",".join(stopped[chunk : chunk + 500])
                await store.notify(self.cancel_channel, payload, connection)
        await self.publisher.publish(messages)
        return sorted(r["id"] for r in rows)

    # -- working ------------------------------------------------------------------------------

    def worker(
        self,
        *,
        queues: Sequence[str] | None = None,
        concurrency: int | None = None,
        burst: bool = False,
    ) -> Worker:
        """A worker for `queues` (default: every queue a registered handler uses).

        A `burst` worker stops by itself once no job of its queues is ready to run (queued,
        or scheduled and due) and it runs none.
        """
        chosen = list(queues) if queues else sorted({h.queue for h in self.handlers.values()})
        worker = Worker(
            self,
            queues=chosen or [self.settings.default_queue],
            concurrency=concurrency or self.settings.concurrency,
            burst=burst,
        )
        self._workers.append(worker)
        return worker

    async def run_until_idle(
        self, *, queues: Sequence[str] | None = None, concurrency: int | None = None
    ) -> None:
        """Run jobs in this event loop until none of `queues` is ready to run, then return.

        For tests: enqueue, `await app.run_until_idle()`, assert on the outcome. Jobs
        scheduled for later (a delay, a retry's backoff) stay scheduled; with
        `retry_backoff_base=0` retries are due at once and run too.
        """
        worker = self.worker(queues=queues, concurrency=concurrency, burst=True)
        try:
            await worker.run()
        finally:
            self._workers.remove(worker)

    async def run_worker(
        self,
        *,
        queues: Sequence[str] | None = None,
        concurrency: int | None = None,
        burst: bool = False,
    ) -> None:
        """Run a worker until SIGTERM or SIGINT (a second signal skips the grace period);
        with `burst`, until no job of its queues is ready to run."""
        worker = self.worker(queues=queues, concurrency=concurrency, burst=burst)
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, worker.stop)
        try:
            await worker.run()
        finally:
            for signum in (signal.SIGTERM, signal.SIGINT):
                loop.remove_signal_handler(signum)
