"""Scale-out: the `postgres` drain with 1 and with 2 worker processes, and what each costs.

`scaleout_1` and `scaleout_2` are separate measurements (each gets a fresh database) of the
same run; the report divides them per run. Besides jobs/s, each reports the CPU seconds
PostgreSQL and the worker processes spent, so the report can say which of them bounds it.
"""

from __future__ import annotations

import functools
from typing import TYPE_CHECKING

from draining import timed_drain
from workload import enqueue_bulk, make_app

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

    from plan import Plan

__all__ = ["SCALEOUT_WORKERS", "metric", "scaleout"]

SCALEOUT_WORKERS = (1, 2)


def metric(name: str, workers: int) -> str:
    """The name of metric `name` of the drain by `workers` processes."""
    return f"scaleout{workers}_{name}"


def scaleout(workers: int) -> Callable[[str, str, Plan], Awaitable[dict[str, float]]]:
    """The scale-out benchmark with `workers` worker processes."""
    return functools.partial(_drain, workers)


async def _drain(workers: int, url: str, backend: str, plan: Plan) -> dict[str, float]:
    """Enqueue `plan.jobs`, then drain them with `workers` processes released together."""
    async with make_app(url, backend) as app:
        await enqueue_bulk(app, plan.jobs, plan.batch)
    figures = await timed_drain(
        url, backend, plan.jobs, workers=workers, concurrency=plan.concurrency
    )
    cpu = {
        "postgres": figures.postgres_cpu_seconds,
        "worker": figures.worker_cpu_seconds,
        "machine": figures.machine_cpu_seconds,  # every process, ours or not
    }
    results: dict[str, float | None] = {
        "jobs_per_s": figures.jobs_per_s,
        "seconds": figures.seconds,
    }
    for side, seconds in cpu.items():
        results[f"{side}_cpu_s"] = seconds
        results[f"{side}_cpus_busy"] = figures.busy(seconds)
        if side != "machine":
            results[f"jobs_per_{side}_cpu_s"] = figures.jobs_per(seconds)
    return {metric(name, workers): v for name, v in results.items() if v is not None}
