"""The worker end to end: concurrency, the worker registry, progress, sync handlers, bad input."""

from __future__ import annotations

import asyncio
import os
import socket
import threading
from typing import Any

from e2e_support import status_is, wait_done
from pydantic import BaseModel

from polyqueue import JobContext, JobStatus
from polyqueue.broker import Message
from polyqueue.notices import notice_message
from polyqueue.testing.helpers import eventually, running_worker


class Item(BaseModel):
    n: int


class Resize(BaseModel):
    url: str
    width: int


# -- concurrency ------------------------------------------------------------------------------


async def test_worker_runs_at_most_concurrency_jobs_at_once(make_app, queue_backend) -> None:
    app = make_app(queue_backend=queue_backend)
    release = asyncio.Event()
    active: set[int] = set()
    peak = 0

    @app.register("e2e.held")
    async def held(payload: Item) -> dict[str, int]:
        nonlocal peak
        active.add(payload.n)
        peak = max(peak, len(active))
        await release.wait()
        active.discard(payload.n)
        return {"n": payload.n}

    async with app, running_worker(app, concurrency=3) as worker:
        ids = await app.enqueue_many("e2e.held", [Item(n=n) for n in range(6)])

        async def three_running() -> bool:
            return len(active) == 3

        await eventually(three_running)
        counts = await app.store.pool.fetch(
            "SELECT status::text, count(*) FROM polyqueue.jobs GROUP BY status"
        )
        assert dict(counts) == {"running": 3, "queued": 3}

        async def registry_counts_three() -> bool:
            current = await app.store.pool.fetchval(
                "SELECT current_jobs FROM polyqueue.workers WHERE id = $1", worker.id
            )
            return current == 3

        await eventually(registry_counts_three)
        release.set()
        jobs = [await wait_done(app, i, timeout=20) for i in ids]

    assert [j.status for j in jobs] == [JobStatus.SUCCEEDED] * 6
    assert [j.result for j in jobs] == [{"n": n} for n in range(6)]
    assert peak == 3


# -- the worker registry ----------------------------------------------------------------------


async def test_worker_registers_heartbeats_and_marks_itself_stopped(make_app) -> None:
    app = make_app()

    @app.register("e2e.noop", queue="reg")
    async def noop(payload: Item) -> None:
        return None

    async def row() -> dict[str, Any] | None:
        record = await app.store.pool.fetchrow(
            "SELECT * FROM polyqueue.workers WHERE id = $1", worker.id
        )
        return None if record is None else dict(record)

    async with app:
        async with running_worker(app, concurrency=2) as worker:

            async def registered() -> bool:
                return await row() is not None

            await eventually(registered)
            first = await row()
            assert first is not None
            assert first["status"] == "running"
            assert first["pid"] == os.getpid()
            assert first["hostname"] == socket.gethostname()
            assert first["queues"] == ["reg"]
            assert first["concurrency"] == 2

            async def heartbeat_moved() -> bool:
                current = await row()
                return current is not None and current["heartbeat_at"] > first["heartbeat_at"]

            await eventually(heartbeat_moved)

        stopped = await row()

    assert stopped is not None
    assert stopped["status"] == "stopped"
    assert stopped["stopped_at"] is not None
    assert stopped["current_jobs"] == 0


async def test_worker_ids_are_unique_per_start(make_app) -> None:
    app = make_app()
    async with app:
        ids = {app.worker().id for _ in range(20)}
    assert len(ids) == 20


# -- progress ---------------------------------------------------------------------------------


async def test_progress_is_stored_and_counts_as_a_heartbeat(make_app, queue_backend) -> None:
    # A long worker heartbeat interval, so that only ctx.progress can move heartbeat_at.
    app = make_app(
        queue_backend=queue_backend, heartbeat_interval=60, lease_seconds=90, worker_stale_after=120
    )
    reported = asyncio.Event()
    release = asyncio.Event()

    @app.register("e2e.progress")
    async def slow(payload: Item, ctx: JobContext) -> int:
        await ctx.progress(0.5, "half way")
        reported.set()
        await release.wait()
        return payload.n

    async with app, running_worker(app):
        job_id = await app.enqueue("e2e.progress", Item(n=7))
        await asyncio.wait_for(reported.wait(), timeout=20)
        job = await app.get_job(job_id)
        assert job.status is JobStatus.RUNNING
        assert job.progress == 0.5
        assert job.progress_message == "half way"
        assert job.started_at is not None
        assert job.heartbeat_at is not None
        assert job.heartbeat_at > job.started_at
        release.set()
        done = await wait_done(app, job_id, timeout=20)

    assert done.status is JobStatus.SUCCEEDED
    assert done.result == 7


# -- sync handlers ----------------------------------------------------------------------------


async def test_sync_handler_runs_in_a_thread_and_does_not_block_the_loop(
    make_app, queue_backend
) -> None:
    app = make_app(queue_backend=queue_backend)
    entered = threading.Event()
    release = threading.Event()
    threads: list[str] = []

    @app.register("e2e.sync")
    def blocking(payload: Item) -> dict[str, int]:
        threads.append(threading.current_thread().name)
        entered.set()
        release.wait(timeout=60)  # bounded, so a failing test cannot hang the thread forever
        return {"n": payload.n}

    @app.register("e2e.async")
    async def quick(payload: Item) -> dict[str, int]:
        return {"n": payload.n}

    try:
        async with app, running_worker(app, concurrency=2):
            sync_id = await app.enqueue("e2e.sync", Item(n=1))
            await asyncio.to_thread(entered.wait, 20)
            assert entered.is_set()
            # The sync handler blocks its thread; the loop still runs another job to the end.
            async_id = await app.enqueue("e2e.async", Item(n=2))
            quick_job = await wait_done(app, async_id, timeout=20)
            assert quick_job.status is JobStatus.SUCCEEDED
            assert (await app.get_job(sync_id)).status is JobStatus.RUNNING
            release.set()
            sync_job = await wait_done(app, sync_id, timeout=20)
    finally:
        release.set()

    assert sync_job.status is JobStatus.SUCCEEDED
    assert sync_job.result == {"n": 1}
    assert threads
    assert threads[0] != threading.main_thread().name


# -- bad input and faults ---------------------------------------------------------------------


async def test_result_that_is_not_json_fails_the_job_and_the_worker_lives(
    make_app, queue_backend
) -> None:
    app = make_app(queue_backend=queue_backend)
    calls = 0

    @app.register("e2e.unserialisable", max_attempts=3)
    async def unserialisable(payload: Item) -> Any:
        nonlocal calls
        calls += 1
        return object()

    @app.register("e2e.fine")
    async def fine(payload: Item) -> int:
        return payload.n

    async with app, running_worker(app):
        bad_id = await app.enqueue("e2e.unserialisable", Item(n=1))
        bad = await wait_done(app, bad_id, timeout=20)
        good = await wait_done(app, await app.enqueue("e2e.fine", Item(n=2)), timeout=20)

    assert bad.status is JobStatus.FAILED
    assert bad.attempt == 1  # not retried: the same value would fail again
    assert calls == 1
    assert bad.error is not None
    assert bad.error.type == "SerializationError"
    assert "not JSON-serialisable" in bad.error.message
    assert "object" in bad.error.message
    assert bad.result is None
    assert good.status is JobStatus.SUCCEEDED
    assert good.result == 2


async def test_payload_invalid_at_dispatch_fails_at_once_naming_the_field(
    make_app, queue_backend, db
) -> None:
    app = make_app(queue_backend=queue_backend)
    calls = 0

    @app.register("e2e.resize", max_attempts=5)
    async def resize(payload: Resize) -> str:
        nonlocal calls
        calls += 1
        return payload.url

    async with app:
        job_id = await app.enqueue("e2e.resize", Resize(url="u", width=3))
        # The stored payload no longer fits the model (an older producer, a hand edit).
        await db.execute(
            """UPDATE polyqueue.jobs SET payload = '{"url": "u", "width": "wide"}' WHERE id = $1""",
            job_id,
        )
        async with running_worker(app):
            job = await wait_done(app, job_id, timeout=20)

    assert job.status is JobStatus.FAILED
    assert job.attempt == 1
    assert calls == 0
    assert job.error is not None
    assert job.error.type == "TerminalError"
    assert "width" in job.error.message
    assert "wide" not in job.error.message  # values are not echoed: they may be secrets


async def test_unknown_handler_at_dispatch_fails_the_job_and_the_worker_lives(
    make_app, queue_backend, db
) -> None:
    app = make_app(queue_backend=queue_backend)

    @app.register("e2e.known")
    async def known(payload: Item) -> int:
        return payload.n

    async with app:
        orphan_id = await app.enqueue("e2e.known", Item(n=1))
        await db.execute("UPDATE polyqueue.jobs SET name = 'e2e.gone' WHERE id = $1", orphan_id)
        async with running_worker(app):
            orphan = await wait_done(app, orphan_id, timeout=20)
            good = await wait_done(app, await app.enqueue("e2e.known", Item(n=2)), timeout=20)

    assert orphan.status is JobStatus.FAILED
    assert orphan.error is not None
    assert orphan.error.type == "HandlerNotFoundError"
    assert "e2e.gone" in orphan.error.message
    assert "e2e.known" in orphan.error.message  # the message lists what is registered
    assert good.status is JobStatus.SUCCEEDED


async def test_a_handler_error_does_not_stop_other_jobs(make_app, queue_backend) -> None:
    app = make_app(queue_backend=queue_backend)

    @app.register("e2e.odd_fails", max_attempts=1)
    async def odd_fails(payload: Item) -> int:
        if payload.n % 2:
            raise RuntimeError(f"odd {payload.n}")
        return payload.n

    async with app, running_worker(app, concurrency=4):
        ids = await app.enqueue_many("e2e.odd_fails", [Item(n=n) for n in range(10)])

        async def done() -> bool:
            return all([await status_is(app, i, "succeeded", "failed") for i in ids])

        await eventually(done)
        jobs = [await app.get_job(i) for i in ids]

    assert [j.status for j in jobs] == [
        JobStatus.FAILED if n % 2 else JobStatus.SUCCEEDED for n in range(10)
    ]


async def test_garbage_and_duplicate_notices_are_dropped_and_each_job_runs_once(
    make_app, queue_backend
) -> None:
    app = make_app(queue_backend=queue_backend)
    runs: list[int] = []

    @app.register("e2e.count")
    async def count(payload: Item) -> None:
        runs.append(payload.n)

    async with app:
        queue = app.handlers["e2e.count"].queue
        ids = await app.enqueue_many("e2e.count", [Item(n=n) for n in range(5)])
        garbage = [b"not json", b"\xff\xfe", b'{"job_id": "seven"}', b'{"job_id": 987654321}']
        twice = [notice_message(job_id, queue) for job_id in ids for _ in range(2)]
        await app.broker.publish([Message(queue, body) for body in garbage] + twice)
        async with running_worker(app, concurrency=10):
            for job_id in ids:
                assert (await wait_done(app, job_id)).status is JobStatus.SUCCEEDED

            async def no_notices_left() -> bool:
                left = await app.broker.receive([queue], max_messages=100, wait_seconds=0)
                await app.broker.nack(left)
                return not left

            await eventually(no_notices_left, timeout=20)
    assert sorted(runs) == list(range(5))  # each job once, whatever came with it
