"""Many worker processes: `python bench/processes.py [--jobs N] [--processes 1,2,4] [--runs R]`.

Each run enqueues `--jobs` no-op jobs (postgres broker, fresh database each) and drains them
with `polyqueue worker process_app:app --processes K --concurrency C`, the command users
run, timed from its spawn until the benchmark's poll sees every job succeeded (start-up
included, as the peers harness times it). CPU seconds over the same interval: the
supervisor with its worker processes, the whole PostgreSQL server, the whole machine (other
users of the machine included), so the report can say what saturates. Medians of the runs
and, per run, each K's rate over K=1's; it prints figures and never asserts them.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import statistics
import subprocess
import sys
import time
from collections import defaultdict
from pathlib import Path

import servers
from databases import fresh_database, server_info
from jobwatch import JobWatch
from procstat import machine_busy_seconds, tree_cpu_seconds
from report import machine_line, revision
from workload import enqueue_bulk, make_app

HERE = Path(__file__).parent
STOP_TIMEOUT_SECONDS = 60.0


def parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__)
    add = parser.add_argument
    add("--jobs", type=int, default=20_000, help="jobs per drain")
    add("--processes", default="1,2,4", help="comma-separated process counts")
    add("--concurrency", type=int, default=10, help="each worker process's")
    add("--runs", type=int, default=3, help="runs; figures are their medians")
    add("--database-url", help="use this server instead of an embedded one")
    return parser.parse_args(argv)


async def drain(url: str, jobs: int, processes: int, concurrency: int) -> dict[str, float]:
    """Enqueue `jobs`, drain them with `--processes processes`; rate and CPU."""
    async with make_app(url, "postgres") as app:
        await enqueue_bulk(app, jobs, 1000)
    env = {**os.environ, "POLYQUEUE_DATABASE_URL": url, "POLYQUEUE_QUEUE_BACKEND": "postgres"}
    command = [sys.executable, "-m", "polyqueue.cli", "worker", "process_app:app"]
    command += ["--processes", str(processes), "--concurrency", str(concurrency)]
    command += ["--log-level", "warning"]
    async with JobWatch(url) as watch:
        postgres_before, machine_before = watch.postgres_cpu_seconds(), machine_busy_seconds()
        started = time.perf_counter()
        process = await asyncio.create_subprocess_exec(
            *command, env=env, cwd=HERE, stdin=subprocess.DEVNULL
        )
        try:
            await watch.wait_succeeded(jobs, on_stall=lambda: None)
            seconds = time.perf_counter() - started
            workers_cpu = tree_cpu_seconds(process.pid) or 0.0
            postgres_after, machine_after = watch.postgres_cpu_seconds(), machine_busy_seconds()
        finally:
            process.send_signal(signal.SIGTERM)
            await asyncio.wait_for(process.wait(), STOP_TIMEOUT_SECONDS)
    postgres = (postgres_after or 0.0) - (postgres_before or 0.0)
    machine = (machine_after or 0.0) - (machine_before or 0.0)
    return {
        "jobs_per_s": jobs / seconds,
        "workers_cpus": workers_cpu / seconds,
        "postgres_cpus": postgres / seconds,
        "machine_cpus": machine / seconds,
        "postgres_cpu_ms_per_job": postgres / jobs * 1000,
        "workers_cpu_ms_per_job": workers_cpu / jobs * 1000,
    }


async def main(args: argparse.Namespace) -> int:
    counts = [int(n) for n in args.processes.split(",")]
    results: dict[tuple[int, str], list[float]] = defaultdict(list)
    ratios: dict[int, list[float]] = defaultdict(list)
    async with servers.postgres(args.database_url) as admin_url:
        info = await server_info(admin_url)
        print(f"machine: {machine_line(info)}; revision {revision()}", file=sys.stderr)
        for run in range(1, args.runs + 1):
            this_run = {}
            for count in counts:
                async with fresh_database(admin_url, f"pqprocs_{run}_{count}") as url:
                    figures = await drain(url, args.jobs, count, args.concurrency)
                this_run[count] = figures["jobs_per_s"]
                for name, value in figures.items():
                    results[count, name].append(value)
                shown = ", ".join(f"{k} {v:.2f}" for k, v in figures.items())
                print(f"run {run} processes {count}: {shown}", file=sys.stderr)
            for count in counts:
                ratios[count].append(this_run[count] / this_run[counts[0]])
    print(report(results, ratios, counts, args))
    return 0


def report(
    results: dict[tuple[int, str], list[float]],
    ratios: dict[int, list[float]],
    counts: list[int],
    args: argparse.Namespace,
) -> str:
    def median(count: int, name: str) -> float:
        return statistics.median(results[count, name])

    lines = [
        (
            f"`polyqueue worker --processes K --concurrency {args.concurrency}`, {args.jobs:,}"
            f" no-op jobs, timed from the spawn (medians of {args.runs} runs; CPUs = CPU-seconds"
            " per second of the drain)."
        ),
        "",
        (
            "| processes | jobs/s | vs 1 | workers CPUs | PostgreSQL CPUs | machine CPUs |"
            " PostgreSQL CPU ms/job | workers CPU ms/job |"
        ),
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    lines += [
        f"| {count} | {median(count, 'jobs_per_s'):,.0f} |"
        f" {statistics.median(ratios[count]):.2f} |"
        f" {median(count, 'workers_cpus'):.2f} | {median(count, 'postgres_cpus'):.2f} |"
        f" {median(count, 'machine_cpus'):.2f} |"
        f" {median(count, 'postgres_cpu_ms_per_job'):.3f} |"
        f" {median(count, 'workers_cpu_ms_per_job'):.3f} |"
        for count in counts
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    started = time.perf_counter()
    code = asyncio.run(main(parse(sys.argv[1:])))
    print(f"(took {time.perf_counter() - started:.0f}s)", file=sys.stderr)
    sys.exit(code)
