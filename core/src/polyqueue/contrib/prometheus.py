"""Prometheus metrics plugin (`prometheus-client`), with an optional HTTP endpoint.

`PrometheusMetrics(port=9464)` serves `/metrics` from the moment it is registered with an app
(the `polyqueue_configure` hook): give it a port only where you want the endpoint, typically
`polyqueue.main(app, metrics=PrometheusMetrics(port=9464))` in the worker's entry point.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from prometheus_client import REGISTRY, Counter, Histogram, start_http_server
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from polyqueue.contrib import DURATION_BUCKETS, DepthSamples
from polyqueue.exceptions import ConfigurationError
from polyqueue.hookspecs import hookimpl

if TYPE_CHECKING:
    import threading
    from collections.abc import Iterable
    from wsgiref.simple_server import WSGIServer

    from prometheus_client import CollectorRegistry
    from prometheus_client.metrics_core import Metric

    from polyqueue.app import Polyqueue
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

__all__ = ["PrometheusMetrics"]

LABELS = ("queue", "handler")


class PrometheusMetrics:
    """Job counters, a duration histogram and queue-depth gauges in a Prometheus registry.

    - `polyqueue_jobs_enqueued_total{queue,handler}`, `polyqueue_jobs_started_total{...}`
    - `polyqueue_jobs_total{queue,handler,outcome}`: attempts that ended, by outcome
      (`succeeded`, `retrying`, `failed`)
    - `polyqueue_jobs_timed_out_total{queue,handler}`: attempts past their time limit (each
      also ends as `retrying` or `failed`)
    - `polyqueue_job_duration_seconds{queue,handler,outcome}`: a histogram of handler runs
    - `polyqueue_queue_depth{queue,status}`: jobs per queue and unfinished status

    One instance per registry: the default registry takes one, so create it once per process.
    """

    def __init__(
        self,
        registry: CollectorRegistry | None = None,
        port: int | None = None,
        addr: str = "127.0.0.1",
    ) -> None:
        self.registry = REGISTRY if registry is None else registry
        self.port = port
        self.addr = addr
        self._server: WSGIServer | None = None
        self._thread: threading.Thread | None = None
        self._enqueued = self._counter("polyqueue_jobs_enqueued", "Jobs enqueued.")
        self._started = self._counter("polyqueue_jobs_started", "Attempts started.")
        self._timed_out = self._counter("polyqueue_jobs_timed_out", "Attempts past their limit.")
        self._finished = self._counter("polyqueue_jobs", "Attempts ended, by outcome.", "outcome")
        self._duration = Histogram(
            "polyqueue_job_duration_seconds",
            "How long handlers ran, by outcome of the attempt.",
            [*LABELS, "outcome"],
            registry=self.registry,
            buckets=DURATION_BUCKETS,
        )
        self._depth = DepthSamples()
        self.registry.register(_DepthCollector(self._depth))

    def _counter(self, name: str, documentation: str, *extra: str) -> Counter:
        return Counter(name, documentation, [*LABELS, *extra], registry=self.registry)

    # -- the endpoint -------------------------------------------------------------------------

    @property
    def server_port(self) -> int | None:
        """The port `/metrics` is served on (the one the OS chose for `port=0`), or None."""
        return None if self._server is None else self._server.server_port

    def start_server(self) -> None:
        """Serve the registry on `addr:port` in a daemon thread (once; no-op without a port)."""
        if self.port is None or self._server is not None:
            return
        try:
            self._server, self._thread = start_http_server(self.port, self.addr, self.registry)
        except OSError as exc:
            raise ConfigurationError(
                f"cannot serve Prometheus metrics on {self.addr}:{self.port}: {exc}"
            ) from exc

    def close(self) -> None:
        """Stop the HTTP server, if one runs (it is a daemon thread: exiting also stops it)."""
        if self._server is not None and self._thread is not None:
            self._server.shutdown()
            self._server.server_close()
            self._thread.join()
        self._server = self._thread = None

    # -- hooks --------------------------------------------------------------------------------

    @hookimpl
    def polyqueue_configure(self, app: Polyqueue) -> None:
        """Start the endpoint if a port was given; depth samples stay fresh three rounds."""
        self._depth.expect_every(app.settings.maintenance_interval)
        self.start_server()

    @hookimpl
    def polyqueue_job_enqueued(self, event: JobEnqueued) -> None:
        """Count it."""
        self._enqueued.labels(event.queue, event.name).inc()

    @hookimpl
    def polyqueue_job_started(self, event: JobStarted) -> None:
        """Count it."""
        self._started.labels(event.queue, event.name).inc()

    @hookimpl
    def polyqueue_job_succeeded(self, event: JobSucceeded) -> None:
        """Count it and observe the duration."""
        self._ended("succeeded", event, event.duration)

    @hookimpl
    def polyqueue_job_failed(self, event: JobFailed) -> None:
        """Count it and observe the duration."""
        self._ended("failed", event, event.duration)

    @hookimpl
    def polyqueue_job_retrying(self, event: JobRetrying) -> None:
        """Count it and observe the duration."""
        self._ended("retrying", event, event.duration)

    @hookimpl
    def polyqueue_job_timed_out(self, event: JobTimedOut) -> None:
        """Count it (its retrying or failed event observes the duration)."""
        self._timed_out.labels(event.queue, event.name).inc()

    @hookimpl
    def polyqueue_queue_depth(self, event: QueueDepth) -> None:
        """Keep the sample for the next scrape."""
        self._depth.record(event)

    def _ended(self, outcome: str, event: JobEvent, duration: float) -> None:
        self._finished.labels(event.queue, event.name, outcome).inc()
        self._duration.labels(event.queue, event.name, outcome).observe(duration)


class _DepthCollector(Collector):
    """`polyqueue_queue_depth`, built from the fresh samples at each scrape."""

    def __init__(self, samples: DepthSamples) -> None:
        self._samples = samples

    def describe(self) -> Iterable[Metric]:
        return [_depth_family()]

    def collect(self) -> Iterable[Metric]:
        family = _depth_family()
        for queue, status, depth in self._samples.fresh():
            family.add_metric([queue, status], depth)
        return [family]


def _depth_family() -> GaugeMetricFamily:
    return GaugeMetricFamily(
        "polyqueue_queue_depth",
        "Jobs per queue and unfinished status, sampled by maintenance.",
        labels=["queue", "status"],
    )
