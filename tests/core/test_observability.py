"""Metrics (OpenTelemetry, Prometheus), queue depth, broken metrics plugins, and tracing."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections import Counter, defaultdict
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from opentelemetry import trace
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode
from otel_worker_app import HANDLER as CROSS_HANDLER
from otel_worker_app import QUEUE as CROSS_QUEUE
from otel_worker_app import Echo
from prometheus_client import CollectorRegistry
from pydantic import BaseModel

from polyqueue import ConfigurationError, JobContext, JobStatus, TerminalError, hookimpl
from polyqueue.contrib import DepthSamples
from polyqueue.contrib.opentelemetry import (
    OpenTelemetryMetrics,
    OpenTelemetryPlugin,
    OpenTelemetryTracing,
)
from polyqueue.contrib.prometheus import PrometheusMetrics
from polyqueue.events import QueueDepth
from polyqueue.maintenance import Maintenance
from polyqueue.plugins import create_plugin_manager

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Callable, Iterator

    from polyqueue import Job, Polyqueue

QUEUE = "obs"
WORKER_APP = Path(__file__).with_name("otel_worker_app.py")
METRICS_HOOKS = (
    "polyqueue_job_enqueued",
    "polyqueue_job_started",
    "polyqueue_job_succeeded",
    "polyqueue_job_failed",
    "polyqueue_job_retrying",
    "polyqueue_job_timed_out",
    "polyqueue_queue_depth",
)


class Item(BaseModel):
    n: int = 0


def register_jobs(app: Polyqueue) -> None:
    """ok succeeds; flaky fails its first attempt; doomed fails for good; slow times out."""

    @app.register("obs.ok", queue=QUEUE)
    async def ok(payload: Item) -> int:
        return payload.n

    @app.register("obs.flaky", queue=QUEUE, max_attempts=3)
    async def flaky(payload: Item, ctx: JobContext) -> int:
        if ctx.attempt == 1:
            raise RuntimeError("the first attempt fails")
        return payload.n

    @app.register("obs.doomed", queue=QUEUE)
    async def doomed(payload: Item) -> None:
        raise TerminalError("no way")

    @app.register("obs.slow", queue=QUEUE, max_run_seconds=0.1, timeout_strategy="fail")
    async def slow(payload: Item) -> None:
        await asyncio.Event().wait()


@contextlib.asynccontextmanager
async def running_worker(app: Polyqueue) -> AsyncIterator[None]:
    worker = app.worker()
    task = asyncio.create_task(worker.run())
    try:
        yield
    finally:
        worker.stop()
        worker.stop()
        await asyncio.wait_for(task, timeout=30)


async def run_jobs(app: Polyqueue, *names: str) -> list[Job]:
    """Enqueue one job per name, run a worker until all have finished, return them."""
    ids = [await app.enqueue(name, Item(n=i)) for i, name in enumerate(names)]
    async with running_worker(app):
        return [await app.wait_for(job_id, timeout=30) for job_id in ids]


MIX = ("obs.ok", "obs.ok", "obs.flaky", "obs.doomed", "obs.slow")
"""Two successes, a retry then success, a terminal failure, a timeout (then failure)."""


def assert_mix_outcomes(jobs: list[Job]) -> None:
    assert [job.status for job in jobs] == [JobStatus.SUCCEEDED] * 3 + [JobStatus.FAILED] * 2


# -- OpenTelemetry metrics ----------------------------------------------------------------------


def meter() -> tuple[MeterProvider, InMemoryMetricReader]:
    reader = InMemoryMetricReader()
    return MeterProvider(metric_readers=[reader], shutdown_on_exit=False), reader


def collect(reader: InMemoryMetricReader) -> dict[str, list[Any]]:
    """Every data point by metric name."""
    found: dict[str, list[Any]] = defaultdict(list)
    data = reader.get_metrics_data()
    for resource in data.resource_metrics if data else []:
        for scope in resource.scope_metrics:
            for metric in scope.metrics:
                found[metric.name].extend(metric.data.data_points)
    return found


def point(points: dict[str, list[Any]], name: str, **attributes: Any) -> Any:
    (match,) = [p for p in points[name] if dict(p.attributes) == attributes]
    return match


def count(points: dict[str, list[Any]], event: str, handler: str) -> int:
    return int(point(points, f"polyqueue.job.{event}", queue=QUEUE, handler=handler).value)


async def test_otel_counters_and_durations_by_queue_handler_and_outcome(make_app) -> None:
    provider, reader = meter()
    app = make_app(metrics=OpenTelemetryMetrics(meter_provider=provider))
    register_jobs(app)
    async with app:
        assert_mix_outcomes(await run_jobs(app, *MIX))
    points = collect(reader)

    expected = {
        "enqueued": {"obs.ok": 2, "obs.flaky": 1, "obs.doomed": 1, "obs.slow": 1},
        "started": {"obs.ok": 2, "obs.flaky": 2, "obs.doomed": 1, "obs.slow": 1},
        "succeeded": {"obs.ok": 2, "obs.flaky": 1},
        "retrying": {"obs.flaky": 1},
        "failed": {"obs.doomed": 1, "obs.slow": 1},
        "timed_out": {"obs.slow": 1},
    }
    for event, by_handler in expected.items():
        assert {dict(p.attributes)["handler"] for p in points[f"polyqueue.job.{event}"]} == set(
            by_handler
        )
        for handler, value in by_handler.items():
            assert count(points, event, handler) == value, (event, handler)

    def duration(handler: str, outcome: str) -> Any:
        attributes = {"queue": QUEUE, "handler": handler, "outcome": outcome}
        return point(points, "polyqueue.job.duration", **attributes)

    assert duration("obs.ok", "succeeded").count == 2
    assert duration("obs.flaky", "retrying").count == 1
    assert duration("obs.flaky", "succeeded").count == 1
    assert duration("obs.doomed", "failed").count == 1
    slow = duration("obs.slow", "failed")
    assert slow.count == 1
    assert slow.sum >= 0.1  # it ran until its time limit
    assert len(points["polyqueue.job.duration"]) == 5


async def test_otel_queue_depth_gauge_after_maintenance_rounds(make_app) -> None:
    provider, reader = meter()
    app = make_app(metrics=OpenTelemetryMetrics(meter_provider=provider))
    register_jobs(app)

    def depth(points: dict[str, list[Any]]) -> dict[str, int]:
        found = [p for p in points["polyqueue.queue.depth"] if p.attributes["queue"] == QUEUE]
        return {p.attributes["status"]: p.value for p in found}

    async with app:
        ids = await app.enqueue_many("obs.ok", [Item(), Item(), Item()])
        await app.enqueue("obs.ok", Item(), delay=3600)
        await Maintenance(app.runtime).run_once()
        assert depth(collect(reader)) == {"waiting": 0, "scheduled": 1, "queued": 3, "running": 0}

        async with running_worker(app):
            for job_id in ids:
                await app.wait_for(job_id, timeout=30)
        await Maintenance(app.runtime).run_once()
        assert depth(collect(reader)) == {"waiting": 0, "scheduled": 1, "queued": 0, "running": 0}


def test_stale_depth_samples_are_not_reported() -> None:
    samples = DepthSamples(stale_after=60.0)
    samples.record(QueueDepth("q", "queued", 4))
    assert samples.fresh() == [("q", "queued", 4)]
    samples.stale_after = -1.0  # as if the sample were older than the window
    assert samples.fresh() == []


# -- Prometheus ---------------------------------------------------------------------------------


def fetch(url: str) -> str:
    with urllib.request.urlopen(url, timeout=10) as response:  # noqa: S310  (our own loopback URL)
        return str(response.read().decode())


async def test_prometheus_metrics_and_http_endpoint(make_app) -> None:
    registry = CollectorRegistry()
    prometheus = PrometheusMetrics(registry=registry, port=0)  # port 0: a free port
    app = make_app()
    register_jobs(app)
    app.add_plugin(prometheus)  # what main(app, metrics=...) does: the endpoint starts here
    try:
        assert prometheus.server_port
        async with app:
            await app.enqueue("obs.ok", Item(), delay=3600)
            assert_mix_outcomes(await run_jobs(app, *MIX))
            await Maintenance(app.runtime).run_once()
        body = await asyncio.to_thread(fetch, f"http://127.0.0.1:{prometheus.server_port}/metrics")
    finally:
        prometheus.close()

    def sample(name: str, **labels: str) -> float | None:
        return registry.get_sample_value(name, {"queue": QUEUE, **labels})

    assert sample("polyqueue_jobs_enqueued_total", handler="obs.ok") == 3
    assert sample("polyqueue_jobs_started_total", handler="obs.flaky") == 2
    assert sample("polyqueue_jobs_total", handler="obs.ok", outcome="succeeded") == 2
    assert sample("polyqueue_jobs_total", handler="obs.flaky", outcome="retrying") == 1
    assert sample("polyqueue_jobs_total", handler="obs.flaky", outcome="succeeded") == 1
    assert sample("polyqueue_jobs_total", handler="obs.doomed", outcome="failed") == 1
    assert sample("polyqueue_jobs_total", handler="obs.slow", outcome="failed") == 1
    assert sample("polyqueue_jobs_timed_out_total", handler="obs.slow") == 1
    duration = "polyqueue_job_duration_seconds_count"
    assert sample(duration, handler="obs.ok", outcome="succeeded") == 2
    assert sample(duration, handler="obs.slow", outcome="failed") == 1
    assert sample("polyqueue_queue_depth", status="scheduled") == 1
    assert sample("polyqueue_queue_depth", status="queued") == 0

    assert 'polyqueue_jobs_total{handler="obs.ok",outcome="succeeded",queue="obs"} 2.0' in body
    assert 'polyqueue_queue_depth{queue="obs",status="scheduled"} 1.0' in body


def test_prometheus_endpoint_on_a_taken_port_is_a_configuration_error() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        metrics = PrometheusMetrics(registry=CollectorRegistry(), port=taken.getsockname()[1])
        with pytest.raises(ConfigurationError, match="cannot serve Prometheus metrics"):
            metrics.start_server()


# -- broken metrics plugins never break jobs ----------------------------------------------------


def metrics_plugin(action: Callable[[object], None]) -> object:
    """A plugin implementing every metrics hook as `action(event)`."""

    def hook(self: object, event: object) -> None:
        action(event)

    return type("MetricsPlugin", (), {name: hookimpl(hook) for name in METRICS_HOOKS})()


def explode(event: object) -> None:
    raise RuntimeError(f"metrics backend down ({type(event).__name__})")


async def test_a_raising_metrics_plugin_is_logged_and_jobs_still_succeed(make_app, caplog) -> None:
    provider, reader = meter()
    healthy = OpenTelemetryMetrics(meter_provider=provider)
    app = make_app(plugins=[metrics_plugin(explode), healthy])
    register_jobs(app)
    with caplog.at_level(logging.WARNING, logger="polyqueue.plugins"):
        async with app:
            jobs = await run_jobs(app, *["obs.ok"] * 5)
            await Maintenance(app.runtime).run_once()
    assert [job.status for job in jobs] == [JobStatus.SUCCEEDED] * 5
    assert count(collect(reader), "succeeded", "obs.ok") == 5  # the other plugin still counts
    failed = " ".join(r.getMessage() for r in caplog.records if r.name == "polyqueue.plugins")
    for hook in ("job_enqueued", "job_started", "job_succeeded", "queue_depth"):
        assert f"metrics hook polyqueue_{hook} of " in failed
    assert all(r.exc_info for r in caplog.records if r.name == "polyqueue.plugins")


async def test_a_slow_metrics_plugin_delays_but_never_breaks_jobs(make_app) -> None:
    calls: list[object] = []

    def slow(event: object) -> None:
        time.sleep(0.05)  # a metrics backend call that should not be on the hot path
        calls.append(event)

    app = make_app(metrics=metrics_plugin(slow))
    register_jobs(app)
    async with app:
        jobs = await run_jobs(app, *["obs.ok"] * 5, "obs.flaky")
    assert [job.status for job in jobs] == [JobStatus.SUCCEEDED] * 6
    job_events = Counter(
        type(event).__name__ for event in calls if not isinstance(event, QueueDepth)
    )
    assert job_events == {"JobEnqueued": 6, "JobStarted": 7, "JobSucceeded": 6, "JobRetrying": 1}


# -- tracing ------------------------------------------------------------------------------------


def tracing() -> tuple[OpenTelemetryTracing, InMemorySpanExporter]:
    exporter = InMemorySpanExporter()
    provider = TracerProvider(shutdown_on_exit=False)
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    return OpenTelemetryTracing(tracer_provider=provider), exporter


def current_span_id() -> str:
    return f"{trace.get_current_span().get_span_context().span_id:016x}"


def register_traced(app: Polyqueue) -> None:
    """Handlers returning the id of the span current while they run."""

    @app.register("obs.traced", queue=QUEUE)
    async def traced(payload: Item) -> str:
        return current_span_id()

    @app.register("obs.traced_sync", queue=QUEUE)
    def traced_sync(payload: Item) -> str:
        return current_span_id()


def span_id(span: Any) -> str:
    return f"{span.context.span_id:016x}"


def assert_consumer_of(consumer: Any, producer: Any) -> None:
    """Same trace, child of the producer span, and linked to it."""
    assert consumer.kind is SpanKind.CONSUMER
    assert consumer.context.trace_id == producer.context.trace_id
    assert consumer.parent.span_id == producer.context.span_id
    assert [link.context.span_id for link in consumer.links] == [producer.context.span_id]


async def test_producer_and_consumer_spans_in_one_process(make_app) -> None:
    tracer, exporter = tracing()
    app = make_app(plugins=[tracer])
    register_jobs(app)
    register_traced(app)
    async with app:
        one = await app.enqueue("obs.traced", Item())
        in_thread = await app.enqueue("obs.traced_sync", Item())
        flaky = await app.enqueue("obs.flaky", Item())
        doomed = await app.enqueue("obs.doomed", Item())
        batch = await app.enqueue_many("obs.traced", [Item(n=n) for n in range(3)])
        async with running_worker(app):
            jobs = {i: await app.wait_for(i, 30) for i in [one, in_thread, flaky, doomed, *batch]}
    spans = exporter.get_finished_spans()
    producers = [s for s in spans if s.kind is SpanKind.PRODUCER]
    consumers: dict[int, list[Any]] = defaultdict(list)
    for span in (s for s in spans if s.kind is SpanKind.CONSUMER):
        consumers[int(span.attributes["messaging.message.id"])].append(span)

    def producer_of(job_id: int) -> Any:
        (span,) = [s for s in producers if s.attributes.get("messaging.message.id") == str(job_id)]
        return span

    sent = producer_of(one)
    assert sent.name == f"send {QUEUE}"
    assert dict(sent.attributes) == {
        "messaging.system": "polyqueue",
        "messaging.operation.type": "send",
        "messaging.operation.name": "send",
        "messaging.destination.name": QUEUE,
        "messaging.message.id": str(one),
        "polyqueue.job.name": "obs.traced",
    }
    (processed,) = consumers[one]
    assert_consumer_of(processed, sent)
    assert processed.name == f"process {QUEUE}"
    assert dict(processed.attributes) == {
        "messaging.system": "polyqueue",
        "messaging.operation.type": "process",
        "messaging.operation.name": "process",
        "messaging.destination.name": QUEUE,
        "messaging.message.id": str(one),
        "polyqueue.job.name": "obs.traced",
        "polyqueue.job.attempt": 1,
    }
    assert processed.status.status_code is StatusCode.UNSET
    assert jobs[one].result == span_id(processed)  # the span is current in the handler
    assert jobs[in_thread].result == span_id(consumers[in_thread][0])  # and in a sync one

    first, second = sorted(consumers[flaky], key=lambda s: s.attributes["polyqueue.job.attempt"])
    for attempt in (first, second):
        assert_consumer_of(attempt, producer_of(flaky))  # every attempt joins the trace
    assert first.status.status_code is StatusCode.ERROR
    assert second.status.status_code is StatusCode.UNSET

    (failed,) = consumers[doomed]
    assert failed.status.status_code is StatusCode.ERROR
    assert failed.attributes["error.type"] == "polyqueue.exceptions.TerminalError"
    assert failed.status.description == "polyqueue.exceptions.TerminalError: no way"
    (event,) = failed.events
    assert event.name == "exception"
    assert event.attributes["exception.type"] == "polyqueue.exceptions.TerminalError"
    assert event.attributes["exception.message"] == "no way"

    (sent_many,) = [s for s in producers if "messaging.batch.message_count" in s.attributes]
    assert sent_many.attributes["messaging.batch.message_count"] == 3
    for job_id in batch:
        assert_consumer_of(consumers[job_id][0], sent_many)


def test_the_combined_plugin_implements_metrics_and_tracing_hooks() -> None:
    plugin = OpenTelemetryPlugin(
        meter_provider=meter()[0], tracer_provider=TracerProvider(shutdown_on_exit=False)
    )
    manager = create_plugin_manager(plugin)
    hooks = [*METRICS_HOOKS, "polyqueue_enqueue_middleware", "polyqueue_dispatch_middleware"]
    for name in hooks:
        implementers = [impl.plugin for impl in getattr(manager.hook, name).get_hookimpls()]
        assert plugin in implementers, name


# -- tracing across processes -------------------------------------------------------------------


@contextlib.contextmanager
def worker_process(database_url: str, spans: Path, tmp_path: Path) -> Iterator[None]:
    """`otel_worker_app.py` in its own process; stopped with SIGTERM (killed on failure)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("POLYQUEUE_")}
    env.update(
        POLYQUEUE_DATABASE_URL=database_url,
        POLYQUEUE_QUEUE_BACKEND="postgres",
        POLYQUEUE_HEARTBEAT_INTERVAL="0.2",
        POLYQUEUE_SCHEDULER_INTERVAL="0.1",
    )
    log = tmp_path / "worker.log"
    with log.open("wb") as sink:
        process = subprocess.Popen(
            [sys.executable, str(WORKER_APP), str(spans)],
            env=env,
            cwd=WORKER_APP.parent,
            stdin=subprocess.DEVNULL,
            stdout=sink,
            stderr=subprocess.STDOUT,
        )
    try:
        yield
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=30) == 0
    except BaseException:
        print(f"--- worker log ---\n{log.read_text(errors='replace')}")  # noqa: T201
        raise
    finally:
        if process.poll() is None:
            process.kill()
        process.wait(timeout=30)


def read_spans(path: Path) -> list[dict[str, Any]]:
    import json  # noqa: PLC0415

    return [json.loads(line) for line in path.read_text().splitlines()]


@pytest.mark.slow
async def test_enqueue_and_dispatch_in_two_processes_share_one_trace(
    make_app, clean_database, tmp_path
) -> None:
    tracer, exporter = tracing()
    app = make_app(queue_backend="postgres", plugins=[tracer])

    @app.register(CROSS_HANDLER, queue=CROSS_QUEUE)
    async def echo(payload: Echo) -> None:
        raise AssertionError("runs in the worker process only")

    spans_file = tmp_path / "spans.jsonl"
    async with app:
        with worker_process(clean_database, spans_file, tmp_path):
            job_id = await app.enqueue(CROSS_HANDLER, Echo(text="hello"))
            job = await app.wait_for(job_id, timeout=60)
    assert job.status is JobStatus.SUCCEEDED
    assert job.result["pid"] != os.getpid()

    (producer,) = exporter.get_finished_spans()
    (consumer,) = [s for s in read_spans(spans_file) if s["kind"] == "CONSUMER"]
    assert consumer["pid"] != os.getpid()
    assert consumer["trace_id"] == f"{producer.context.trace_id:032x}"
    assert consumer["parent_span_id"] == span_id(producer)
    assert consumer["links"] == [span_id(producer)]
    assert consumer["attributes"]["messaging.message.id"] == str(job_id)
    assert consumer["name"] == f"process {CROSS_QUEUE}"
