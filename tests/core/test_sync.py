"""`app.sync`: blocking calls from threads without an event loop, on a real PostgreSQL."""

from __future__ import annotations

import asyncio
import contextvars
import os
import threading
from collections.abc import Iterator

import pytest
from pydantic import BaseModel

from polyqueue import (
    ConfigurationError,
    JobStatus,
    JobTimeoutError,
    Polyqueue,
    PolyqueueSettings,
    TerminalError,
)
from polyqueue.portal import LoopThread

FAST = {"retry_backoff_base": 0.0, "retry_backoff_max": 0.0, "scheduler_interval": 0.1}


class Add(BaseModel):
    a: int
    b: int


class Sum(BaseModel):
    total: int


def build(url: str, **settings) -> Polyqueue:
    app = Polyqueue(**{"database_url": url, **FAST, **settings})

    @app.register("math.add")
    def add(payload: Add) -> Sum:
        if payload.a < 0:
            raise TerminalError("negative")
        return Sum(total=payload.a + payload.b)

    return app


@pytest.fixture(params=["postgres", "none"])
def app(request, clean_database: str) -> Iterator[Polyqueue]:
    app = build(clean_database, queue_backend=request.param)
    yield app
    app.sync.close()


def sync_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == "polyqueue-sync"]


def test_sync_calls_start_the_app_on_a_thread_of_its_own_and_close_stops_it(
    app: Polyqueue,
) -> None:
    before = len(sync_threads())
    job_id = app.sync.enqueue("math.add", Add(a=1, b=2))
    assert app.loop is not None
    assert len(sync_threads()) == before + 1
    assert app.sync.get_job(job_id).status is JobStatus.QUEUED
    app.sync.close()
    assert app.loop is None
    assert len(sync_threads()) == before
    app.sync.close()  # idempotent


def test_enqueue_run_wait_and_read_results_without_asyncio(app: Polyqueue) -> None:
    with app.sync as client:
        ok = client.enqueue("math.add", {"a": 2, "b": 3})
        bad = client.enqueue("math.add", Add(a=-1, b=0))
        (many,) = client.enqueue_many("math.add", [Add(a=5, b=5)])
        client.run_until_idle()
        assert client.wait_for(ok, timeout=30).status is JobStatus.SUCCEEDED
        assert client.get_job_result(ok) == {"total": 5}
        assert client.get_job_result_typed(many, Sum) == Sum(total=10)
        assert client.get_job_result_typed_via_registry(ok) == Sum(total=5)
        failed = client.get_job(bad)
        assert failed.status is JobStatus.FAILED
        assert client.requeue(bad) is True
        assert client.cancel(bad) is True
        assert client.get_job(bad).status is JobStatus.CANCELLED
        assert client.fail(ok) is False


def test_wait_for_times_out_with_polyqueue_error(app: Polyqueue) -> None:
    job_id = app.sync.enqueue("math.add", Add(a=1, b=1))
    with pytest.raises(JobTimeoutError):
        app.sync.wait_for(job_id, timeout=0.05)


def test_many_threads_share_one_loop(app: Polyqueue) -> None:
    ids: list[int] = []
    lock = threading.Lock()

    def produce(n: int) -> None:
        job_id = app.sync.enqueue("math.add", Add(a=n, b=n))
        with lock:
            ids.append(job_id)

    threads = [threading.Thread(target=produce, args=(n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(set(ids)) == 8
    assert len(sync_threads()) == 1
    app.sync.run_until_idle()
    assert {app.sync.get_job(i).status for i in ids} == {JobStatus.SUCCEEDED}


async def test_an_app_started_in_a_loop_serves_sync_calls_from_other_threads(
    clean_database: str,
) -> None:
    app = build(clean_database)
    async with app:
        job_id = await asyncio.to_thread(app.sync.enqueue, "math.add", Add(a=1, b=1))
        assert (await app.get_job(job_id)).status is JobStatus.QUEUED
        assert not sync_threads()  # no second loop: the app's own one served the call
        with pytest.raises(RuntimeError, match="await the async method"):
            app.sync.enqueue("math.add", Add(a=1, b=1))
        await asyncio.to_thread(app.sync.close)  # not ours to close
        assert app.loop is asyncio.get_running_loop()
    assert app.loop is None


def test_a_failed_start_is_reported_and_retried_on_the_next_call(clean_database: str) -> None:
    app = build(clean_database, connect_timeout=2)
    app.configure(database_url="postgresql://nobody@127.0.0.1:1/none")
    with pytest.raises(Exception, match="cannot connect"):
        app.sync.enqueue("math.add", Add(a=1, b=1))
    app.configure(database_url=clean_database)
    try:
        assert app.sync.enqueue("math.add", Add(a=1, b=1)) > 0
    finally:
        app.sync.close()


def test_configure_reads_the_environment_again_without_reloading(
    clean_database: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("POLYQUEUE_QUEUE_BACKEND", "none")
    app = Polyqueue(database_url="postgresql://nobody@127.0.0.1:1/x")  # as at import time
    assert app.settings.queue_backend == "none"
    monkeypatch.setenv("POLYQUEUE_DEFAULT_MAX_ATTEMPTS", "7")
    app.configure(database_url=clean_database)
    assert app.settings.default_max_attempts == 7  # the environment, read again
    assert app.database_url == clean_database
    app.configure(queue_backend="postgres")  # earlier overrides stay
    assert (app.settings.queue_backend, app.database_url) == ("postgres", clean_database)


def test_configure_on_a_settings_object_keeps_its_values(clean_database: str) -> None:
    app = Polyqueue(PolyqueueSettings(database_url=clean_database, default_max_attempts=4))
    app.configure(queue_backend="none")
    assert (app.settings.default_max_attempts, app.settings.queue_backend) == (4, "none")


async def test_configure_refuses_a_started_app_and_unknown_settings(clean_database: str) -> None:
    app = build(clean_database)
    with pytest.raises(ConfigurationError, match="unknown setting"):
        app.configure(no_such_setting=1)
    async with app:
        with pytest.raises(ConfigurationError, match="before start"):
            app.configure(queue_backend="none")


async def test_run_until_idle_runs_retries_due_and_leaves_later_jobs(clean_database: str) -> None:
    app = build(clean_database)
    attempts: list[int] = []

    @app.register("flaky", max_attempts=3)
    async def flaky(payload: Add, ctx) -> int:
        attempts.append(ctx.attempt)
        if ctx.attempt < 3:
            raise RuntimeError("not yet")
        return payload.a

    async with app:
        await app.run_until_idle()  # nothing at all: returns
        now = await app.enqueue("flaky", Add(a=1, b=0))
        later = await app.enqueue("math.add", Add(a=1, b=0), delay=3600)
        await app.run_until_idle()
        assert attempts == [1, 2, 3]  # backoff 0: each retry was due at once
        assert (await app.get_job(now)).status is JobStatus.SUCCEEDED
        assert (await app.get_job(later)).status is JobStatus.SCHEDULED
        assert app._workers == []


async def test_run_until_idle_only_waits_for_its_queues(clean_database: str) -> None:
    app = build(clean_database)

    @app.register("other.job", queue="other")
    async def other(payload: Add) -> None:
        pass

    async with app:
        elsewhere = await app.enqueue("other.job", Add(a=1, b=1))
        mine = await app.enqueue("math.add", Add(a=1, b=1))
        await app.run_until_idle(queues=["default"])
        assert (await app.get_job(mine)).status is JobStatus.SUCCEEDED
        assert (await app.get_job(elsewhere)).status is JobStatus.QUEUED


def test_a_forked_child_is_told_instead_of_hanging(
    app: Polyqueue, monkeypatch: pytest.MonkeyPatch
) -> None:
    app.sync.start()
    parent = os.getpid()
    monkeypatch.setattr("polyqueue.sync.os.getpid", lambda: parent + 1)  # as in a child
    with pytest.raises(ConfigurationError, match="before this process forked"):
        app.sync.get_job(1)
    monkeypatch.undo()
    app.sync.close()


def test_calls_run_in_the_callers_context() -> None:
    request_id: contextvars.ContextVar[str] = contextvars.ContextVar("request_id")
    portal = LoopThread("polyqueue-test-portal")

    async def read() -> str:
        return request_id.get("unset")

    try:
        request_id.set("r-42")  # e.g. a logging field or the current trace span of a view
        assert portal.call(read()) == "r-42"
    finally:
        portal.stop()
