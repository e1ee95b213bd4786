"""Graceful shutdown of a worker process on SIGTERM / SIGINT (real subprocesses, real signals)."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from e2e_support import job_row, wait_done
from pydantic import BaseModel

from polyqueue import JobStatus
from polyqueue.testing.helpers import eventually, running_worker

if TYPE_CHECKING:
    from collections.abc import Iterator

    from polyqueue import Polyqueue

pytestmark = pytest.mark.slow

WORKER_APP = Path(__file__).with_name("worker_app.py")
QUEUE = "e2e_shutdown"  # as in worker_app.py


class Hold(BaseModel):
    release_file: str | None = None


class WorkerProcess:
    """A `worker_app.py` process with its log; always killed and reaped at the end."""

    def __init__(self, process: subprocess.Popen[bytes], log: Path) -> None:
        self.process = process
        self.log = log

    @property
    def pid(self) -> int:
        return self.process.pid

    def signal(self, signum: int) -> None:
        self.process.send_signal(signum)

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    async def exited(self, timeout: float = 20.0) -> int:
        async def gone() -> bool:
            return self.process.poll() is not None

        await eventually(gone, timeout)
        return self.process.returncode


@contextlib.contextmanager
def worker_process(database_url: str, tmp_path: Path, grace: float) -> Iterator[WorkerProcess]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("POLYQUEUE_")}
    env.update(
        POLYQUEUE_DATABASE_URL=database_url,
        POLYQUEUE_QUEUE_BACKEND="postgres",
        POLYQUEUE_SHUTDOWN_GRACE_SECONDS=str(grace),
        POLYQUEUE_HEARTBEAT_INTERVAL="0.2",
        POLYQUEUE_LEASE_SECONDS="2",
        POLYQUEUE_SCHEDULER_INTERVAL="0.1",
    )
    log = tmp_path / f"worker-{len(list(tmp_path.glob('worker-*.log')))}.log"
    with log.open("wb") as sink:
        process = subprocess.Popen(
            [sys.executable, str(WORKER_APP)],
            env=env,
            cwd=WORKER_APP.parent,
            stdin=subprocess.DEVNULL,
            stdout=sink,
            stderr=subprocess.STDOUT,
        )
    handle = WorkerProcess(process, log)
    try:
        yield handle
    except BaseException:
        print(f"--- worker process log ({log}) ---\n{handle.output()}")  # noqa: T201
        raise
    finally:
        if process.poll() is None:
            process.kill()
        process.wait(timeout=30)


def make_producer(make_app) -> Polyqueue:
    """The test's own app: enqueues, and can run "another worker" that completes jobs at once."""
    app = make_app(queue_backend="postgres")

    @app.register("e2e.hold", queue=QUEUE)
    async def hold(payload: Hold) -> dict[str, int]:
        return {"pid": os.getpid()}

    return app


async def running_in(app: Polyqueue, job_id: int, process: WorkerProcess) -> None:
    """Wait until the job's handler runs in the worker process: its row names that process's
    worker, and the process logged the start. (Claimed is not enough: a job claimed as the
    stop signal arrives is given back unstarted, not run in the grace period.)"""

    async def check() -> bool:
        if process.process.poll() is not None:
            pytest.fail(f"worker exited early with {process.process.returncode}")
        status = await app.store.pool.fetchval(
            """SELECT j.status::text FROM polyqueue.jobs j
               JOIN polyqueue.workers w ON w.id = j.worker_id
               WHERE j.id = $1 AND w.pid = $2""",
            job_id,
            process.pid,
        )
        return status == "running" and f"started [job_id={job_id} " in process.output()

    await eventually(check)


async def in_shutdown(process: WorkerProcess) -> None:
    """Wait until the worker logs that it is waiting for its in-flight jobs."""

    async def check() -> bool:
        return "waiting up to" in process.output()

    await eventually(check)


async def worker_rows(app: Polyqueue, pid: int) -> list[str]:
    rows = await app.store.pool.fetch("SELECT status FROM polyqueue.workers WHERE pid = $1", pid)
    return [r["status"] for r in rows]


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
async def test_in_flight_job_finishes_within_the_grace_period(
    make_app, clean_database, tmp_path, signum
) -> None:
    app = make_producer(make_app)
    release = tmp_path / "release"
    async with app:
        job_id = await app.enqueue("e2e.hold", Hold(release_file=str(release)))
        with worker_process(clean_database, tmp_path, grace=60) as worker:
            await running_in(app, job_id, worker)
            worker.signal(signum)
            await in_shutdown(worker)
            assert worker.process.poll() is None  # still draining
            release.touch()
            assert await worker.exited() == 0
        job = await app.get_job(job_id)
        statuses = await worker_rows(app, worker.pid)

    assert job.status is JobStatus.SUCCEEDED
    assert job.result == {"pid": worker.pid}
    assert job.attempt == 1
    assert statuses == ["stopped"]


async def test_idle_worker_stops_on_sigterm(make_app, clean_database, tmp_path) -> None:
    app = make_producer(make_app)
    async with app:
        with worker_process(clean_database, tmp_path, grace=60) as worker:

            async def registered() -> bool:
                return await worker_rows(app, worker.pid) == ["running"]

            await eventually(registered)
            worker.signal(signal.SIGTERM)
            assert await worker.exited() == 0
        assert await worker_rows(app, worker.pid) == ["stopped"]


async def test_unfinished_job_goes_back_after_the_grace_period(
    make_app, clean_database, tmp_path
) -> None:
    app = make_producer(make_app)
    async with app:
        job_id = await app.enqueue("e2e.hold", Hold())  # held forever
        with worker_process(clean_database, tmp_path, grace=0.5) as worker:
            await running_in(app, job_id, worker)
            worker.signal(signal.SIGTERM)
            assert await worker.exited() == 0
        given_back = await job_row(app, job_id)
        assert given_back["status"] == "queued"
        assert given_back["worker_id"] is None
        assert await worker_rows(app, worker.pid) == ["stopped"]

        # Another worker picks it up from the broker and completes it.
        async with running_worker(app):
            job = await wait_done(app, job_id, timeout=20)

    assert job.status is JobStatus.SUCCEEDED
    assert job.result == {"pid": os.getpid()}
    assert job.attempt == 2  # the claim count; the given-back attempt did not use up a retry


async def test_second_signal_skips_the_grace_period(make_app, clean_database, tmp_path) -> None:
    app = make_producer(make_app)
    async with app:
        job_id = await app.enqueue("e2e.hold", Hold())
        with worker_process(clean_database, tmp_path, grace=600) as worker:
            await running_in(app, job_id, worker)
            worker.signal(signal.SIGTERM)
            await in_shutdown(worker)
            worker.signal(signal.SIGINT)
            assert await worker.exited(timeout=30) == 0  # far sooner than the 600 s grace
        row = await job_row(app, job_id)

    assert row["status"] == "queued"
    assert row["worker_id"] is None
