"""Flow control's cost and effect: `python bench/flow.py [--jobs N] [--runs R]`.

In one process, on an embedded PostgreSQL (fsync on) and the `postgres` broker, each run
drains N no-op jobs with one worker (concurrency 10), in a fresh database each:

- `no limit`: the handler has no limit (the ordinary claim path);
- `limit 1000`: `concurrency_limit=1000`, which never binds: every job goes through the
  limited claim (`flow_claim`, under the flow lock), so this is what a limit costs;
- `limit 5`: `concurrency_limit=5` on a handler that sleeps 20 ms, sampling how many run at
  once: it should keep 5 running, no more and hardly fewer.

The three are measured in turn within each run, so that their ratio holds on a noisy machine;
it prints medians and ratios, never asserts them.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
from typing import Any

from pydantic import BaseModel

from databases import fresh_database
from polyqueue import Polyqueue
from servers import postgres

HANDLER = "bench.flow"
SLEEPY_MS = 20


class Noop(BaseModel):
    n: int


class Gauge:
    """How many handlers run at once: the most, and the average over the samples."""

    def __init__(self) -> None:
        self.now = 0
        self.most = 0
        self.samples: list[int] = []

    def enter(self) -> None:
        self.now += 1
        self.most = max(self.most, self.now)

    def leave(self) -> None:
        self.now -= 1

    async def sample(self, every: float = 0.005) -> None:
        while True:
            await asyncio.sleep(every)
            self.samples.append(self.now)


def parse() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--jobs", type=int, default=3000, help="jobs per drain")
    parser.add_argument("--sleepy-jobs", type=int, default=300, help="jobs of the limit-5 drain")
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--database-url", help="use this server instead of an embedded one")
    return parser.parse_args()


def build(url: str, limit: int | None, sleep_ms: int, gauge: Gauge) -> Polyqueue:
    app = Polyqueue(database_url=url, queue_backend="postgres")

    @app.register(HANDLER, concurrency_limit=limit)
    async def work(payload: Noop) -> None:  # noqa: ARG001  (the payload is the point)
        gauge.enter()
        try:
            if sleep_ms:
                await asyncio.sleep(sleep_ms / 1000)
        finally:
            gauge.leave()

    return app


async def drain(url: str, jobs: int, limit: int | None, sleep_ms: int) -> dict[str, Any]:
    gauge = Gauge()
    async with build(url, limit, sleep_ms, gauge) as app:
        for start in range(0, jobs, 1000):
            await app.enqueue_many(
                HANDLER, [Noop(n=n) for n in range(start, min(jobs, start + 1000))]
            )
        sampler = asyncio.create_task(gauge.sample())
        started = time.perf_counter()
        await app.run_until_idle(concurrency=10)
        seconds = time.perf_counter() - started
        sampler.cancel()
        done = await app.store.pool.fetchval(
            "SELECT count(*) FROM polyqueue.jobs WHERE status = 'succeeded'"
        )
    busy = [n for n in gauge.samples if n]
    return {
        "jobs_per_s": done / seconds,
        "done": done,
        "most_at_once": gauge.most,
        "mean_at_once": statistics.fmean(busy) if busy else 0.0,
    }


async def main() -> None:
    args = parse()
    cases = {
        "no limit": (args.jobs, None, 0),
        "limit 1000": (args.jobs, 1000, 0),
        "limit 5 (20 ms jobs)": (args.sleepy_jobs, 5, SLEEPY_MS),
    }
    results: dict[str, list[dict[str, Any]]] = {name: [] for name in cases}
    async with postgres(args.database_url) as admin_url:
        for run in range(args.runs):
            for number, (name, (jobs, limit, sleep_ms)) in enumerate(cases.items()):
                async with fresh_database(admin_url, f"bench_flow_{run}_{number}") as url:
                    results[name].append(await drain(url, jobs, limit, sleep_ms))
                    print(f"[flow] run {run + 1} {name}: {results[name][-1]}", flush=True)
    print(
        f"\n| drain (one worker, concurrency 10, medians of {args.runs} runs) | jobs/s |"
        " ratio to no limit | most at once | mean at once |"
    )
    print("| --- | ---: | ---: | ---: | ---: |")
    for name, measured in results.items():
        rate = statistics.median(r["jobs_per_s"] for r in measured)
        ratios = [
            r["jobs_per_s"] / n["jobs_per_s"]
            for r, n in zip(measured, results["no limit"], strict=True)
        ]
        print(
            f"| {name} | {rate:,.0f} | {statistics.median(ratios):.0%} |"
            f" {max(r['most_at_once'] for r in measured)} |"
            f" {statistics.median(r['mean_at_once'] for r in measured):.1f} |"
        )


if __name__ == "__main__":
    asyncio.run(main())
