"""The per-backend benchmarks: drain by a worker process, enqueue rates, pickup latency."""

from __future__ import annotations

import asyncio
import statistics
import time
from typing import TYPE_CHECKING

import asyncpg

from draining import timed_drain
from procstat import KB_PER_MB
from workload import HANDLER, Noop, enqueue_bulk, make_app

if TYPE_CHECKING:
    from pathlib import Path

    from plan import Plan
    from polyqueue import Polyqueue

__all__ = ["drain", "pickup_latency", "single_enqueue"]


# -- 1. drain -------------------------------------------------------------------------------


async def drain(
    url: str, backend: str, plan: Plan, profile: Path | None = None, since_id: int = 0
) -> dict[str, float]:
    """Enqueue `plan.jobs`, start one worker process, time it until every job succeeded.

    `none`: the broker lives in one process, so the worker process enqueues first and then
    starts its worker; every other backend: this process enqueues, then the worker starts.
    Also reported: the worker's peak RSS, and the CPU of the worker and of PostgreSQL.
    Only jobs with an id above `since_id` count (rows kept from before do not).
    """
    enqueue_seconds = 0.0
    if backend != "none":
        async with make_app(url, backend) as app:
            started = time.perf_counter()
            await enqueue_bulk(app, plan.jobs, plan.batch)
            enqueue_seconds = time.perf_counter() - started
    preload = plan.jobs if backend == "none" else 0
    figures = await timed_drain(
        url,
        backend,
        plan.jobs,
        concurrency=plan.concurrency,
        preload=preload,
        batch=plan.batch,
        profile=profile,
        since_id=since_id,
    )
    enqueue_seconds = enqueue_seconds or float(figures.ready[0]["enqueue_seconds"])
    results = {
        "drain_jobs_per_s": figures.jobs_per_s,
        "drain_seconds": figures.seconds,
        "bulk_enqueue_jobs_per_s": plan.jobs / enqueue_seconds,
        "drain_worker_peak_rss_mb": figures.peak_rss_kb[0] / KB_PER_MB,
        "drain_worker_cpu_s": figures.worker_cpu_seconds,
        "drain_postgres_cpu_s": figures.postgres_cpu_seconds,
        "drain_jobs_per_worker_cpu_s": figures.jobs_per(figures.worker_cpu_seconds),
        "drain_jobs_per_postgres_cpu_s": figures.jobs_per(figures.postgres_cpu_seconds),
    }
    return {name: value for name, value in results.items() if value is not None}


# -- 2. enqueue rate ------------------------------------------------------------------------


async def single_enqueue(url: str, backend: str, plan: Plan) -> dict[str, float]:
    """One producer awaiting each `app.enqueue` in turn, no worker running; then, as the
    floor any durable enqueue stands on, plain asyncpg committing a one-row INSERT per call."""
    async with make_app(url, backend) as app:
        await app.enqueue(HANDLER, Noop(n=-1))  # warm up the pool and prepared statements
        started = time.perf_counter()
        for n in range(plan.single):
            await app.enqueue(HANDLER, Noop(n=n))
        elapsed = time.perf_counter() - started
    return {
        "single_enqueue_jobs_per_s": plan.single / elapsed,
        "single_insert_floor_per_s": await _insert_floor(url, plan.single),
    }


async def _insert_floor(url: str, count: int) -> float:
    """Rows/s of `INSERT ... RETURNING id` of one JSON row, each its own commit."""
    connection = await asyncpg.connect(url)
    try:
        await connection.execute("CREATE TABLE bench_floor (id bigserial PRIMARY KEY, v jsonb)")
        insert = await connection.prepare("INSERT INTO bench_floor (v) VALUES ($1) RETURNING id")
        started = time.perf_counter()
        for n in range(count):
            await insert.fetchval(f'{{"n":{n}}}')
        return count / (time.perf_counter() - started)
    finally:
        await connection.close()


# -- 3. pickup latency ----------------------------------------------------------------------


class _Probe:
    """Records `perf_counter()` when the handler starts, for the sample in flight."""

    def __init__(self) -> None:
        self.started: asyncio.Future[float] | None = None

    def arm(self) -> asyncio.Future[float]:
        self.started = asyncio.get_running_loop().create_future()
        return self.started

    def fire(self) -> None:
        if self.started is not None and not self.started.done():
            self.started.set_result(time.perf_counter())


async def pickup_latency(url: str, backend: str, plan: Plan) -> dict[str, float]:
    """Enqueue one job at a time to an idle worker in this same process (one clock:
    `perf_counter`); latency is enqueue commit -> handler start. Also the same from the
    `enqueue` call (what the peer harness measures: it includes the enqueue's own durable
    commit), and that commit alone (the `enqueue` call of an idle producer)."""
    probe = _Probe()
    async with make_app(url, backend, on_run=probe.fire) as app:
        worker = app.worker(concurrency=plan.concurrency)
        running = asyncio.create_task(worker.run())
        try:
            for _ in range(10):  # warm-up: the worker is registered and listening
                await _sample(app, probe)
            samples = [await _sample(app, probe) for _ in range(plan.samples)]
        finally:
            worker.stop()
            await running
    figures: dict[str, float] = {}
    names = ("pickup", "pickup_from_call", "idle_enqueue")
    for position, name in enumerate(names):
        values = [sample[position] for sample in samples]
        figures[f"{name}_p50_ms"] = _percentile(values, 50) * 1000
        figures[f"{name}_p99_ms"] = _percentile(values, 99) * 1000
    return figures


async def _sample(app: Polyqueue, probe: _Probe) -> tuple[float, float, float]:
    """(commit -> handler start, call -> handler start, call -> commit), seconds."""
    started = probe.arm()
    called = time.perf_counter()
    job_id = await app.enqueue(HANDLER, Noop(n=0))
    committed = time.perf_counter()
    async with asyncio.timeout(30):
        handler_start = await started
    await app.wait_for(job_id, timeout=30)
    await asyncio.sleep(0.02)  # let the worker go idle again (back to waiting for a notice)
    return handler_start - committed, handler_start - called, committed - called


def _percentile(values: list[float], percent: int) -> float:
    return statistics.quantiles(values, n=100, method="inclusive")[percent - 1]
