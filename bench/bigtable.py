"""Big tables: `python bench/bigtable.py [--rows 5000000] [--jobs N] [--runs R]`.

On one embedded PostgreSQL (fsync on), a database is filled with `--rows` succeeded jobs in
one `INSERT ... SELECT generate_series` (finished a day ago: inside the default retention),
then each run measures, against a fresh empty database of the same schema:

- the drain of `--jobs` no-op jobs by one worker process (concurrency 10), as `bench/run.py`
  drains, on the empty table and beside the kept rows;
- `inspect stats` (the store's `job_stats`, what the command runs) and its median time;
- the drain again while the rows are pruned: the worker process runs with a retention that
  makes every kept row prunable, so its maintenance deletes them during the drain, and the
  rows deleted per second are counted. The last run's prune goes on until the table is empty
  (`--prune-all`), timed.

It prints medians and the per-run ratios to the empty table's drain; it never asserts them.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import time
from collections import defaultdict

import asyncpg

import queries
import servers
from backends import scoped_env
from databases import fresh_database, server_info
from measure import drain
from plan import Plan
from polyqueue import Polyqueue
from report import machine_line, revision
from workload import SCHEMA

KEPT_FOR = 86400.0  # the filled rows finished a day ago
STATS_SAMPLES = 7
DAY = 86400


def parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__)
    add = parser.add_argument
    add("--rows", type=int, default=5_000_000, help="finished jobs kept in the table")
    add("--jobs", type=int, default=20_000, help="jobs per drain")
    add("--runs", type=int, default=3, help="runs; figures are their medians")
    add("--prune-all", action="store_true", help="after the runs, prune until the table is empty")
    add("--database-url", help="use this server instead of an embedded one")
    return parser.parse_args(argv)


async def fill(url: str, rows: int) -> float:
    """Migrate, insert `rows` finished jobs, VACUUM ANALYZE; the seconds it took."""
    async with Polyqueue(database_url=url, queue_backend="postgres", schema_name=SCHEMA):
        pass  # migrations
    sql = queries.load(schema=SCHEMA)
    connection = await asyncpg.connect(url)
    try:
        started = time.perf_counter()
        await connection.execute(sql["fill_finished"], rows, KEPT_FOR)
        await connection.execute(f"VACUUM ANALYZE {SCHEMA}.jobs")
        return time.perf_counter() - started
    finally:
        await connection.close()


async def stats_ms(url: str) -> float:
    """Median milliseconds of `inspect stats`' query."""
    async with Polyqueue(database_url=url, queue_backend="postgres", schema_name=SCHEMA) as app:
        samples = []
        for _ in range(STATS_SAMPLES):
            started = time.perf_counter()
            await app.store.job_stats(300.0)
            samples.append(time.perf_counter() - started)
    return statistics.median(samples) * 1000


async def count_finished(url: str) -> int:
    return await _value(url, "finished_count")


async def _value(url: str, query: str) -> int:
    connection = await asyncpg.connect(url)
    try:
        return int(await connection.fetchval(queries.load(schema=SCHEMA)[query]))
    finally:
        await connection.close()


async def pruning_drain(url: str, plan: Plan) -> dict[str, float]:
    """The drain while the worker's maintenance prunes the kept rows; rows pruned per s."""
    before = await count_finished(url)
    started = time.perf_counter()
    since_id = await _value(url, "max_job_id")
    with scoped_env({"POLYQUEUE_RETENTION_SUCCEEDED": str(KEPT_FOR / 2)}):
        figures = await drain(url, "postgres", plan, since_id=since_id)
    seconds = time.perf_counter() - started
    pruned = before + plan.jobs - await count_finished(url)
    return {"drain_jobs_per_s": figures["drain_jobs_per_s"], "pruned_per_s": pruned / seconds}


async def one_run(admin_url: str, big_url: str, plan: Plan, run: int) -> dict[str, float]:
    figures: dict[str, float] = {}
    async with fresh_database(admin_url, f"pqbig_empty_{run}") as empty_url:
        empty = await drain(empty_url, "postgres", plan)
        figures["empty_drain_jobs_per_s"] = empty["drain_jobs_per_s"]
        figures["empty_stats_ms"] = await stats_ms(empty_url)
    since_id = await _value(big_url, "max_job_id")
    with scoped_env({"POLYQUEUE_RETENTION_SUCCEEDED": str(KEPT_FOR * 30)}):
        kept = await drain(big_url, "postgres", plan, since_id=since_id)
    figures["kept_drain_jobs_per_s"] = kept["drain_jobs_per_s"]
    figures["kept_postgres_cpu_ms_per_job"] = 1000 / kept["drain_jobs_per_postgres_cpu_s"]
    figures["kept_stats_ms"] = await stats_ms(big_url)
    pruning = await pruning_drain(big_url, plan)
    figures["pruning_drain_jobs_per_s"] = pruning["drain_jobs_per_s"]
    figures["pruned_rows_per_s"] = pruning["pruned_per_s"]
    return figures


async def main(args: argparse.Namespace) -> int:
    plan = Plan(jobs=args.jobs)
    results: dict[str, list[float]] = defaultdict(list)
    async with servers.postgres(args.database_url) as admin_url:
        info = await server_info(admin_url)
        print(f"machine: {machine_line(info)}; revision {revision()}", file=sys.stderr)
        async with fresh_database(admin_url, "pqbig_kept") as big_url:
            seconds = await fill(big_url, args.rows)
            size = await _table_size(big_url)
            print(
                f"filled {args.rows:,} rows in {seconds:.0f}s ({size / 2**30:.2f} GiB)",
                file=sys.stderr,
            )
            for run in range(1, args.runs + 1):
                # each run prunes some: fill back up to --rows
                missing = args.rows - await count_finished(big_url)
                if missing > 0 and run > 1:
                    await _top_up(big_url, missing)
                figures = await one_run(admin_url, big_url, plan, run)
                for name, value in figures.items():
                    results[name].append(value)
                shown = ", ".join(f"{k} {v:,.1f}" for k, v in figures.items())
                print(f"run {run}: {shown}", file=sys.stderr)
            prune_all = await _prune_all(big_url) if args.prune_all else None
    print(report(results, args, seconds, size, prune_all))
    return 0


async def _table_size(url: str) -> int:
    return await _value(url, "table_size")


async def _top_up(url: str, rows: int) -> None:
    connection = await asyncpg.connect(url)
    try:
        await connection.execute(queries.load(schema=SCHEMA)["fill_finished"], rows, KEPT_FOR)
        await connection.execute(f"VACUUM ANALYZE {SCHEMA}.jobs")
    finally:
        await connection.close()


async def _prune_all(url: str) -> tuple[int, float]:
    """Rows and seconds of an idle worker's maintenance pruning every kept row."""
    before = await count_finished(url)
    with scoped_env({"POLYQUEUE_RETENTION_SUCCEEDED": str(KEPT_FOR / 2)}):
        app = Polyqueue(database_url=url, queue_backend="postgres", schema_name=SCHEMA)
        async with app:
            worker = app.worker(concurrency=1)
            running = asyncio.create_task(worker.run())
            started = time.perf_counter()
            while await count_finished(url):  # noqa: ASYNC110  (polling the database)
                await asyncio.sleep(1)
            seconds = time.perf_counter() - started
            worker.stop()
            await running
    return before, seconds


def report(
    results: dict[str, list[float]],
    args: argparse.Namespace,
    fill_seconds: float,
    size: int,
    prune_all: tuple[int, float] | None,
) -> str:
    def median(name: str) -> float:
        return statistics.median(results[name])

    def ratio(name: str) -> str:
        values = [
            k / e for k, e in zip(results[name], results["empty_drain_jobs_per_s"], strict=True)
        ]
        return f"{statistics.median(values):.0%}"

    lines = [
        (
            f"{args.rows:,} succeeded jobs kept (filled in {fill_seconds:.0f} s, table and indexes"
            f" {size / 2**30:.2f} GiB); drains of {args.jobs:,} no-op jobs, one worker process,"
            f" concurrency 10; medians of {args.runs} runs, ratios per run."
        ),
        "",
        "| measure | empty table | 5M kept | 5M kept, being pruned |",
        "| --- | ---: | ---: | ---: |",
        (
            f"| drain jobs/s | {median('empty_drain_jobs_per_s'):,.0f} |"
            f" {median('kept_drain_jobs_per_s'):,.0f} ({ratio('kept_drain_jobs_per_s')}) |"
            f" {median('pruning_drain_jobs_per_s'):,.0f} ({ratio('pruning_drain_jobs_per_s')}) |"
        ),
        (
            f"| `inspect stats` ms | {median('empty_stats_ms'):.1f} |"
            f" {median('kept_stats_ms'):.1f} | |"
        ),
        f"| rows pruned per s | | | {median('pruned_rows_per_s'):,.0f} |",
    ]
    if prune_all is not None:
        rows, seconds = prune_all
        lines.append(
            f"\nPruning all {rows:,} rows with an idle worker: {seconds:.0f} s"
            f" ({rows / seconds:,.0f} rows/s)."
        )
    return "\n".join(lines)


if __name__ == "__main__":
    started = time.perf_counter()
    code = asyncio.run(main(parse(sys.argv[1:])))
    print(f"(took {time.perf_counter() - started:.0f}s)", file=sys.stderr)
    sys.exit(code)
