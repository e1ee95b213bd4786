"""The Markdown report: one section per benchmark family, each only if it was measured."""

from __future__ import annotations

import datetime as dt
import os
import statistics
from typing import TYPE_CHECKING

from report import by_key, cell, machine_line, median_of, ratios, revision, table
from scaleout import SCALEOUT_WORKERS, metric

if TYPE_CHECKING:
    from plan import Plan
    from report import Failure, Result, Values

__all__ = ["render"]

SATURATED = 0.9  # share of the machine's CPUs busy above which CPU is the bound
SIMILAR = 1.2  # CPU uses within this factor count as equal

MAIN = [
    ("drain_jobs_per_s", "Drain no-op jobs, 1 worker process", "jobs/s"),
    ("bulk_enqueue_jobs_per_s", "Bulk enqueue (`enqueue_many`, batches)", "jobs/s"),
    ("single_enqueue_jobs_per_s", "Single enqueue (one awaited `enqueue` at a time)", "jobs/s"),
    (
        "single_insert_floor_per_s",
        "Floor: asyncpg committing a one-row `INSERT` per call",
        "rows/s",
    ),
    ("pickup_p50_ms", "Pickup latency on an idle worker, p50", "ms"),
    ("pickup_p99_ms", "Pickup latency on an idle worker, p99", "ms"),
    ("pickup_from_call_p50_ms", "Pickup latency from the `enqueue` call, p50", "ms"),
    ("pickup_from_call_p99_ms", "Pickup latency from the `enqueue` call, p99", "ms"),
    ("idle_enqueue_p50_ms", "An idle producer's `enqueue` (its durable commit), p50", "ms"),
    ("idle_enqueue_p99_ms", "An idle producer's `enqueue` (its durable commit), p99", "ms"),
]
RESOURCES = [
    ("drain_worker_peak_rss_mb", "Worker process peak RSS (`VmHWM`)", "MB"),
    ("drain_jobs_per_worker_cpu_s", "Jobs per worker CPU-second", "jobs/CPU-s"),
    (
        "drain_jobs_per_postgres_cpu_s",
        "Jobs per PostgreSQL CPU-second (whole server)",
        "jobs/CPU-s",
    ),
]
MILLION = [
    ("million_jobs_per_s", "Enqueue rate", "jobs/s"),
    ("million_rss_start_mb", "Producer RSS before the first call", "MB"),
    ("million_rss_10pct_mb", "Producer RSS after 10% of the jobs", "MB"),
    ("million_rss_end_mb", "Producer RSS at the end", "MB"),
    ("million_rss_growth_mb", "Growth from 10% to the end", "MB"),
    ("million_rss_peak_mb", "Producer peak RSS (`VmHWM`)", "MB"),
]
SQS = [
    ("sqs_drain_jobs_per_s", "Drain against moto, 1 worker process", "jobs/s"),
    ("sqs_enqueue_jobs_per_s", "Bulk enqueue into moto (`enqueue_many`)", "jobs/s"),
    ("sqs_calls_per_job_producer", "SQS API calls per job, producer", "calls"),
    ("sqs_calls_per_job_worker", "SQS API calls per job, worker", "calls"),
    ("sqs_calls_per_job_total", "SQS API calls per job, total", "calls"),
]
SCALEOUT = [
    ("jobs_per_s", "drain jobs/s"),
    ("jobs_per_postgres_cpu_s", "jobs per PostgreSQL CPU-s"),
    ("jobs_per_worker_cpu_s", "jobs per worker CPU-s"),
    ("postgres_cpus_busy", "PostgreSQL CPUs busy"),
    ("worker_cpus_busy", "worker CPUs busy"),
    ("machine_cpus_busy", "all processes' CPUs busy"),
]


def render(
    results: list[Result],
    backends: list[str],
    info: dict[str, str],
    plan: Plan,
    failures: list[Failure],
) -> str:
    """The whole report."""
    values = by_key(results)
    runs = max((result["run"] for result in results), default=0)
    parts = [_header(values, info, plan, runs)]
    parts += _main(results, values, backends, plan)
    parts += _scaleout(results, values, plan)
    parts += _million(values, plan)
    parts += _sqs(values, plan)
    parts += _failures(failures)
    return "\n\n".join(parts) + "\n"


def _header(values: Values, info: dict[str, str], plan: Plan, runs: int) -> str:
    measured = {name for name, _ in values}
    sizes = []
    if "drain_jobs_per_s" in measured:
        sizes.append(
            f"{plan.jobs:,} jobs drained (concurrency {plan.concurrency}) and bulk-enqueued in "
            f"batches of {plan.batch:,}"
        )
    if "single_enqueue_jobs_per_s" in measured:
        sizes.append(f"{plan.single:,} single enqueues")
    if "pickup_p50_ms" in measured:
        sizes.append(f"{plan.samples} latency samples")
    what = "; ".join(sizes) + ". " if sizes else ""
    return (
        f"## Polyqueue benchmarks, {dt.datetime.now(dt.UTC).date().isoformat()}\n\n"
        f"Machine: {machine_line(info)}\n\n"
        f"Polyqueue revision: {revision()}\n\n"
        f"{what}Median of {runs} run(s), (min-max) after it."
    )


def _rows(values: Values, rows: list[tuple[str, str, str]], columns: list[str]) -> list[list[str]]:
    """One row per measured metric of `rows`: title, unit, a cell per column."""
    lines = []
    for name, title, unit in rows:
        cells = [cell(values.get((name, column))) for column in columns]
        if any(c != "-" for c in cells):
            lines.append([title, unit, *cells])
    return lines


def _main(results: list[Result], values: Values, backends: list[str], plan: Plan) -> list[str]:
    header = ["benchmark", "unit", *(f"`{b}`" for b in backends)]
    parts = []
    if rows := _rows(values, MAIN, backends):
        parts.append(table(header, rows, left=2))
    same_run = ratios(results, ("drain_jobs_per_s", "none"), ("drain_jobs_per_s", "postgres"))
    if same_run:
        parts.append(
            f"Drain `none` / `postgres` in the same run: {statistics.median(same_run):.2f}x "
            "(median of the per-run ratios)."
        )
    if rows := _rows(values, RESOURCES, backends):
        parts.append(f"### Worker memory and CPU during the {plan.jobs:,}-job drain")
        parts.append(table(header, rows, left=2))
        parts.append(_resources_note(backends))
    return parts


def _resources_note(backends: list[str]) -> str:
    note = (
        "CPU from `/proc/<pid>/stat` (utime+stime), from the release of the worker to the "
        "last job seen: the worker process's, and PostgreSQL's whole server (postmaster, "
        "backends, WAL writer, checkpointer, autovacuum) less the benchmark's own polling "
        "backend."
    )
    if "redis" in backends:
        note += " The Redis server's CPU is not counted."
    if "none" in backends:
        note += (
            " `none`: the worker process enqueued the jobs itself; its peak was reset to its "
            "RSS after that, before the drain."
        )
    return note


def _scaleout(results: list[Result], values: Values, plan: Plan) -> list[str]:
    rows = []
    for workers in SCALEOUT_WORKERS:
        cells = [cell(values.get((metric(name, workers), "postgres"))) for name, _ in SCALEOUT]
        if any(c != "-" for c in cells):
            rows.append([str(workers), *cells])
    if not rows:
        return []
    one, two = ((metric("jobs_per_s", n), "postgres") for n in SCALEOUT_WORKERS)
    parts = [
        (
            f"### Scale-out: `postgres`, {plan.jobs:,} jobs, 1 or 2 worker processes "
            f"(concurrency {plan.concurrency} each)"
        ),
        table(["worker processes", *(title for _, title in SCALEOUT)], rows),
    ]
    same_run = ratios(results, two, one)
    if same_run:
        spread = f" ({min(same_run):.2f}-{max(same_run):.2f})" if len(same_run) > 1 else ""
        parts.append(
            f"2 / 1 worker processes in the same run: **{statistics.median(same_run):.2f}x**"
            f"{spread}, median of the per-run ratios. {_bound(values)}"
        )
    return parts


def _bound(values: Values) -> str:
    """Where the CPU went with the most worker processes, from the medians."""
    workers = max(SCALEOUT_WORKERS)
    postgres = median_of(values, metric("postgres_cpus_busy", workers), "postgres")
    python = median_of(values, metric("worker_cpus_busy", workers), "postgres")
    machine = median_of(values, metric("machine_cpus_busy", workers), "postgres")
    if postgres is None or python is None or machine is None:
        return ""
    cpus = os.cpu_count() or 1
    said = (
        f"With {workers} processes, PostgreSQL kept {postgres:.2f} CPUs busy and the worker "
        f"processes {python:.2f}; all processes together {machine:.2f} of the machine's {cpus}"
    )
    if machine < SATURATED * cpus:
        return f"{said}: the CPUs were not saturated, so waits (round trips, fsync) bound it."
    if postgres + python < SATURATED * machine:
        return f"{said}: the CPUs were saturated, partly by other processes (a noisy run)."
    if max(postgres, python) < SIMILAR * min(postgres, python):
        return f"{said}: the CPUs were saturated, by both about equally."
    busiest = "PostgreSQL" if postgres > python else "the worker processes (Python)"
    return f"{said}: the CPUs were saturated, mostly by {busiest}."


def _million(values: Values, plan: Plan) -> list[str]:
    rows = _rows(values, MILLION, ["postgres"])
    if not rows:
        return []
    return [
        (
            f"### {plan.million:,} jobs through `enqueue_many` (batches of {plan.batch:,}), "
            "one producer process, `postgres`, no worker"
        ),
        table(["figure", "unit", "`postgres`"], rows, left=2),
    ]


def _sqs(values: Values, plan: Plan) -> list[str]:
    rows = _rows(values, SQS, ["sqs"])
    if not rows:
        return []
    return [
        (
            f"### `sqs` against moto: {plan.sqs_jobs:,} jobs, 1 worker process "
            f"(concurrency {plan.concurrency})"
        ),
        table(["figure", "unit", "`sqs`"], rows, left=2),
        (
            "moto is not AWS: the rates are moto's on this machine, while the calls per job are "
            f"the broker's. Calls by operation (median of runs): {_operations(values)}."
        ),
    ]


def _operations(values: Values) -> str:
    sides = []
    for side in ("producer", "worker"):
        prefix = f"sqs_calls_{side}:"
        counts = {
            name.removeprefix(prefix): statistics.median(samples)
            for (name, backend), samples in sorted(values.items())
            if backend == "sqs" and name.startswith(prefix)
        }
        listed = ", ".join(f"`{op}` {n:,.0f}" for op, n in counts.items()) or "none"
        sides.append(f"{side}: {listed}")
    return "; ".join(sides)


def _failures(failures: list[Failure]) -> list[str]:
    if not failures:
        return []
    lines = [
        f"- run {f['run']}, `{f['backend']}`, {f['benchmark']}: {f['error']}" for f in failures
    ]
    return [
        "### Failed measurements (left out of the figures above; tracebacks on stderr)",
        "\n".join(lines),
    ]
