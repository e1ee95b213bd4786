"""A million jobs through `enqueue_many`: throughput, and whether the producer's memory grows.

The producer is a subprocess of its own (`bench/producer_proc.py`) on the `postgres`
backend, with no worker running. Its resident memory is sampled after the first 10% of the
jobs and at the end: a producer that keeps nothing per job should not grow in between.
"""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from procstat import KB_PER_MB

if TYPE_CHECKING:
    from plan import Plan

__all__ = ["million"]

PRODUCER_SCRIPT = Path(__file__).with_name("producer_proc.py")
MIN_JOBS_PER_S = 2000  # the timeout assumes at least this rate (the target is 60,000)
TIMEOUT_MARGIN_SECONDS = 120


async def million(url: str, backend: str, plan: Plan) -> dict[str, float]:
    """Enqueue `plan.million` jobs from a producer process; its rate and memory."""
    args = [str(PRODUCER_SCRIPT), url, backend, "--jobs", str(plan.million)]
    args += ["--batch", str(plan.batch)]
    process = await asyncio.create_subprocess_exec(
        sys.executable, *args, stdout=asyncio.subprocess.PIPE
    )
    try:
        async with asyncio.timeout(plan.million / MIN_JOBS_PER_S + TIMEOUT_MARGIN_SECONDS):
            out, _ = await process.communicate()
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
    if process.returncode != 0 or not out.strip():
        raise RuntimeError(f"the producer process failed (code {process.returncode})")
    figures = json.loads(out.decode().strip().splitlines()[-1])
    at_10pct = figures["rss_kb_at_10pct"] / KB_PER_MB
    end = figures["rss_kb_end"] / KB_PER_MB
    return {
        "million_jobs_per_s": plan.million / figures["seconds"],
        "million_seconds": figures["seconds"],
        "million_rss_start_mb": figures["rss_kb_start"] / KB_PER_MB,
        "million_rss_10pct_mb": at_10pct,
        "million_rss_end_mb": end,
        "million_rss_growth_mb": end - at_10pct,
        "million_rss_peak_mb": figures["rss_kb_peak"] / KB_PER_MB,
    }
