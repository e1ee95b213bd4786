"""The three benchmarks: drain by a worker process, enqueue rates, and pickup latency."""

from __future__ import annotations

import asyncio
import json
import signal
import statistics
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import asyncpg

import queries
from workload import HANDLER, SCHEMA, Noop, enqueue_bulk, make_app

if TYPE_CHECKING:
    from asyncio.subprocess import Process

    from polyqueue import Polyqueue

__all__ = ["Plan", "drain", "pickup_latency", "single_enqueue"]

WORKER_SCRIPT = Path(__file__).with_name("worker_proc.py")
POLL_SECONDS = 0.02
STALL_SECONDS = 30.0  # no job finished for this long: the worker is stuck
WORKER_READY_TIMEOUT_SECONDS = 300.0


@dataclass(frozen=True, slots=True)
class Plan:
    """The sizes of one run's measurements."""

    jobs: int = 20_000
    batch: int = 1000
    single: int = 3000
    samples: int = 200
    concurrency: int = 10


# -- 1. drain -------------------------------------------------------------------------------


async def drain(
    url: str, backend: str, plan: Plan, profile: Path | None = None
) -> dict[str, float]:
    """Enqueue `plan.jobs`, start one worker process, time it until every job succeeded.

    `postgres`: this process enqueues, then the worker process starts. `none`: the broker
    lives in one process, so the worker process enqueues first and then starts its worker.
    Either way the clock starts when the worker process announces it is about to consume.
    """
    enqueue_seconds = 0.0
    if backend != "none":
        async with make_app(url, backend) as app:
            started = time.perf_counter()
            await enqueue_bulk(app, plan.jobs, plan.batch)
            enqueue_seconds = time.perf_counter() - started
    preload = plan.jobs if backend == "none" else 0
    process = await _start_worker(url, backend, plan, preload, profile)
    try:
        ready = await _read_ready(process)
        done = await _wait_all_succeeded(url, plan.jobs, process)
    finally:
        await _stop(process)
    enqueue_seconds = enqueue_seconds or float(ready["enqueue_seconds"])
    drain_seconds = done - float(ready["ready"])
    return {
        "drain_jobs_per_s": plan.jobs / drain_seconds,
        "drain_seconds": drain_seconds,
        "bulk_enqueue_jobs_per_s": plan.jobs / enqueue_seconds,
    }


async def _start_worker(
    url: str, backend: str, plan: Plan, preload: int, profile: Path | None
) -> Process:
    args = [str(WORKER_SCRIPT), url, backend, "--concurrency", str(plan.concurrency)]
    args += ["--preload", str(preload), "--batch", str(plan.batch)]
    args += ["--profile", str(profile)] if profile else []
    return await asyncio.create_subprocess_exec(
        sys.executable, *args, stdout=asyncio.subprocess.PIPE
    )


async def _read_ready(process: Process) -> dict[str, float]:
    assert process.stdout is not None  # noqa: S101  (created with stdout=PIPE)
    async with asyncio.timeout(WORKER_READY_TIMEOUT_SECONDS):
        line = await process.stdout.readline()
    if not line:
        raise RuntimeError(f"the worker process exited early (code {await process.wait()})")
    ready: dict[str, float] = json.loads(line)
    return ready


async def _wait_all_succeeded(url: str, jobs: int, process: Process) -> float:
    """Poll the jobs table until `jobs` succeeded; return the `time.time()` it was seen.

    If nothing finishes for `STALL_SECONDS`, the worker is told to print its tasks' stacks
    and the drain fails: a figure from a stuck worker would mean nothing.
    """
    sql = queries.load(schema=SCHEMA)["job_counts"]
    connection = await asyncpg.connect(url)
    succeeded, progress_at = -1, time.monotonic()
    try:
        while succeeded < jobs:
            row = await connection.fetchrow(sql)
            if row["failed"]:
                raise RuntimeError(f"{row['failed']} no-op jobs failed")
            if row["succeeded"] != succeeded:
                succeeded, progress_at = row["succeeded"], time.monotonic()
            elif time.monotonic() - progress_at > STALL_SECONDS:
                process.send_signal(signal.SIGUSR1)
                await asyncio.sleep(1)  # let it print
                raise RuntimeError(f"the worker stalled at {succeeded}/{jobs} jobs succeeded")
            await asyncio.sleep(POLL_SECONDS)
        return time.time()
    finally:
        await connection.close()


async def _stop(process: Process) -> None:
    if process.returncode is not None:
        return
    process.send_signal(signal.SIGTERM)
    try:
        async with asyncio.timeout(60):
            await process.wait()
    except TimeoutError:
        process.kill()
        await process.wait()


# -- 2. enqueue rate ------------------------------------------------------------------------


async def single_enqueue(url: str, backend: str, plan: Plan) -> dict[str, float]:
    """One producer awaiting each `app.enqueue` in turn, no worker running."""
    async with make_app(url, backend) as app:
        await app.enqueue(HANDLER, Noop(n=-1))  # warm up the pool and prepared statements
        started = time.perf_counter()
        for n in range(plan.single):
            await app.enqueue(HANDLER, Noop(n=n))
        elapsed = time.perf_counter() - started
    return {"single_enqueue_jobs_per_s": plan.single / elapsed}


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
    `perf_counter`); latency is enqueue commit -> handler start."""
    probe = _Probe()
    async with make_app(url, backend, on_run=probe.fire) as app:
        worker = app.worker(concurrency=plan.concurrency)
        running = asyncio.create_task(worker.run())
        try:
            for _ in range(10):  # warm-up: the worker is registered and listening
                await _sample(app, probe)
            latencies = [await _sample(app, probe) for _ in range(plan.samples)]
        finally:
            worker.stop()
            await running
    return {
        "pickup_p50_ms": _percentile(latencies, 50) * 1000,
        "pickup_p99_ms": _percentile(latencies, 99) * 1000,
    }


async def _sample(app: Polyqueue, probe: _Probe) -> float:
    started = probe.arm()
    job_id = await app.enqueue(HANDLER, Noop(n=0))
    committed = time.perf_counter()
    async with asyncio.timeout(30):
        handler_start = await started
    await app.wait_for(job_id, timeout=30)
    await asyncio.sleep(0.02)  # let the worker go idle again (back to waiting for a notice)
    return handler_start - committed


def _percentile(values: list[float], percent: int) -> float:
    return statistics.quantiles(values, n=100, method="inclusive")[percent - 1]
