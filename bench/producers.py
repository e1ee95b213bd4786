"""Many producers in one process: `python bench/producers.py [--jobs N] [--runs R]`.

Per backend (`--backends`, default postgres, redis, pgmq), in a fresh database each, no
worker running, it times:

- `1 coroutine`: one producer awaiting each `app.enqueue` in turn (the single enqueue);
- `100 coroutines`: `--producers` coroutines enqueueing in loops at once, the same jobs in all
  (concurrent calls share statements and commits: `polyqueue.batching`);
- `100, unshared` (postgres only): the same with the batcher cut down to one job per
  statement and as many statements in flight as the pool has connections, i.e. each call its
  own statement and commit, as before batching.

It prints medians of the runs and the redis and pgmq figures as ratios to postgres' of the
same run; it never asserts them.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import statistics
import sys
import time
from collections import defaultdict

import servers
from backends import NEEDS_SERVER, Endpoints, backend_env, scoped_env, unique_tag
from databases import fresh_database, server_info
from polyqueue.batching import InsertBatcher
from report import machine_line, revision
from workload import HANDLER, Noop, make_app

CASES = ("1 coroutine", "100 coroutines", "100, unshared")


def parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__)
    add = parser.add_argument
    add("--jobs", type=int, default=3000, help="jobs per case")
    add("--producers", type=int, default=100, help="coroutines of the concurrent cases")
    add("--runs", type=int, default=3, help="runs; figures are their medians")
    add("--backends", default="postgres,redis,pgmq", help="comma-separated brokers")
    add("--database-url", help="use this server instead of an embedded one")
    return parser.parse_args(argv)


async def rate(url: str, backend: str, jobs: int, producers: int, *, unshared: bool) -> float:
    """Jobs/s of `producers` coroutines enqueueing `jobs` between them, one call per job."""
    async with make_app(url, backend) as app:
        if unshared:
            producer = app.runtime.producer
            size = app.settings.pool_max_size or 10  # the pool without a worker
            producer._batcher = InsertBatcher(producer._insert_batch, flights=size, max_batch=1)  # noqa: SLF001
        await app.enqueue(HANDLER, Noop(n=-1))  # warm up the pool and prepared statements
        counter = iter(range(jobs))

        async def produce() -> None:
            for n in counter:
                await app.enqueue(HANDLER, Noop(n=n))

        started = time.perf_counter()
        await asyncio.gather(*(produce() for _ in range(producers)))
        return jobs / (time.perf_counter() - started)


async def one_run(
    admin_url: str, backend: str, args: argparse.Namespace, run: int
) -> dict[str, float]:
    figures = {}
    for number, case in enumerate(CASES):
        if case == "100, unshared" and backend != "postgres":
            continue
        producers = 1 if case == "1 coroutine" else args.producers
        async with fresh_database(admin_url, f"pqprod_{run}_{backend}_{number}") as url:
            figures[case] = await rate(
                url, backend, args.jobs, producers, unshared=case.endswith("unshared")
            )
    return figures


async def main(args: argparse.Namespace) -> int:
    backends = [name.strip() for name in args.backends.split(",") if name.strip()]
    results: dict[tuple[str, str], list[float]] = defaultdict(list)
    per_run: list[dict[str, dict[str, float]]] = []
    async with contextlib.AsyncExitStack() as stack:
        admin_url = await stack.enter_async_context(servers.postgres(args.database_url))
        needs_redis = any(NEEDS_SERVER.get(b) == "redis" for b in backends)
        endpoints = Endpoints(redis=stack.enter_context(servers.redis()) if needs_redis else None)
        info = await server_info(admin_url)
        print(f"machine: {machine_line(info)}; revision {revision()}", file=sys.stderr)
        for run in range(1, args.runs + 1):
            this_run: dict[str, dict[str, float]] = {}
            for backend in backends:
                with scoped_env(backend_env(backend, unique_tag(str(run)), endpoints)):
                    this_run[backend] = await one_run(admin_url, backend, args, run)
                for case, value in this_run[backend].items():
                    results[backend, case].append(value)
                print(f"run {run} {backend}: {this_run[backend]}", file=sys.stderr)
            per_run.append(this_run)
    print(report(results, per_run, backends, args))
    return 0


def report(
    results: dict[tuple[str, str], list[float]],
    per_run: list[dict[str, dict[str, float]]],
    backends: list[str],
    args: argparse.Namespace,
) -> str:
    lines = [
        (
            f"Enqueue jobs/s, one `enqueue` call per job, no worker (medians of {args.runs} runs,"
            f" {args.jobs:,} jobs per case; ratios per run to postgres', then their median)."
        ),
        "",
        "| backend | " + " | ".join(CASES) + " | 1 coroutine vs postgres | 100 vs postgres |",
        "| --- |" + " ---: |" * (len(CASES) + 2),
    ]
    for backend in backends:
        cells = [
            f"{statistics.median(results[backend, case]):,.0f}" if results[backend, case] else "-"
            for case in CASES
        ]
        for case in CASES[:2]:
            ratios = [
                r[backend][case] / r["postgres"][case]
                for r in per_run
                if "postgres" in r and case in r[backend]
            ]
            cells.append(f"{statistics.median(ratios):.0%}" if ratios else "-")
        lines.append(f"| {backend} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


if __name__ == "__main__":
    started = time.perf_counter()
    code = asyncio.run(main(parse(sys.argv[1:])))
    print(f"(took {time.perf_counter() - started:.0f}s)", file=sys.stderr)
    sys.exit(code)
