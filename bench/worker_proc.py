"""One benchmark worker process: `python bench/worker_proc.py URL BACKEND [options]`.

It opens the app and optionally enqueues jobs itself (the `none` broker lives in this
process only), prints one JSON line `{"ready": <time.time()>, "enqueue_seconds": ...}`, waits
for a line on stdin (the start barrier), then runs a worker until SIGTERM. As it exits it
prints one more JSON line, its exit report: `{"sqs_calls": {operation: count}}` (empty but
for `sqs`). SIGUSR1 prints every asyncio task's stack to stderr.

After a preload, its peak RSS (`VmHWM`) is reset to the current RSS, so the peak the
benchmark reads covers the drain, not the building of the preloaded payloads.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import signal
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

from call_counter import CallCounter
from procstat import reset_peak_rss
from workload import enqueue_bulk, make_app

if TYPE_CHECKING:
    from collections.abc import Iterator

    from polyqueue import Polyqueue


def parse(argv: list[str]) -> argparse.Namespace:
    """The command line."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("url")
    parser.add_argument("backend")
    parser.add_argument("--concurrency", type=int, default=10)
    parser.add_argument("--preload", type=int, default=0, help="enqueue this many jobs first")
    parser.add_argument("--batch", type=int, default=1000, help="jobs per enqueue_many call")
    parser.add_argument("--profile", type=Path, help="write a pyinstrument profile here")
    return parser.parse_args(argv)


async def run(args: argparse.Namespace) -> None:
    """Preload, announce readiness, wait for the release, work until SIGTERM, report."""
    app = make_app(args.url, args.backend)
    counter = CallCounter()
    async with app:
        if args.backend == "sqs":
            counter.attach(app.broker)
        started = time.perf_counter()
        if args.preload:
            await enqueue_bulk(app, args.preload, args.batch)
            reset_peak_rss()
        enqueue_seconds = time.perf_counter() - started
        asyncio.get_running_loop().add_signal_handler(signal.SIGUSR1, dump_tasks)
        print(json.dumps({"ready": time.time(), "enqueue_seconds": enqueue_seconds}), flush=True)
        await asyncio.to_thread(sys.stdin.readline)  # the benchmark's `go`
        with profiled(args.profile):
            await work(app, args.concurrency)
    print(json.dumps({"sqs_calls": dict(counter.calls)}), flush=True)


async def work(app: Polyqueue, concurrency: int) -> None:
    """Run one worker until SIGTERM."""
    await app.run_worker(concurrency=concurrency)


def dump_tasks() -> None:
    """Print every asyncio task's stack to stderr (on SIGUSR1: the drain saw a stall)."""
    for task in asyncio.all_tasks():
        print(f"--- {task.get_name()}", file=sys.stderr)
        task.print_stack(file=sys.stderr)
    sys.stderr.flush()


@contextlib.contextmanager
def profiled(path: Path | None) -> Iterator[None]:
    """Profile the block with pyinstrument (a bench-only tool) if `path` is given."""
    if path is None:
        yield
        return
    from pyinstrument import Profiler  # noqa: PLC0415  (optional: only for --profile)

    profiler = Profiler(interval=0.0005, async_mode="disabled")
    profiler.start()
    try:
        yield
    finally:
        profiler.stop()
        path.write_text(profiler.output_text(unicode=True, show_all=False), encoding="utf-8")


if __name__ == "__main__":
    asyncio.run(run(parse(sys.argv[1:])))
