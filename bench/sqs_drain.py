"""The `sqs` benchmark: a drain against moto, and the SQS API calls per job on each side.

moto answers a dozen or so calls a second, so the drain's rate measures moto, not the
broker; the calls per job are the broker's own figure (the target is at most 0.3). This
process enqueues `plan.sqs_jobs` jobs (its client's calls are the producer side), then one
worker process drains them and reports its own client's calls as it exits (the worker side).
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

from call_counter import CallCounter
from draining import timed_drain
from workload import enqueue_bulk, make_app

if TYPE_CHECKING:
    from plan import Plan

__all__ = ["sqs_drain"]


async def sqs_drain(url: str, backend: str, plan: Plan) -> dict[str, float]:
    """Enqueue and drain `plan.sqs_jobs` through `backend` (`sqs`), counting API calls."""
    jobs = plan.sqs_jobs
    producer = CallCounter()
    async with make_app(url, backend) as app:
        producer.attach(app.broker)
        started = time.perf_counter()
        await enqueue_bulk(app, jobs, plan.batch)
        enqueue_seconds = time.perf_counter() - started
    figures = await timed_drain(url, backend, jobs, concurrency=plan.concurrency)
    if not figures.exits or "sqs_calls" not in figures.exits[0]:
        raise RuntimeError("the worker process exited without reporting its SQS calls")
    worker: dict[str, int] = figures.exits[0]["sqs_calls"]
    worker_total = sum(worker.values())
    results = {
        "sqs_drain_jobs_per_s": figures.jobs_per_s,
        "sqs_enqueue_jobs_per_s": jobs / enqueue_seconds,
        "sqs_calls_per_job_producer": producer.total / jobs,
        "sqs_calls_per_job_worker": worker_total / jobs,
        "sqs_calls_per_job_total": (producer.total + worker_total) / jobs,
    }
    results |= {f"sqs_calls_producer:{op}": float(n) for op, n in producer.calls.items()}
    results |= {f"sqs_calls_worker:{op}": float(n) for op, n in worker.items()}
    return results
