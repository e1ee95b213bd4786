"""Polyqueue's benchmarks: `python bench/run.py [--jobs N] [--runs R] [--backends a,b]`.

Starts its own embedded PostgreSQL (fsync on, as in production) in a temporary directory,
measures every benchmark in a fresh database per run and backend, and prints the medians
as a Markdown table. It prints figures; it never asserts them.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime as dt
import json
import signal
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import urlsplit, urlunsplit

import asyncpg

import queries
from measure import Plan, drain, pickup_latency, single_enqueue
from report import Result, machine_line, markdown_table, ratios, revision

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Awaitable, Callable

    Benchmark = Callable[[str, str, Plan], Awaitable[dict[str, float]]]

BENCHMARKS: dict[str, Benchmark] = {
    "drain": drain,
    "single": single_enqueue,
    "latency": pickup_latency,
}


def parse(argv: list[str]) -> argparse.Namespace:
    """The command line."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--jobs", type=int, default=20_000, help="jobs drained (and bulk-enqueued)")
    parser.add_argument("--batch", type=int, default=1000, help="jobs per enqueue_many call")
    parser.add_argument("--single", type=int, default=3000, help="jobs enqueued one at a time")
    parser.add_argument("--samples", type=int, default=200, help="pickup latency samples")
    parser.add_argument("--concurrency", type=int, default=10, help="the drain worker's")
    parser.add_argument("--runs", type=int, default=3, help="runs; figures are their medians")
    parser.add_argument("--backends", default="postgres,none", help="comma-separated brokers")
    parser.add_argument(
        "--only", default=",".join(BENCHMARKS), help="comma-separated: drain,single,latency"
    )
    parser.add_argument(
        "--database-url", help="use this server instead of an embedded one (trials only)"
    )
    parser.add_argument("--json", type=Path, help="write the raw results here")
    parser.add_argument(
        "--profile", type=Path, help="after the runs, profile one drain per backend into DIR"
    )
    return parser.parse_args(argv)


async def main(args: argparse.Namespace) -> int:
    """Run everything and print the report."""
    plan = Plan(args.jobs, args.batch, args.single, args.samples, args.concurrency)
    backends = [b.strip() for b in args.backends.split(",") if b.strip()]
    chosen = [BENCHMARKS[name.strip()] for name in args.only.split(",") if name.strip()]
    async with server(args.database_url) as admin_url:
        info = await server_info(admin_url)
        print(f"machine: {machine_line(info)}", file=sys.stderr)
        results = await measure_runs(admin_url, backends, chosen, plan, args.runs)
        if args.profile:
            await profile_drains(admin_url, backends, plan, args.profile)
    print_report(results, backends, info, plan, args.runs)
    if args.json:
        raw = {"machine": machine_line(info), "revision": revision(), "results": results}
        args.json.write_text(json.dumps(raw, indent=2) + "\n", encoding="utf-8")
    return 0


@contextlib.asynccontextmanager
async def server(database_url: str | None) -> AsyncIterator[str]:
    """The admin URL of `database_url`, or of an embedded server with fsync on."""
    if database_url:
        yield database_url
        return
    from polyqueue.embedded import EmbeddedPostgres  # noqa: PLC0415  (needs the extra)

    with tempfile.TemporaryDirectory(prefix="polyqueue-bench-", ignore_cleanup_errors=True) as tmp:
        embedded = EmbeddedPostgres(Path(tmp) / "pg", fsync=True)
        url = await asyncio.to_thread(embedded.start)
        try:
            yield url
        finally:
            await asyncio.to_thread(embedded.stop)


async def server_info(admin_url: str) -> dict[str, str]:
    """Version, fsync and synchronous_commit of the server."""
    connection = await asyncpg.connect(admin_url)
    try:
        row = await connection.fetchrow(queries.load()["server_info"])
    finally:
        await connection.close()
    return dict(row)


async def measure_runs(
    admin_url: str, backends: list[str], chosen: list[Benchmark], plan: Plan, runs: int
) -> list[Result]:
    """Every chosen benchmark for every backend, `runs` times, each in a fresh database."""
    results: list[Result] = []
    for run in range(1, runs + 1):
        for backend in backends:
            for benchmark in chosen:
                async with fresh_database(admin_url, f"pqbench_{run}_{backend}") as url:
                    figures = await benchmark(url, backend, plan)
                for metric, value in figures.items():
                    results.append(
                        {"run": run, "backend": backend, "metric": metric, "value": value}
                    )
                    print(f"run {run} {backend:>8} {metric:<26} {value:12.2f}", file=sys.stderr)
    return results


async def profile_drains(admin_url: str, backends: list[str], plan: Plan, folder: Path) -> None:
    """One extra drain per backend with the worker under pyinstrument (not in the figures)."""
    await asyncio.to_thread(folder.mkdir, parents=True, exist_ok=True)
    for backend in backends:
        path = folder / f"drain-{backend}.txt"
        async with fresh_database(admin_url, f"pqbench_profile_{backend}") as url:
            figures = await drain(url, backend, plan, profile=path.resolve())
        rate = figures["drain_jobs_per_s"]
        print(f"profile {backend}: {path} ({rate:.0f} jobs/s under the profiler)", file=sys.stderr)


@contextlib.asynccontextmanager
async def fresh_database(admin_url: str, name: str) -> AsyncIterator[str]:
    """Create database `name` (dropping a leftover first); yield its URL; drop it after."""
    sql = queries.load(database=name)
    connection = await asyncpg.connect(admin_url)
    try:
        await connection.execute(sql["database_drop"])
        await connection.execute(sql["database_create"])
        yield urlunsplit(urlsplit(admin_url)._replace(path=f"/{name}"))
    finally:
        await connection.execute(sql["database_drop"])
        await connection.close()


def print_report(
    results: list[Result], backends: list[str], info: dict[str, str], plan: Plan, runs: int
) -> None:
    """The Markdown report on stdout."""
    print(f"## Polyqueue benchmarks, {dt.datetime.now(dt.UTC).date().isoformat()}\n")
    print(f"Machine: {machine_line(info)}\n")
    print(f"Polyqueue revision: {revision()}\n")
    print(
        f"{plan.jobs:,} jobs drained (concurrency {plan.concurrency}) and bulk-enqueued in "
        f"batches of {plan.batch:,}; "
        f"{plan.single:,} single enqueues; {plan.samples} latency samples. "
        f"Median of {runs} run(s), (min-max) after it.\n"
    )
    print(markdown_table(results, backends))
    if "postgres" in backends and "none" in backends:
        same_run = ratios(results, "drain_jobs_per_s", "none", "postgres")
        if same_run:
            median = statistics.median(same_run)
            print(f"\nDrain `none` / `postgres` in the same run: {median:.2f}x (median of runs)")


def _exit_on_sigterm(signum: int, _frame: object) -> None:
    sys.exit(128 + signum)  # unwinds, so the embedded server and databases are cleaned up


if __name__ == "__main__":
    signal.signal(signal.SIGTERM, _exit_on_sigterm)
    started = time.perf_counter()
    code = asyncio.run(main(parse(sys.argv[1:])))
    print(f"(took {time.perf_counter() - started:.0f}s)", file=sys.stderr)
    sys.exit(code)
