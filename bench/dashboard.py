"""Dashboard pages on a big table: `python bench/dashboard.py [--jobs N] [--requests R]`.

Fills an embedded PostgreSQL (or `--database-url`) with N jobs (default 1,000,000) in one
`INSERT ... SELECT generate_series` (see `dashboard_fill` in queries.sql), then times each
page of the dashboard in this process through httpx's ASGI transport: the server time of a
request, database included, with no network. Each page is requested R times (default 9) and
the median is printed, first with every migration, then without the dashboard's indexes
(those of migration 0007 dropped), measured in the same run so that the two compare on a
noisy machine. It prints figures and asserts nothing.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time

import asyncpg
import httpx
from pydantic import BaseModel

import queries
from databases import fresh_database
from polyqueue import Polyqueue
from polyqueue.dashboard import create_app
from servers import postgres


class Step(BaseModel):
    n: int


def pages(last: int, workflow: int) -> list[tuple[str, str]]:
    """(label, path) of every page timed; `last` is the newest job id, `workflow` a chord's."""
    middle, failed = last // 2, (last // 2) // 50 * 50
    return [
        ("overview", "/"),
        ("overview, live update", "/live/overview"),
        ("jobs", "/jobs"),
        ("jobs, older page (before=)", f"/jobs?before={middle}"),
        ("jobs, state failed", "/jobs?status=failed"),
        ("jobs, state cancelled, older page", f"/jobs?status=cancelled&before={middle}"),
        ("jobs, queue + handler", "/jobs?queue=q3&handler=bench.handler_11"),
        ("jobs, queue + state failed", "/jobs?queue=q2&status=failed"),
        ("jobs, state running", "/jobs?status=running"),
        ("jobs, created 3-2 days ago", "/jobs?since=3d&until=2d"),
        ("jobs, created 3-2 days ago, state failed", "/jobs?since=3d&until=2d&status=failed"),
        ("jobs, text in error (rare)", f"/jobs?q=invoice+{failed}+has"),
        ("jobs, text in payload (common)", "/jobs?q=example.com"),
        (
            "jobs, live update of 50 rows",
            "/live/jobs?" + "&".join(f"id={last - i}" for i in range(50)),
        ),
        ("a job", f"/jobs/{failed}"),
        ("workers", "/workers"),
        ("queues", "/queues"),
        ("cron", "/cron"),
        ("workflows", "/workflows"),
        ("a workflow of 200 jobs (chord)", f"/workflows/{workflow}"),
    ]


async def time_pages(
    client: httpx.AsyncClient, last: int, workflow: int, requests: int
) -> dict[str, float]:
    """Median milliseconds per page."""
    medians = {}
    for label, path in pages(last, workflow):
        await client.get(path)  # warm: the statement prepared, the pages cached
        samples = []
        for _ in range(requests):
            started = time.perf_counter()
            response = await client.get(path)
            samples.append((time.perf_counter() - started) * 1000)
            if response.status_code != 200:
                raise SystemExit(f"{path}: {response.status_code} {response.text[:300]}")
        medians[label] = statistics.median(samples)
    return medians


async def main(jobs: int, requests: int, database_url: str | None) -> None:
    async with postgres(database_url) as admin, fresh_database(admin, "pq_bench_dash") as url:
        app = Polyqueue(database_url=url)

        @app.register("bench.step", queue="q0")
        async def step(payload: Step) -> None:
            """Never run here: the chord's jobs are only shown."""

        async with app:
            sql = queries.load()
            connection = await asyncpg.connect(url)
            try:
                started = time.perf_counter()
                await connection.execute(sql["dashboard_fill"], jobs)
                await connection.execute(sql["dashboard_workers"], 20)
                await connection.execute(sql["dashboard_analyze"])
                print(f"filled {jobs:,} jobs in {time.perf_counter() - started:.1f} s")
                members = [{"n": n} for n in range(199)]
                chord = await app.chord("bench.step", members, "bench.step", {"n": 0})
                last = await connection.fetchval(sql["dashboard_last_id"])
                transport = httpx.ASGITransport(app=create_app(app))
                async with httpx.AsyncClient(transport=transport, base_url="http://b") as client:
                    with_indexes = await time_pages(client, last, chord.id or 0, requests)
                    await connection.execute(sql["dashboard_drop_indexes"])
                    await connection.execute(sql["dashboard_analyze"])
                    without = await time_pages(client, last, chord.id or 0, requests)
            finally:
                await connection.close()
    print(f"\nmedian server time of {requests} requests, ms ({jobs:,} jobs)")
    print(f"{'page':<38} {'with 0007':>10} {'without':>10}")
    for label, value in with_indexes.items():
        print(f"{label:<38} {value:>10.1f} {without[label]:>10.1f}")


def parse() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--jobs", type=int, default=1_000_000)
    parser.add_argument("--requests", type=int, default=9)
    parser.add_argument("--database-url", default=None, help="a server to use (admin URL)")
    return parser.parse_args()


if __name__ == "__main__":
    options = parse()
    asyncio.run(main(options.jobs, options.requests, options.database_url))
