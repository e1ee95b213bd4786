"""Commit latency's share of the pace: `python bench/latency.py [--delay-ms 1] [--runs R]`.

Every run measures, in fresh databases, the drain (one worker process, concurrency 10) and
the single enqueue (one awaited `enqueue` at a time) twice: straight to PostgreSQL, and
through a slow link (`slowlink.py`, a loopback proxy adding `--delay-ms` each way, so every
round trip costs at least twice that more), as a cloud database a hop away would be. The
two are measured back to back within a run, so their ratio holds on a noisy machine; it
prints medians of the runs and of the per-run ratios, never asserts them. Only PostgreSQL's
link is slowed: with `--backends redis` the Redis link stays direct.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import statistics
import sys
import time
from collections import defaultdict
from urllib.parse import urlsplit

import asyncpg

import servers
from backends import NEEDS_SERVER, Endpoints, backend_env, scoped_env, unique_tag
from databases import fresh_database, server_info
from measure import drain, single_enqueue
from plan import Plan
from report import machine_line, revision
from slowlink import SlowLink, slow_link

PINGS = 200
Figures = dict[str, list[float]]


def parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__)
    add = parser.add_argument
    add("--delay-ms", type=float, default=1.0, help="delay the link adds each way")
    add("--jobs", type=int, default=10_000, help="jobs per drain")
    add("--single", type=int, default=1000, help="jobs enqueued one at a time")
    add("--concurrency", type=int, default=10, help="the drain worker's")
    add("--runs", type=int, default=3, help="runs; figures are their medians")
    add("--backends", default="postgres", help="comma-separated brokers")
    add("--database-url", help="use this server instead of an embedded one")
    return parser.parse_args(argv)


async def round_trip_ms(url: str) -> float:
    """Median milliseconds of `SELECT 1` on one connection to `url`."""
    connection = await asyncpg.connect(url)
    try:
        samples = []
        for _ in range(PINGS):
            started = time.perf_counter()
            await connection.fetchval("SELECT 1")
            samples.append(time.perf_counter() - started)
    finally:
        await connection.close()
    return statistics.median(samples) * 1000


async def one_run(
    admin_url: str, link: SlowLink, backend: str, plan: Plan, run: int
) -> dict[str, float]:
    """Direct and slowed figures of one run on `backend`."""
    figures: dict[str, float] = {}
    for via in ("direct", "slow"):
        name = f"pqlat_{run}_{backend}_{via}"
        async with fresh_database(admin_url, name) as direct_url:
            url = direct_url if via == "direct" else link.url_for(direct_url)
            figures[f"{via}_round_trip_ms"] = await round_trip_ms(url)
            cpu_before = link.cpu_seconds()
            drained = await drain(url, backend, plan)
            figures[f"{via}_drain_jobs_per_s"] = drained["drain_jobs_per_s"]
            if via == "slow":
                figures["link_cpu_s_per_1000_jobs"] = (
                    (link.cpu_seconds() - cpu_before) / plan.jobs * 1000
                )
            single = await single_enqueue(url, backend, plan)
            figures[f"{via}_single_enqueue_jobs_per_s"] = single["single_enqueue_jobs_per_s"]
    return figures


async def main(args: argparse.Namespace) -> int:
    plan = Plan(jobs=args.jobs, single=args.single, concurrency=args.concurrency)
    backends = [name.strip() for name in args.backends.split(",") if name.strip()]
    results: dict[str, Figures] = {backend: defaultdict(list) for backend in backends}
    async with contextlib.AsyncExitStack() as stack:
        admin_url = await stack.enter_async_context(servers.postgres(args.database_url))
        needs_redis = any(NEEDS_SERVER.get(b) == "redis" for b in backends)
        endpoints = Endpoints(redis=stack.enter_context(servers.redis()) if needs_redis else None)
        port = urlsplit(admin_url).port or 5432
        link = stack.enter_context(slow_link(port, args.delay_ms / 1000))
        info = await server_info(admin_url)
        print(f"machine: {machine_line(info)}; revision {revision()}", file=sys.stderr)
        for run in range(1, args.runs + 1):
            for backend in backends:
                with scoped_env(backend_env(backend, unique_tag(str(run)), endpoints)):
                    figures = await one_run(admin_url, link, backend, plan, run)
                for metric, value in figures.items():
                    results[backend][metric].append(value)
                print(f"run {run} {backend}: {_short(figures)}", file=sys.stderr)
    print(report(results, args))
    return 0


def report(results: dict[str, Figures], args: argparse.Namespace) -> str:
    """The Markdown table: medians, and the median of the per-run slow/direct ratios."""
    lines = [
        (
            f"Through a link adding {args.delay_ms:g} ms each way (medians of {args.runs} runs;"
            f" drain {args.jobs:,} jobs, concurrency {args.concurrency}; single {args.single:,})."
        ),
        "",
        "| backend | measure | direct | slow link | slow / direct |",
        "| --- | --- | ---: | ---: | ---: |",
    ]
    for backend, figures in results.items():
        for label, metric in (
            ("round trip ms", "round_trip_ms"),
            ("drain jobs/s", "drain_jobs_per_s"),
            ("single enqueue jobs/s", "single_enqueue_jobs_per_s"),
        ):
            direct, slow = figures[f"direct_{metric}"], figures[f"slow_{metric}"]
            ratio = statistics.median(s / d for s, d in zip(slow, direct, strict=True))
            compared = (
                f"+{statistics.median(slow) - statistics.median(direct):.2f} ms"
                if metric == "round_trip_ms"
                else f"{ratio:.0%}"
            )
            lines.append(
                f"| {backend} | {label} | {_fmt(statistics.median(direct))} |"
                f" {_fmt(statistics.median(slow))} | {compared} |"
            )
        link_cpu = statistics.median(figures["link_cpu_s_per_1000_jobs"])
        lines.append(f"\nThe link's own CPU in the slow drain: {link_cpu:.2f} s per 1,000 jobs.")
    return "\n".join(lines)


def _fmt(value: float) -> str:
    return f"{value:,.0f}" if value >= 100 else f"{value:.2f}"


def _short(figures: dict[str, float]) -> str:
    return ", ".join(f"{name} {_fmt(value)}" for name, value in figures.items())


if __name__ == "__main__":
    started = time.perf_counter()
    code = asyncio.run(main(parse(sys.argv[1:])))
    print(f"(took {time.perf_counter() - started:.0f}s)", file=sys.stderr)
    sys.exit(code)
