"""`Polyqueue`: the app object that registers handlers, enqueues, reads jobs and runs workers."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import TYPE_CHECKING, Any, Self, TypeVar

from polyqueue.client import JobClient
from polyqueue.exceptions import (
    ConfigurationError,
)
from polyqueue.limits import Limits
from polyqueue.middleware import EnqueueContext, compose, flatten
from polyqueue.plugins import (
    check_hookimpls,
    check_plugin,
    create_plugin_manager,
    migration_lines,
    select_broker,
    select_serializer,
)
from polyqueue.queues import QueueControl
from polyqueue.registry import HandlerRef, Registry
from polyqueue.runtime import Runtime, RuntimeParts, close_runtime, open_runtime
from polyqueue.settings import PolyqueueSettings, TimeoutStrategy, load_settings
from polyqueue.signals import run_until_signalled
from polyqueue.sync import SyncPolyqueue
from polyqueue.worker import Worker
from polyqueue.workflow_client import WorkflowClient

if TYPE_CHECKING:
    from polyqueue.broker import Broker
    from polyqueue.cron import Misfire
    from polyqueue.embedded import EmbeddedPostgres
    from polyqueue.handlers import Handler, RetryBackoff
    from polyqueue.limits import ConcurrencyKey, Rate
    from polyqueue.producer import Producer
    from polyqueue.publisher import NoticePublisher
    from polyqueue.store import JobStore

__all__ = ["Polyqueue"]

log = logging.getLogger(__name__)

F = TypeVar("F", bound=Callable[..., Any])


class Polyqueue(JobClient, WorkflowClient, QueueControl):
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
        self._registry = Registry()
        self.handlers: dict[str, Handler] = self._registry.handlers
        self.cron_schedules = self._registry.cron_schedules
        self._runtime: Runtime | None = None
        self._workers: list[Worker] = []
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
        retry_backoff: RetryBackoff | None = None,
        concurrency_limit: int | None = None,
        rate_limit: str | Rate | None = None,
        concurrency_key: ConcurrencyKey | None = None,
    ) -> Callable[[F], F]:
        """Register a handler `(payload: Model[, ctx: JobContext]) -> result` under `name`.

        `retry_backoff` replaces the app-wide `retry_backoff_base`/`retry_backoff_max` for
        this handler's retries: a `RetryPolicy`, or any `(attempt) -> seconds` callable.
        `concurrency_limit` (jobs running at once) and `rate_limit` (`"100/m"`: starts in any
        window) hold across every worker and host; with `concurrency_key` (a payload field
        name or a function of the payload) they hold per key (docs/flow-control.md).
        """
        what = f"handler {name!r}" if name else "handler"
        limits = Limits.build(
            concurrency_limit, rate_limit, per_key=concurrency_key is not None, what=what
        )

        def decorate(function: F) -> F:
            return self._registry.register(
                function,
                self.settings,
                name=name,
                queue=queue,
                max_attempts=max_attempts,
                max_run_seconds=max_run_seconds,
                timeout_strategy=timeout_strategy,
                retry_backoff=retry_backoff,
                limits=limits,
                concurrency_key=concurrency_key,
            )

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
            return self._registry.register_cron(
                function,
                self.settings,
                expression,
                name=name,
                misfire=misfire,
                queue=queue,
                max_attempts=max_attempts,
                max_run_seconds=max_run_seconds,
            )

        return decorate

    def handler_name(self, ref: HandlerRef) -> str:
        """The registered name of a handler given by name or by function."""
        return self._registry.name_of(ref)

    # -- lifecycle ----------------------------------------------------------------------------

    async def start(self) -> None:
        """Open the store, migrate, start the broker (and the outbox relay if needed)."""
        settings = self.settings
        if not settings.database_url:
            self.database_url = await self._start_embedded()
        parts = RuntimeParts(
            settings=settings,
            database_url=self.database_url,
            plugin_manager=self.plugin_manager,
            broker_class=self.broker_class,
            serializer=self.serializer,
            handlers=self.handlers,
            cron_schedules=self.cron_schedules,
            migration_lines=self.migration_lines,
            limits=self._registry.limits,
            key_functions=self._registry.key_functions,
        )
        try:
            self._runtime = await open_runtime(parts)
        except BaseException:
            await self._stop_embedded()
            raise
        middlewares = flatten(self.plugin_manager.hook.polyqueue_enqueue_middleware(app=self))
        self._enqueue_chain = compose(middlewares, self._enqueue)
        self._loop = asyncio.get_running_loop()

    async def _start_embedded(self) -> str:
        from polyqueue.embedded import EmbeddedPostgres  # noqa: PLC0415  (optional extra)

        self._embedded = EmbeddedPostgres(self.settings.data_dir / "postgres", record=True)
        return await asyncio.to_thread(self._embedded.start)

    async def _stop_embedded(self) -> None:
        if self._embedded is not None:
            embedded, self._embedded = self._embedded, None
            await asyncio.to_thread(embedded.stop)

    async def close(self) -> None:
        """Stop this app's workers, then close the broker, the store and the embedded server."""
        for worker in self._workers:
            worker.stop()
        await asyncio.gather(*(worker.wait_stopped() for worker in self._workers))
        self._workers.clear()
        if self._runtime is not None:
            runtime, self._runtime = self._runtime, None
            await close_runtime(runtime)
        await self._stop_embedded()
        self._loop = None

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    @property
    def started(self) -> bool:
        """Whether `start` has run and `close` has not."""
        return self._runtime is not None

    @property
    def runtime(self) -> Runtime:
        """The started app's pieces (after `start`), as workers and maintenance see them."""
        if self._runtime is None:
            raise RuntimeError("the app is not started: use `async with app:`")
        return self._runtime

    @property
    def store(self) -> JobStore:
        """The job store (after `start`)."""
        return self.runtime.store

    @property
    def broker(self) -> Broker:
        """The broker (after `start`)."""
        return self.runtime.broker

    @property
    def publisher(self) -> NoticePublisher:
        """Publishes notices of committed jobs, retrying while the broker is down."""
        return self.runtime.publisher

    @property
    def producer(self) -> Producer:
        """The producer (after `start`)."""
        return self.runtime.producer

    @property
    def cancel_channel(self) -> str:
        """The NOTIFY channel on which workers are told to stop jobs."""
        return self.runtime.cancel_channel

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
        middlewares = flatten(self.plugin_manager.hook.polyqueue_dispatch_middleware(app=self))
        worker = Worker(
            self.runtime,
            middlewares,
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
        await run_until_signalled(self.worker(queues=queues, concurrency=concurrency, burst=burst))
