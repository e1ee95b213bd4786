"""Polyqueue's benchmarks: `python bench/run.py [--jobs N] [--runs R] [--backends a,b]`.

Starts every server it needs itself: an embedded PostgreSQL (fsync on, as in production) in
a temporary directory, a `redis-server` for `redis` and moto's threaded server for `sqs`.
It measures every benchmark in a fresh database per run and backend, and prints the medians
as Markdown. It prints figures; it never asserts them.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import json
import signal
import sys
import time
import traceback
from pathlib import Path
from typing import TYPE_CHECKING

import servers
from backends import NEEDS_SERVER, Endpoints, backend_env, scoped_env, unique_tag
from databases import fresh_database, server_info
from measure import drain
from plan import Plan
from report import machine_line, revision
from sections import render
from suite import CHOICES, Unit, units

if TYPE_CHECKING:
    from report import Failure, Result

DEFAULT_BACKENDS = "postgres,none,redis,pgmq"


def parse(argv: list[str]) -> argparse.Namespace:
    """The command line."""
    parser = argparse.ArgumentParser(description=__doc__)
    add = parser.add_argument
    add("--jobs", type=int, default=20_000, help="jobs per drain (and per bulk enqueue)")
    add("--batch", type=int, default=1000, help="jobs per enqueue_many call")
    add("--single", type=int, default=3000, help="jobs enqueued one at a time")
    add("--samples", type=int, default=200, help="pickup latency samples")
    add("--concurrency", type=int, default=10, help="each drain worker process's")
    add("--sqs-jobs", type=int, default=1000, help="jobs of the SQS drain (0: skip it)")
    add("--million", type=int, default=1_000_000, help="jobs of the big enqueue (0: skip it)")
    add("--runs", type=int, default=3, help="runs; figures are their medians")
    add("--backends", default=DEFAULT_BACKENDS, help="brokers of drain, single and latency")
    add("--only", default=",".join(CHOICES), help=f"comma-separated: {','.join(CHOICES)}")
    add("--database-url", help="use this server instead of an embedded one (trials only)")
    add("--json", type=Path, help="write the raw per-run results here")
    add("--profile", type=Path, help="after the runs, profile one drain per backend into DIR")
    return parser.parse_args(argv)


async def main(args: argparse.Namespace) -> int:
    """Start the servers, run everything and print the report."""
    plan = Plan(
        jobs=args.jobs,
        batch=args.batch,
        single=args.single,
        samples=args.samples,
        concurrency=args.concurrency,
        sqs_jobs=args.sqs_jobs,
        million=args.million,
    )
    backends = _names(args.backends)
    chosen = units(set(_names(args.only)), backends, plan)
    served = {u.backend for u in chosen} | (set(backends) if args.profile else set())
    needed = {NEEDS_SERVER[backend] for backend in served if backend in NEEDS_SERVER}
    async with contextlib.AsyncExitStack() as stack:
        admin_url = await stack.enter_async_context(servers.postgres(args.database_url))
        endpoints = Endpoints(
            redis=stack.enter_context(servers.redis()) if "redis" in needed else None,
            sqs=stack.enter_context(servers.moto()) if "moto" in needed else None,
        )
        info = await server_info(admin_url)
        print(f"machine: {machine_line(info)}", file=sys.stderr)
        results, failures = await measure_runs(admin_url, chosen, plan, args.runs, endpoints)
        if args.profile:
            await profile_drains(admin_url, backends, plan, args.profile, endpoints)
    print(render(results, backends, info, plan, failures), end="")
    if args.json:
        raw = {
            "machine": machine_line(info),
            "revision": revision(),
            "plan": dataclasses.asdict(plan),
            "results": results,
            "failures": failures,
        }
        args.json.write_text(json.dumps(raw, indent=2) + "\n", encoding="utf-8")
    return 1 if failures else 0


async def measure_runs(
    admin_url: str, chosen: list[Unit], plan: Plan, runs: int, endpoints: Endpoints
) -> tuple[list[Result], list[Failure]]:
    """Every unit, `runs` times, each in a fresh database with its backend's environment.

    A unit that fails (a stalled drain, a broker error) is reported and skipped, so one
    broken backend does not cost the figures of all the others.
    """
    results: list[Result] = []
    failures: list[Failure] = []
    for run in range(1, runs + 1):
        for unit in chosen:
            env = backend_env(unit.backend, unique_tag(str(run)), endpoints)
            try:
                with scoped_env(env):
                    async with fresh_database(admin_url, f"pqbench_{run}_{unit.label}") as url:
                        figures = await unit.benchmark(url, unit.backend, plan)
            except Exception as exc:
                traceback.print_exc(file=sys.stderr)
                failure = {"run": run, "backend": unit.backend, "benchmark": unit.label}
                failures.append({**failure, "error": f"{type(exc).__name__}: {exc}"})
                print(f"run {run} {unit.backend:>8} {unit.label}: FAILED ({exc})", file=sys.stderr)
                continue
            for metric, value in figures.items():
                results.append(
                    {"run": run, "backend": unit.backend, "metric": metric, "value": value}
                )
                print(f"run {run} {unit.backend:>8} {metric:<36} {value:12.2f}", file=sys.stderr)
    return results, failures


async def profile_drains(
    admin_url: str, backends: list[str], plan: Plan, folder: Path, endpoints: Endpoints
) -> None:
    """One extra drain per backend with the worker under pyinstrument (not in the figures)."""
    await asyncio.to_thread(folder.mkdir, parents=True, exist_ok=True)
    for backend in backends:
        path = folder / f"drain-{backend}.txt"
        with scoped_env(backend_env(backend, unique_tag("profile"), endpoints)):
            async with fresh_database(admin_url, f"pqbench_profile_{backend}") as url:
                figures = await drain(url, backend, plan, profile=path.resolve())
        rate = figures["drain_jobs_per_s"]
        print(f"profile {backend}: {path} ({rate:.0f} jobs/s under the profiler)", file=sys.stderr)


def _names(text: str) -> list[str]:
    return [name.strip() for name in text.split(",") if name.strip()]


def _exit_on_sigterm(signum: int, _frame: object) -> None:
    sys.exit(128 + signum)  # unwinds, so the servers and databases are cleaned up


if __name__ == "__main__":
    signal.signal(signal.SIGTERM, _exit_on_sigterm)
    started = time.perf_counter()
    code = asyncio.run(main(parse(sys.argv[1:])))
    print(f"(took {time.perf_counter() - started:.0f}s)", file=sys.stderr)
    sys.exit(code)
