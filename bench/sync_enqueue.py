"""Sync against async single enqueue: `python bench/sync_enqueue.py [--jobs N] [--runs R]`.

In one process, on one embedded PostgreSQL (fsync on) and the `postgres` broker, each run
times, in a fresh database each:

- async: one coroutine awaiting `app.enqueue` N times in a row (as `bench/run.py` single);
- sync: the main thread, which has no event loop, calling `app.sync.enqueue` N times in a row
  (the app runs on `app.sync`'s own loop thread);
- sync + psycopg: the same inside a psycopg 3 transaction of the caller's, one commit per job
  (`connection=conn`, what a Django view inside `transaction.atomic()` does);

and, to show what `app.sync` saves, `asyncio.run` around `async with app:` per call (a few
calls only). It prints the medians and the sync/async ratio; it never asserts them.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import statistics
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import psycopg

import queries
from workload import HANDLER, Noop, make_app

if TYPE_CHECKING:
    from collections.abc import Iterator


def parse() -> argparse.Namespace:
    """The command line."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--jobs", type=int, default=3000, help="enqueues per measurement")
    parser.add_argument("--runs", type=int, default=3, help="runs; figures are their medians")
    parser.add_argument("--database-url", help="an existing server instead of an embedded one")
    return parser.parse_args()


async def async_rate(url: str, jobs: int) -> float:
    """Jobs/s of awaited `app.enqueue` calls, one at a time."""
    async with make_app(url, "postgres") as app:
        await app.enqueue(HANDLER, Noop(n=-1))  # warm up the pool and prepared statements
        started = time.perf_counter()
        for n in range(jobs):
            await app.enqueue(HANDLER, Noop(n=n))
        return jobs / (time.perf_counter() - started)


def sync_rate(url: str, jobs: int) -> float:
    """Jobs/s of `app.sync.enqueue` calls from a thread without an event loop."""
    app = make_app(url, "postgres")
    with app.sync as client:
        client.enqueue(HANDLER, Noop(n=-1))
        started = time.perf_counter()
        for n in range(jobs):
            client.enqueue(HANDLER, Noop(n=n))
        return jobs / (time.perf_counter() - started)


def sync_psycopg_rate(url: str, jobs: int) -> float:
    """Jobs/s of `app.sync.enqueue(connection=...)` in a psycopg transaction each."""
    app = make_app(url, "postgres")
    with app.sync as client, psycopg.connect(url) as conn:
        with conn.transaction():
            client.enqueue(HANDLER, Noop(n=-1), connection=conn)
        started = time.perf_counter()
        for n in range(jobs):
            with conn.transaction():
                client.enqueue(HANDLER, Noop(n=n), connection=conn)
        return jobs / (time.perf_counter() - started)


def asyncio_run_rate(url: str, calls: int) -> float:
    """Calls/s of `asyncio.run` around `async with app:` and one enqueue: the old way."""

    async def once(n: int) -> None:
        async with make_app(url, "postgres") as app:
            await app.enqueue(HANDLER, Noop(n=n))

    started = time.perf_counter()
    for n in range(calls):
        asyncio.run(once(n))
    return calls / (time.perf_counter() - started)


def measure(admin_url: str, args: argparse.Namespace) -> dict[str, list[float]]:
    """Every figure of every run, each in a fresh database."""
    figures: dict[str, list[float]] = {"async": [], "sync": [], "psycopg": [], "run": []}
    for run in range(args.runs):
        for name, rate in (
            ("async", lambda url: asyncio.run(async_rate(url, args.jobs))),
            ("sync", lambda url: sync_rate(url, args.jobs)),
            ("psycopg", lambda url: sync_psycopg_rate(url, args.jobs)),
            ("run", lambda url: asyncio_run_rate(url, 20)),
        ):
            with _database(admin_url, f"pq_bench_sync_{name}_{run}") as url:
                figures[name].append(rate(url))
    return figures


@contextlib.contextmanager
def _database(admin_url: str, name: str) -> Iterator[str]:
    """A fresh database for one measurement, from sync code (each step its own loop)."""
    sql = queries.load(database=name)
    asyncio.run(_execute(admin_url, sql["database_drop"], sql["database_create"]))
    try:
        yield urlunsplit(urlsplit(admin_url)._replace(path=f"/{name}"))
    finally:
        asyncio.run(_execute(admin_url, sql["database_drop"]))


async def _execute(url: str, *statements: str) -> None:
    connection = await asyncpg.connect(url)
    try:
        for statement in statements:
            await connection.execute(statement)
    finally:
        await connection.close()


def report(figures: dict[str, list[float]], args: argparse.Namespace) -> None:
    """Print the medians, (min-max), and the sync/async ratio."""
    median = {name: statistics.median(values) for name, values in figures.items()}
    print(f"{args.jobs} single enqueues per measurement, median of {args.runs} run(s):")
    labels = {
        "async": "async `await app.enqueue`",
        "sync": "sync `app.sync.enqueue`",
        "psycopg": "sync `app.sync.enqueue(connection=psycopg)`, a commit each",
        "run": "`asyncio.run(...)` + `async with app:` per call",
    }
    for name, label in labels.items():
        low, high = min(figures[name]), max(figures[name])
        print(f"| {label} | {median[name]:,.0f} jobs/s ({low:,.0f}-{high:,.0f}) |")
    ratios = [s / a for s, a in zip(figures["sync"], figures["async"], strict=True)]
    print(
        f"sync / async: {statistics.median(median for median in ratios):.0%} (per run: "
        + ", ".join(f"{r:.0%}" for r in ratios)
        + ")"
    )


def main() -> None:
    """Start the server (fsync on, as in production), measure, print."""
    args = parse()
    if args.database_url:
        report(measure(args.database_url, args), args)
        return
    from polyqueue.embedded import EmbeddedPostgres  # noqa: PLC0415  (needs the extra)

    with tempfile.TemporaryDirectory(prefix="polyqueue-bench-", ignore_cleanup_errors=True) as tmp:
        embedded = EmbeddedPostgres(Path(tmp) / "pg", fsync=True)
        admin_url = embedded.start()
        try:
            report(measure(admin_url, args), args)
        finally:
            embedded.stop()


if __name__ == "__main__":
    main()
