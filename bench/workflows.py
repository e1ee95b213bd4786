"""Workflows' cost: `python bench/workflows.py [--steps N] [--nodes M] [--runs R]`.

In one process, on an embedded PostgreSQL (fsync on) and the `postgres` broker, each run
measures, in a fresh database each:

- `independent`: N no-op jobs enqueued with `enqueue_many`, drained by one worker (at each
  `--concurrency`, default 1 and 10): the rate the chain is compared with;
- `chain`: a chain of N no-op steps (`app.chain`), drained by the same kind of worker. Only
  one step is ever ready, and each waits for the commit of the one before it (which also
  releases it): at concurrency 1 this is the cost of a dependency edge, at 10 also what a
  chain gives up (the independent jobs run ten at a time, their outcomes committed
  together);
- `dag enqueue`: a DAG of M nodes (100 wide, each node after one of the layer before, and a
  final node after the whole last layer) built and inserted with one `wf.enqueue()`, against
  M independent jobs enqueued with `enqueue_many` in calls of 1,000.

The cases alternate within each run, so their ratios hold on a noisy machine; it prints
medians and ratios, never asserts them.
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

STEP = "bench.step"
WIDTH = 100


class Step(BaseModel):
    n: int


def parse() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--steps", type=int, default=1000, help="chain steps (and jobs)")
    parser.add_argument("--nodes", type=int, default=10_000, help="nodes of the DAG")
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument(
        "--concurrency", default="1,10", help="the worker's concurrency for each drain pair"
    )
    parser.add_argument("--database-url", help="use this server instead of an embedded one")
    return parser.parse_args()


def build(url: str) -> Polyqueue:
    app = Polyqueue(database_url=url, queue_backend="postgres")

    @app.register(STEP)
    async def step(payload: Step) -> Step:
        return Step(n=payload.n + 1)

    return app


async def drain(app: Polyqueue, jobs: int, concurrency: int) -> float:
    """Jobs per second of one worker draining what is ready (and what it releases)."""
    started = time.perf_counter()
    await app.run_until_idle(concurrency=concurrency)
    seconds = time.perf_counter() - started
    done = await app.store.pool.fetchval(
        "SELECT count(*) FROM polyqueue.jobs WHERE status = 'succeeded'"
    )
    if done != jobs:
        raise RuntimeError(f"drained {done} jobs of {jobs}")
    return float(done) / seconds


async def independent(url: str, steps: int, concurrency: int) -> float:
    async with build(url) as app:
        for start in range(0, steps, 1000):
            await app.enqueue_many(
                STEP, [Step(n=n) for n in range(start, min(steps, start + 1000))]
            )
        return await drain(app, steps, concurrency)


async def chain(url: str, steps: int, concurrency: int) -> float:
    async with build(url) as app:
        await app.chain(STEP, Step(n=0), *[STEP] * (steps - 1))
        return await drain(app, steps, concurrency)


async def dag_enqueue(url: str, nodes: int) -> dict[str, float]:
    """Seconds to build and insert an M-node DAG in one call, and M independent jobs."""
    async with build(url) as app:
        started = time.perf_counter()
        wf = app.workflow("bench")
        layer = wf.group(STEP, [Step(n=n) for n in range(WIDTH)])
        while len(wf) + WIDTH < nodes:
            layer = [wf.add(STEP, Step(n=0), after=[node]) for node in layer]
        while len(wf) < nodes - 1:
            wf.add(STEP, Step(n=0), after=[layer[len(wf) % WIDTH]])
        wf.add(STEP, Step(n=0), after=layer)
        built = time.perf_counter()
        done = await wf.enqueue()
        inserted = time.perf_counter()
        if len(done) != nodes:
            raise RuntimeError(f"enqueued {len(done)} nodes of {nodes}")
        for start in range(0, nodes, 1000):
            payloads = [Step(n=n) for n in range(start, min(nodes, start + 1000))]
            await app.enqueue_many(STEP, payloads)
        flat = time.perf_counter() - inserted
    return {"build": built - started, "insert": inserted - built, "flat": flat}


async def main() -> None:
    args = parse()
    levels = [int(c) for c in args.concurrency.split(",")]
    rates: dict[tuple[str, int], list[float]] = {
        (kind, c): [] for c in levels for kind in ("independent", "chain")
    }
    dags: list[dict[str, float]] = []
    async with postgres(args.database_url) as admin_url:
        for run in range(args.runs):
            for (kind, c), measured in rates.items():
                measure = independent if kind == "independent" else chain
                async with fresh_database(admin_url, f"bench_wf_{run}_{kind}_{c}") as url:
                    measured.append(await measure(url, args.steps, c))
            async with fresh_database(admin_url, f"bench_wf_{run}_dag") as url:
                dags.append(await dag_enqueue(url, args.nodes))
            summary: dict[str, Any] = {f"{k} c={c}": round(v[-1]) for (k, c), v in rates.items()}
            print(f"[workflows] run {run + 1}: jobs/s {summary}, dag {dags[-1]}", flush=True)
    print(f"\n| drain, one worker, medians of {args.runs} runs | concurrency | jobs/s | ratio |")
    print("| --- | ---: | ---: | ---: |")
    for c in levels:
        alone, chained = rates[("independent", c)], rates[("chain", c)]
        ratios = [x / y for x, y in zip(chained, alone, strict=True)]
        print(f"| {args.steps:,} independent jobs | {c} | {statistics.median(alone):,.0f} | 100% |")
        print(
            f"| a chain of {args.steps:,} steps | {c} | {statistics.median(chained):,.0f} |"
            f" {statistics.median(ratios):.0%} |"
        )
    build = statistics.median(d["build"] for d in dags)
    insert = statistics.median(d["insert"] for d in dags)
    flat = statistics.median(d["flat"] for d in dags)
    print(f"\n| enqueue of {args.nodes:,} jobs, medians of {args.runs} runs | seconds | jobs/s |")
    print("| --- | ---: | ---: |")
    print(f"| DAG: build (`wf.add`, `wf.group`) | {build:.2f} | |")
    rate = args.nodes / insert
    print(f"| DAG: `wf.enqueue()` (validation, one statement) | {insert:.2f} | {rate:,.0f} |")
    print(
        f"| independent: `enqueue_many`, calls of 1,000 | {flat:.2f} | {args.nodes / flat:,.0f} |"
    )


if __name__ == "__main__":
    asyncio.run(main())
