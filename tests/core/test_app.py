"""Reading jobs back, results, cancel and requeue, and start-up errors, on a real database."""

from __future__ import annotations

import asyncio
import time

import pytest
from pydantic import BaseModel

from polyqueue import (
    ConfigurationError,
    DatabaseUnavailableError,
    JobNotFoundError,
    JobStatus,
    JobTimeoutError,
    Polyqueue,
    ResultUnavailableError,
    TerminalError,
)


class Numbers(BaseModel):
    a: int
    b: int


class Total(BaseModel):
    total: int


def build(make_app, **settings) -> Polyqueue:
    app = make_app(**settings)

    @app.register("math.add")
    async def add(payload: Numbers) -> Total:
        return Total(total=payload.a + payload.b)

    @app.register("math.fail", max_attempts=1)
    async def fail(payload: Numbers) -> None:
        raise TerminalError("no")

    @app.register("math.block")
    async def block(payload: Numbers) -> None:
        await asyncio.Event().wait()

    return app


@pytest.fixture
async def app(make_app):
    app = build(make_app)
    async with app:
        worker = app.worker()
        task = asyncio.create_task(worker.run())
        yield app
        worker.stop()
        await task


async def test_results_come_back_raw_and_typed(app: Polyqueue) -> None:
    job_id = await app.enqueue("math.add", {"a": 2, "b": 3})
    job = await app.wait_for(job_id, timeout=30)
    assert job.status is JobStatus.SUCCEEDED
    assert job.attempt == 1
    assert job.started_at is not None and job.finished_at is not None
    assert await app.get_job_result(job_id) == {"total": 5}
    assert await app.get_job_result_typed(job_id, Total) == Total(total=5)
    assert await app.get_job_result_typed_via_registry(job_id) == Total(total=5)


async def test_a_finished_jobs_notice_goes_in_the_commit_that_records_it(app: Polyqueue) -> None:
    """The default broker is the built-in one: its notices live beside the jobs."""
    job_ids = await app.enqueue_many("math.add", [{"a": n, "b": 1} for n in range(20)])
    for job_id in job_ids:
        await app.wait_for(job_id, timeout=30)
    count = "SELECT count(*) FROM polyqueue.broker_messages"
    assert await app.store.pool.fetchval(count) == 0  # no wait: gone with the outcome


async def test_a_failed_job_has_no_result(app: Polyqueue) -> None:
    job_id = await app.enqueue("math.fail", {"a": 1, "b": 1})
    job = await app.wait_for(job_id, timeout=30)
    assert job.status is JobStatus.FAILED
    assert job.error is not None and job.error.type == "TerminalError"
    with pytest.raises(ResultUnavailableError, match="failed"):
        await app.get_job_result(job_id)


async def test_unknown_job_ids_raise_not_found(app: Polyqueue) -> None:
    for call in (app.get_job, app.wait_for, app.cancel, app.requeue, app.get_job_result):
        with pytest.raises(JobNotFoundError, match="no job with id 999999"):
            await call(999999)


async def test_wait_for_gives_up_after_the_timeout(app: Polyqueue) -> None:
    job_id = await app.enqueue("math.add", {"a": 1, "b": 1}, delay=3600)
    with pytest.raises(JobTimeoutError, match=str(job_id)):
        await app.wait_for(job_id, timeout=0.2)


async def test_cancel_a_scheduled_job_and_requeue_it(app: Polyqueue) -> None:
    job_id = await app.enqueue("math.add", {"a": 1, "b": 1}, delay=3600)
    assert await app.cancel(job_id) is True
    assert (await app.get_job(job_id)).status is JobStatus.CANCELLED
    assert await app.cancel(job_id) is False  # already finished
    assert await app.requeue(job_id) is True
    assert (await app.wait_for(job_id, timeout=30)).status is JobStatus.SUCCEEDED
    assert await app.requeue(job_id) is False  # succeeded jobs stay succeeded


async def test_cancel_a_running_job_stops_its_handler(app: Polyqueue) -> None:
    job_id = await app.enqueue("math.block", {"a": 1, "b": 1})

    async def running() -> bool:
        return (await app.get_job(job_id)).status is JobStatus.RUNNING

    while not await running():
        await asyncio.sleep(0.02)
    assert await app.cancel(job_id) is True
    job = await app.wait_for(job_id, timeout=30)
    assert job.status is JobStatus.CANCELLED
    workers = app.store.pool
    # The worker let go of the job: nothing is left running under its id.
    assert (
        await workers.fetchval("SELECT count(*) FROM polyqueue.jobs WHERE status = 'running'") == 0
    )


async def test_requeue_a_failed_job_gives_fresh_attempts(app: Polyqueue) -> None:
    job_id = await app.enqueue("math.fail", {"a": 1, "b": 1})
    await app.wait_for(job_id, timeout=30)
    assert await app.requeue(job_id) is True
    job = await app.wait_for(job_id, timeout=30)
    assert job.status is JobStatus.FAILED
    assert job.attempt == 2  # max_attempts=1, yet it ran again after the requeue


async def test_an_unreachable_database_fails_fast_with_a_clear_error() -> None:
    app = Polyqueue(database_url="postgresql://me:s3cret@127.0.0.1:1/nowhere", connect_timeout=3)
    started = time.monotonic()
    with pytest.raises(
        DatabaseUnavailableError, match=r"cannot connect to postgresql://me@127\.0\.0\.1:1/nowhere"
    ) as caught:
        await app.start()
    assert "s3cret" not in str(caught.value)
    assert time.monotonic() - started < 30  # a bound against hanging, not a speed test


def test_a_handler_without_a_model_is_refused_at_registration() -> None:
    app = Polyqueue(database_url="postgresql://localhost/x")
    with pytest.raises(ConfigurationError, match="pydantic BaseModel"):

        @app.register("bad")
        async def bad(payload: dict) -> None: ...


def test_a_bad_timeout_strategy_is_refused_at_registration() -> None:
    app = Polyqueue(database_url="postgresql://localhost/x")
    with pytest.raises(ConfigurationError, match="timeout_strategy"):

        @app.register("bad", timeout_strategy="explode")  # type: ignore[arg-type]
        async def bad(payload: Numbers) -> None: ...


class Measure(BaseModel):
    value: float
    label: str = ""


async def test_results_json_cannot_store_fail_the_job_and_the_worker_lives(make_app) -> None:
    app = make_app()

    @app.register("nan")
    async def nan(payload: Measure) -> float:
        return float("nan")

    @app.register("nul")
    async def nul(payload: Measure) -> str:
        return "a\x00b"

    @app.register("nul_error", max_attempts=1)
    async def nul_error(payload: Measure) -> None:
        raise RuntimeError("bad \x00 byte")

    @app.register("ok")
    async def ok(payload: Measure) -> float:
        return payload.value

    async with app:
        worker = app.worker()
        task = asyncio.create_task(worker.run())
        ids = {
            name: await app.enqueue(name, {"value": 1.5})
            for name in ("nan", "nul", "nul_error", "ok")
        }
        jobs = {name: await app.wait_for(job_id, timeout=30) for name, job_id in ids.items()}
        worker.stop()
        await task
    assert jobs["nan"].status is JobStatus.FAILED
    assert "NaN" in jobs["nan"].error.message
    assert jobs["nul"].status is JobStatus.FAILED
    assert "NUL" in jobs["nul"].error.message
    assert jobs["nul_error"].status is JobStatus.FAILED
    assert jobs["nul_error"].error.message == "bad \\x00 byte"
    assert jobs["ok"].status is JobStatus.SUCCEEDED


async def test_payloads_jsonb_cannot_store_are_refused_at_enqueue(app: Polyqueue) -> None:
    from polyqueue import SerializationError  # noqa: PLC0415

    app.register("measure")(_measure)
    with pytest.raises(SerializationError, match="NUL"):
        await app.enqueue("measure", {"value": 1, "label": "a\x00"})


async def _measure(payload: Measure) -> None: ...
