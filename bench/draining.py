"""`timed_drain`: worker processes drain jobs already queued; time, CPU and memory of it.

The clock starts when every worker process is ready (interpreter started, app open, any
preload done) and is released, and stops when the benchmark's own poll of the jobs table
sees every job `succeeded`. CPU of the workers and of the whole PostgreSQL server is read
just before the release and just after the last job is seen.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from jobwatch import JobWatch
from procstat import machine_busy_seconds
from workers import worker_processes

if TYPE_CHECKING:
    from pathlib import Path

__all__ = ["DrainFigures", "timed_drain"]


@dataclass(slots=True)
class DrainFigures:
    """What one drain measured."""

    jobs: int
    seconds: float = 0.0
    worker_cpu_seconds: float = 0.0
    """All worker processes together, from release to the last job."""
    postgres_cpu_seconds: float | None = None
    """The whole server, same interval (None: the server's processes are not readable)."""
    machine_cpu_seconds: float | None = None
    """Every process of the machine, ours or not, same interval."""
    peak_rss_kb: list[int] = field(default_factory=list)
    """Each worker process's `VmHWM` at the end."""
    ready: list[dict[str, Any]] = field(default_factory=list)
    """Each worker process's ready line."""
    exits: list[dict[str, Any]] = field(default_factory=list)
    """Each worker process's exit report."""

    @property
    def jobs_per_s(self) -> float:
        return self.jobs / self.seconds

    def jobs_per(self, cpu_seconds: float | None) -> float | None:
        """Jobs per CPU-second of `cpu_seconds`; None if unknown or too small to count."""
        return self.jobs / cpu_seconds if cpu_seconds else None

    def busy(self, cpu_seconds: float | None) -> float | None:
        """How many CPUs `cpu_seconds` kept busy on average during the drain."""
        return cpu_seconds / self.seconds if cpu_seconds is not None else None


async def timed_drain(
    url: str,
    backend: str,
    jobs: int,
    *,
    workers: int = 1,
    concurrency: int = 10,
    preload: int = 0,
    batch: int = 1000,
    profile: Path | None = None,
    since_id: int = 0,
) -> DrainFigures:
    """Drain `jobs` with `workers` processes (each enqueues `preload` jobs first); only jobs
    with an id above `since_id` count."""
    figures = DrainFigures(jobs)
    started_processes = worker_processes(
        workers,
        url,
        backend,
        concurrency=concurrency,
        preload=preload,
        batch=batch,
        profile=profile,
    )
    async with JobWatch(url, since_id) as watch, started_processes as processes:
        figures.ready = [process.ready for process in processes]
        postgres_before = watch.postgres_cpu_seconds()
        workers_before = sum(process.cpu_seconds() for process in processes)
        machine_before = machine_busy_seconds()
        await asyncio.gather(*(process.go() for process in processes))
        started = time.perf_counter()

        def dump_tasks() -> None:
            for process in processes:
                process.dump_tasks()

        await watch.wait_succeeded(jobs, on_stall=dump_tasks)
        figures.seconds = time.perf_counter() - started
        postgres_after = watch.postgres_cpu_seconds()
        machine_after = machine_busy_seconds()
        figures.worker_cpu_seconds = sum(p.cpu_seconds() for p in processes) - workers_before
        if postgres_before is not None and postgres_after is not None:
            figures.postgres_cpu_seconds = postgres_after - postgres_before
        if machine_before is not None and machine_after is not None:
            figures.machine_cpu_seconds = machine_after - machine_before
        figures.peak_rss_kb = [process.peak_rss_kb() or 0 for process in processes]
    figures.exits = [process.exit_report for process in processes]
    return figures
