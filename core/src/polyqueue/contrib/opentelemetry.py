"""OpenTelemetry plugins: job metrics and queue-depth gauges, and messaging spans across brokers.

`OpenTelemetryMetrics` implements the metrics hooks; `OpenTelemetryTracing` adds a producer
span at enqueue (its context travels in the job's headers) and a consumer span around each
attempt; `OpenTelemetryPlugin` is both. They use the global providers unless given their own.
"""

from __future__ import annotations

import importlib.metadata
from typing import TYPE_CHECKING, Any

from opentelemetry import metrics, propagate, trace
from opentelemetry.metrics import CallbackOptions, Observation
from opentelemetry.trace import Link, SpanKind, Status, StatusCode

from polyqueue.contrib import DURATION_BUCKETS, DepthSamples
from polyqueue.hookspecs import hookimpl

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable, Iterable
    from contextlib import AbstractContextManager

    from opentelemetry.context import Context
    from opentelemetry.metrics import MeterProvider
    from opentelemetry.propagators.textmap import TextMapPropagator
    from opentelemetry.trace import Span, TracerProvider
    from opentelemetry.util.types import AttributeValue

    from polyqueue.app import Polyqueue
    from polyqueue.context import JobContext
    from polyqueue.events import (
        JobEnqueued,
        JobEvent,
        JobFailed,
        JobRetrying,
        JobStarted,
        JobSucceeded,
        JobTimedOut,
        QueueDepth,
    )
    from polyqueue.middleware import DispatchMiddleware, EnqueueContext, EnqueueMiddleware

__all__ = ["OpenTelemetryMetrics", "OpenTelemetryPlugin", "OpenTelemetryTracing"]

SYSTEM = "polyqueue"
"""`messaging.system` of every span."""
EVENTS = ("enqueued", "started", "succeeded", "failed", "retrying", "timed_out")
"""One counter `polyqueue.job.<event>` per metrics hook `polyqueue_job_<event>`."""


def _version() -> str:
    try:
        return importlib.metadata.version("polyqueue")
    except importlib.metadata.PackageNotFoundError:
        return ""


# -- metrics ---------------------------------------------------------------------------------


class OpenTelemetryMetrics:
    """Counters per job event, a duration histogram by outcome, and queue-depth gauges.

    Every instrument has the attributes `queue` and `handler`; the duration histogram also has
    `outcome` (succeeded, retrying, failed); the depth gauge has `queue` and `status`.
    """

    def __init__(self, meter_provider: MeterProvider | None = None) -> None:
        meter = metrics.get_meter(__name__, _version(), meter_provider)
        self._counters = {
            event: meter.create_counter(
                f"polyqueue.job.{event}", unit="{job}", description=f"Jobs {event}."
            )
            for event in EVENTS
        }
        self._duration = meter.create_histogram(
            "polyqueue.job.duration",
            unit="s",
            description="How long handlers ran, by outcome of the attempt.",
            explicit_bucket_boundaries_advisory=DURATION_BUCKETS,
        )
        self._depth = DepthSamples()
        meter.create_observable_gauge(
            "polyqueue.queue.depth",
            callbacks=[self._observe_depth],
            unit="{job}",
            description="Jobs per queue and unfinished status, sampled by maintenance.",
        )

    @hookimpl
    def polyqueue_configure(self, app: Polyqueue) -> None:
        """Depth samples are fresh for three maintenance rounds."""
        self._depth.expect_every(app.settings.maintenance_interval)

    @hookimpl
    def polyqueue_job_enqueued(self, event: JobEnqueued) -> None:
        """Count it."""
        self._count("enqueued", event)

    @hookimpl
    def polyqueue_job_started(self, event: JobStarted) -> None:
        """Count it."""
        self._count("started", event)

    @hookimpl
    def polyqueue_job_succeeded(self, event: JobSucceeded) -> None:
        """Count it and record the duration."""
        self._finished("succeeded", event, event.duration)

    @hookimpl
    def polyqueue_job_failed(self, event: JobFailed) -> None:
        """Count it and record the duration."""
        self._finished("failed", event, event.duration)

    @hookimpl
    def polyqueue_job_retrying(self, event: JobRetrying) -> None:
        """Count it and record the duration."""
        self._finished("retrying", event, event.duration)

    @hookimpl
    def polyqueue_job_timed_out(self, event: JobTimedOut) -> None:
        """Count it (its retrying or failed event records the duration)."""
        self._count("timed_out", event)

    @hookimpl
    def polyqueue_queue_depth(self, event: QueueDepth) -> None:
        """Keep the sample for the gauge's next collection."""
        self._depth.record(event)

    def _count(self, name: str, event: JobEvent) -> None:
        self._counters[name].add(1, {"queue": event.queue, "handler": event.name})

    def _finished(self, outcome: str, event: JobEvent, duration: float) -> None:
        self._count(outcome, event)
        attributes = {"queue": event.queue, "handler": event.name, "outcome": outcome}
        self._duration.record(duration, attributes)

    def _observe_depth(self, _options: CallbackOptions) -> Iterable[Observation]:
        return [
            Observation(depth, {"queue": queue, "status": status})
            for queue, status, depth in self._depth.fresh()
        ]


# -- tracing ---------------------------------------------------------------------------------


class OpenTelemetryTracing:
    """Spans per the messaging semantic conventions, one trace from enqueue to every attempt.

    - `send <queue>` (PRODUCER) around `enqueue`/`enqueue_many`; its context is injected into
      the jobs' headers with the propagator (default: the global one, W3C `traceparent`).
    - `process <queue>` (CONSUMER) around each attempt: a child of the extracted context and
      linked to it. A raised exception is recorded and sets the ERROR status.
    """

    def __init__(
        self,
        tracer_provider: TracerProvider | None = None,
        propagator: TextMapPropagator | None = None,
    ) -> None:
        self._tracer = trace.get_tracer(__name__, _version(), tracer_provider)
        self._propagator = propagator

    @property
    def propagator(self) -> TextMapPropagator:
        """The one given, else the global propagator at the time of the call."""
        return self._propagator or propagate.get_global_textmap()

    @hookimpl
    def polyqueue_enqueue_middleware(self, app: Polyqueue) -> EnqueueMiddleware:
        """The producer span."""

        async def send(
            call_next: Callable[[EnqueueContext], Awaitable[list[int]]], ctx: EnqueueContext
        ) -> list[int]:
            return await self._send(app, call_next, ctx)

        return send

    @hookimpl
    def polyqueue_dispatch_middleware(self) -> DispatchMiddleware:
        """The consumer span."""
        return self._process

    async def _send(
        self,
        app: Polyqueue,
        call_next: Callable[[EnqueueContext], Awaitable[list[int]]],
        ctx: EnqueueContext,
    ) -> list[int]:
        queue = _queue_of(app, ctx)
        attributes = _messaging("send", queue) | {"polyqueue.job.name": ctx.name}
        if len(ctx.payloads) != 1:
            attributes["messaging.batch.message_count"] = len(ctx.payloads)
        with self._span(f"send {queue}", SpanKind.PRODUCER, attributes) as span:
            self.propagator.inject(ctx.headers)
            try:
                job_ids = await call_next(ctx)
            except BaseException as exc:
                _record_error(span, exc)
                raise
            if len(job_ids) == 1:
                span.set_attribute("messaging.message.id", str(job_ids[0]))
            return job_ids

    async def _process(
        self, call_next: Callable[[JobContext], Awaitable[Any]], ctx: JobContext
    ) -> Any:
        parent = self.propagator.extract(ctx.headers)
        producer = trace.get_current_span(parent).get_span_context()
        links = [Link(producer)] if producer.is_valid else []
        attributes = _messaging("process", ctx.queue) | {
            "messaging.message.id": str(ctx.job_id),
            "polyqueue.job.name": ctx.name,
            "polyqueue.job.attempt": ctx.attempt,
        }
        span_name = f"process {ctx.queue}"
        with self._span(span_name, SpanKind.CONSUMER, attributes, parent, links) as span:
            try:
                return await call_next(ctx)
            except BaseException as exc:
                _record_error(span, exc)
                raise

    def _span(
        self,
        name: str,
        kind: SpanKind,
        attributes: dict[str, AttributeValue],
        parent: Context | None = None,
        links: list[Link] | None = None,
    ) -> AbstractContextManager[Span]:
        return self._tracer.start_as_current_span(
            name,
            context=parent,
            kind=kind,
            attributes=attributes,
            links=links,
            record_exception=False,  # done by _record_error, also for cancellation
            set_status_on_exception=False,
        )


def _queue_of(app: Polyqueue, ctx: EnqueueContext) -> str:
    handler = app.handlers.get(ctx.name)
    return ctx.options.queue or (handler.queue if handler else app.settings.default_queue)


def _messaging(operation: str, queue: str) -> dict[str, AttributeValue]:
    return {
        "messaging.system": SYSTEM,
        "messaging.operation.type": operation,
        "messaging.operation.name": operation,
        "messaging.destination.name": queue,
    }


def _record_error(span: Span, exc: BaseException) -> None:
    """Record `exc` (a cancellation too: a time limit or a stop) and mark the span failed."""
    span.record_exception(exc)
    cls = type(exc)
    error_type = (
        cls.__qualname__ if cls.__module__ == "builtins" else f"{cls.__module__}.{cls.__qualname__}"
    )
    span.set_attribute("error.type", error_type)
    span.set_status(Status(StatusCode.ERROR, f"{error_type}: {exc}"))


# -- both ------------------------------------------------------------------------------------


class OpenTelemetryPlugin(OpenTelemetryMetrics, OpenTelemetryTracing):
    """Metrics and tracing in one plugin: `Polyqueue(plugins=[OpenTelemetryPlugin()])`."""

    def __init__(
        self,
        *,
        meter_provider: MeterProvider | None = None,
        tracer_provider: TracerProvider | None = None,
        propagator: TextMapPropagator | None = None,
    ) -> None:
        OpenTelemetryMetrics.__init__(self, meter_provider)
        OpenTelemetryTracing.__init__(self, tracer_provider, propagator)
