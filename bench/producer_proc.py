"""One benchmark producer process: `python bench/producer_proc.py URL BACKEND --jobs N`.

It opens the app, enqueues N no-op jobs with `enqueue_many` (`--batch` per call) and prints
one JSON line: the seconds the enqueueing took, and its own resident memory (`VmRSS`, kB)
before the first call, after the call that reached 10% of the jobs, and at the end, and its
peak (`VmHWM`). A process of its own, so its memory is the producer's alone.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time

from procstat import status_kb
from workload import enqueue_bulk, make_app


def parse(argv: list[str]) -> argparse.Namespace:
    """The command line."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("url")
    parser.add_argument("backend")
    parser.add_argument("--jobs", type=int, required=True)
    parser.add_argument("--batch", type=int, default=1000, help="jobs per enqueue_many call")
    return parser.parse_args(argv)


class RssSampler:
    """Samples `VmRSS` after the first batch that reaches `threshold` jobs."""

    def __init__(self, threshold: int) -> None:
        self.threshold = threshold
        self.kb: int | None = None

    def __call__(self, done: int) -> None:
        if self.kb is None and done >= self.threshold:
            self.kb = status_kb("self", "VmRSS")


async def run(args: argparse.Namespace) -> None:
    """Enqueue, sampling memory; print the figures."""
    sampler = RssSampler(threshold=max(1, args.jobs // 10))
    async with make_app(args.url, args.backend) as app:
        start_kb = status_kb("self", "VmRSS")
        started = time.perf_counter()
        await enqueue_bulk(app, args.jobs, args.batch, after_batch=sampler)
        seconds = time.perf_counter() - started
        end_kb = status_kb("self", "VmRSS")
    figures = {
        "seconds": seconds,
        "rss_kb_start": start_kb,
        "rss_kb_at_10pct": sampler.kb,
        "rss_kb_end": end_kb,
        "rss_kb_peak": status_kb("self", "VmHWM"),
    }
    print(json.dumps(figures), flush=True)


if __name__ == "__main__":
    asyncio.run(run(parse(sys.argv[1:])))
