"""The hooks Polyqueue calls, for plugins to implement. Every hook is a plain `def`.

Async behaviour lives in the objects hooks return (brokers, serializers, middleware), never in
the hooks: pluggy does not await, so an `async def` hookimpl would hand back an un-awaited
coroutine. `create_plugin_manager` refuses such hookimpls.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import pluggy

if TYPE_CHECKING:
    from polyqueue.app import Polyqueue
    from polyqueue.broker import Broker
    from polyqueue.events import (
        JobEnqueued,
        JobFailed,
        JobRetrying,
        JobSnoozed,
        JobStarted,
        JobSucceeded,
        JobTimedOut,
        QueueDepth,
    )
    from polyqueue.middleware import DispatchMiddleware, EnqueueMiddleware
    from polyqueue.serializers import Serializer
    from polyqueue.sql import MigrationLine

__all__ = ["PROJECT", "hookimpl", "hookspec"]

PROJECT = "polyqueue"
hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)

# -- registration: plugins provide classes, users select them by name ----------------------


@hookspec
def polyqueue_register_brokers() -> list[type[Broker]]:  # type: ignore[empty-body]
    """Return the broker classes this plugin provides.

    Called when an app is created, to resolve `queue_backend`. Each class carries its `name`
    (`"redis"`, `"sqs"`...), which users select with `POLYQUEUE_QUEUE_BACKEND`. The built-in
    `postgres` and `none` brokers are registered through this same hook.

    :return: `polyqueue.Broker` subclasses. Two plugins offering one name is a
        `ConfigurationError`.
    """


@hookspec
def polyqueue_register_serializers() -> list[type[Serializer]]:  # type: ignore[empty-body]
    """Return the serializer classes this plugin provides.

    Called when an app is created, to resolve the `serializer` setting. Each class carries its
    `name` (`"json"`, `"orjson"`...). The built-in ones are registered through this same hook.

    :return: `polyqueue.serializers.Serializer` subclasses. A duplicate name is a
        `ConfigurationError`.
    """


@hookspec
def polyqueue_register_migrations() -> list[MigrationLine]:  # type: ignore[empty-body]
    """Return this plugin's lines of numbered SQL migrations.

    Called by `polyqueue migrate` and at app start, after the core's own line. Each line is
    a package directory of `NNNN_name.up.sql`/`.down.sql` files, applied in order and recorded
    under the line's name, with `{schema}` replaced by the app's schema.

    :return: `polyqueue.sql.MigrationLine` objects.
    """


# -- configuration ---------------------------------------------------------------------------


@hookspec(historic=True)
def polyqueue_configure(app: Polyqueue) -> None:
    """Called once per app after its plugins are loaded, to inspect or adjust it.

    Historic: a plugin registered later (`app.add_plugin`) is called at registration.

    :param app: the `Polyqueue` app (not started yet: no database connection).
    """


# -- middleware: sync factories returning async callables, composed once at start-up -------


@hookspec
def polyqueue_dispatch_middleware(
    app: Polyqueue,
) -> DispatchMiddleware | list[DispatchMiddleware] | None:
    """Return middleware wrapped around every handler call of this app's workers.

    Called once when a worker starts; the returned callables are composed in plugin
    registration order, the first registered outermost. A middleware is
    `async def middleware(call_next, ctx) -> result`: it must `return await call_next(ctx)`
    to run the handler (and may act before and after, or raise). Use it for logging context,
    database sessions, error reporting, tracing.

    :param app: the app whose worker starts.
    :return: a middleware, a list of them, or None.
    """


@hookspec
def polyqueue_enqueue_middleware(
    app: Polyqueue,
) -> EnqueueMiddleware | list[EnqueueMiddleware] | None:
    """Return middleware wrapped around every `enqueue`/`enqueue_many` of this app.

    Called once when the app starts. A middleware is `async def middleware(call_next, ctx)`,
    where `ctx` is a `polyqueue.middleware.EnqueueContext` (handler name, payloads, and the
    `headers` dict that travels with the jobs: add to it before calling `call_next`); it must
    `return await call_next(ctx)`, which returns the job ids.

    :param app: the app that starts.
    :return: a middleware, a list of them, or None.
    """


# -- metrics: hot path, must not block or raise ----------------------------------------------
# Each event hook is called inline by the core. An exception is logged and ignored (the job
# goes on), but the call is synchronous: keep it to counters, histograms and queue puts.


@hookspec
def polyqueue_job_enqueued(event: JobEnqueued) -> None:
    """A job row was inserted by `enqueue`/`enqueue_many`.

    :param event: the job's id, name, queue, and whether it is scheduled for later.
    """


@hookspec
def polyqueue_job_started(event: JobStarted) -> None:
    """A worker claimed a job and is about to call its handler.

    :param event: the job, its attempt number and the worker's id.
    """


@hookspec
def polyqueue_job_succeeded(event: JobSucceeded) -> None:
    """A handler returned (the outcome is being recorded).

    :param event: the job, attempt, worker and the handler's duration in seconds.
    """


@hookspec
def polyqueue_job_failed(event: JobFailed) -> None:
    """An attempt failed for good: a terminal error, or no attempts left.

    :param event: the job, attempt, worker, duration and the error's type name.
    """


@hookspec
def polyqueue_job_retrying(event: JobRetrying) -> None:
    """An attempt failed and the job will run again after a backoff.

    :param event: the job, attempt, worker, duration, error type and the delay in seconds.
    """


@hookspec
def polyqueue_job_snoozed(event: JobSnoozed) -> None:
    """A handler raised `Snooze`: the job runs again after the delay, with no attempt used.

    Neither a success nor a failure: no succeeded, failed or retrying event is emitted for
    the attempt.

    :param event: the job, attempt, worker, duration and the delay in seconds.
    """


@hookspec
def polyqueue_job_timed_out(event: JobTimedOut) -> None:
    """An attempt passed its time limit (a retrying or failed event follows).

    :param event: the job, attempt, worker, the limit in seconds and the strategy.
    """


@hookspec
def polyqueue_queue_depth(event: QueueDepth) -> None:
    """The number of jobs of one queue in one status, sampled each maintenance round.

    Called by the maintenance leader only, once per queue that has jobs and per unfinished
    status (scheduled, queued, running), zero included.

    :param event: the queue, the status and the count.
    """
