"""`polyqueue worker --processes N`: a supervisor of real worker processes, real signals."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from e2e_support import wait_done
from test_shutdown import Hold, make_producer

from polyqueue import JobStatus
from polyqueue.testing.helpers import eventually

if TYPE_CHECKING:
    from collections.abc import Iterator

    from polyqueue import Polyqueue

pytestmark = pytest.mark.slow

HERE = Path(__file__).parent


@contextlib.contextmanager
def supervisor(
    database_url: str, tmp_path: Path, processes: int
) -> Iterator[tuple[subprocess.Popen[bytes], Path]]:
    """`polyqueue worker worker_app:app --processes N`; killed (with its group) at the end."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("POLYQUEUE_")}
    env.update(
        POLYQUEUE_DATABASE_URL=database_url,
        POLYQUEUE_QUEUE_BACKEND="postgres",
        POLYQUEUE_SHUTDOWN_GRACE_SECONDS="20",
        POLYQUEUE_HEARTBEAT_INTERVAL="0.2",
        POLYQUEUE_WORKER_STALE_AFTER="2",
        POLYQUEUE_MAINTENANCE_INTERVAL="0.3",
        POLYQUEUE_SCHEDULER_INTERVAL="0.1",
    )
    command = [sys.executable, "-m", "polyqueue.cli", "worker", "worker_app:app"]
    command += ["--processes", str(processes), "--concurrency", "4"]
    log = tmp_path / "supervisor.log"
    with log.open("wb") as sink:
        process = subprocess.Popen(
            command, env=env, cwd=HERE, stdin=subprocess.DEVNULL, stdout=sink, stderr=sink
        )
    try:
        yield process, log
    except BaseException:
        print(f"--- supervisor log ---\n{log.read_text(errors='replace')}")  # noqa: T201
        raise
    finally:
        if process.poll() is None:
            process.kill()
        process.wait(timeout=30)
        for pid in _worker_pids_from_log(log):  # children live in sessions of their own
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)


def _worker_pids_from_log(log: Path) -> list[int]:
    lines = log.read_text(errors="replace").splitlines()
    return [
        int(line.rsplit("(pid ", 1)[1].split(")")[0])
        for line in lines
        if "worker process" in line and "started (pid" in line
    ]


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


async def running_pids(app: Polyqueue) -> set[int]:
    rows = await app.store.pool.fetch("SELECT pid FROM polyqueue.workers WHERE status = 'running'")
    return {row["pid"] for row in rows}


async def test_a_killed_worker_process_is_replaced_and_its_job_still_completes(
    make_app, clean_database: str, tmp_path: Path
) -> None:
    release = tmp_path / "release"
    app = make_producer(make_app)
    async with app:
        with supervisor(clean_database, tmp_path, processes=2) as (process, _):
            await eventually(lambda: _count(app, 2), timeout=60)
            held = await app.enqueue("e2e.hold", Hold(release_file=str(release)))
            victim = await _running_in(app, held)
            os.kill(victim, signal.SIGKILL)

            async def replaced() -> bool:
                pids = await running_pids(app)
                return victim not in pids and len(pids) == 2

            await eventually(replaced, timeout=60)  # reaped by maintenance, started again
            release.touch()
            more = [
                await app.enqueue("e2e.hold", Hold(release_file=str(release))) for _ in range(20)
            ]
            for job_id in [held, *more]:
                job = await wait_done(app, job_id, timeout=60)
                assert job.status is JobStatus.SUCCEEDED
            assert (await app.get_job(held)).attempt == 2  # reclaimed from the dead process
            assert process.poll() is None  # the supervisor carries on


async def test_sigterm_to_the_supervisor_stops_every_process_after_its_jobs(
    make_app, clean_database: str, tmp_path: Path
) -> None:
    release = tmp_path / "release"
    app = make_producer(make_app)
    async with app:
        with supervisor(clean_database, tmp_path, processes=2) as (process, log):
            await eventually(lambda: _count(app, 2), timeout=60)
            children = await running_pids(app)
            jobs = [
                await app.enqueue("e2e.hold", Hold(release_file=str(release))) for _ in range(6)
            ]
            await eventually(lambda: _all_running(app, jobs), timeout=30)
            await eventually(lambda: _all_started(log, jobs), timeout=30)
            process.send_signal(signal.SIGTERM)

            def both_waiting() -> bool:  # each process (at most 4 jobs each) stops, jobs running
                return log.read_text(errors="replace").count("waiting up to") == len(children)

            await eventually(both_waiting, timeout=30)
            release.touch()  # the running jobs may finish now, within the grace period

            async def exited() -> bool:
                return process.poll() is not None

            await eventually(exited, timeout=60)
            assert process.returncode == 0
            for job_id in jobs:
                job = await app.get_job(job_id)
                assert job.status is JobStatus.SUCCEEDED
                assert job.attempt == 1  # finished where it ran, not reclaimed
            statuses = await app.store.pool.fetch(
                "SELECT status::text FROM polyqueue.workers WHERE pid = ANY($1)", list(children)
            )
            assert {row["status"] for row in statuses} == {"stopped"}
            assert not any(_alive(pid) for pid in children)


async def _count(app: Polyqueue, processes: int) -> bool:
    return len(await running_pids(app)) == processes


async def _all_running(app: Polyqueue, job_ids: list[int]) -> bool:
    count = await app.store.pool.fetchval(
        "SELECT count(*) FROM polyqueue.jobs WHERE id = ANY($1) AND status = 'running'", job_ids
    )
    return count == len(job_ids)


def _all_started(log: Path, job_ids: list[int]) -> bool:
    """Whether every job's handler has started (claimed is not enough: a job claimed as the
    stop signal arrives is given back unstarted)."""
    text = log.read_text(errors="replace")
    return all(f"started [job_id={job_id} " in text for job_id in job_ids)


async def _running_in(app: Polyqueue, job_id: int) -> int:
    """The pid of the worker process running `job_id`, once it runs."""
    found: list[int] = []

    async def check() -> bool:
        pid = await app.store.pool.fetchval(
            """SELECT w.pid FROM polyqueue.jobs j JOIN polyqueue.workers w ON w.id = j.worker_id
               WHERE j.id = $1 AND j.status = 'running'""",
            job_id,
        )
        if pid is not None:
            found.append(pid)
        return pid is not None

    await eventually(check, timeout=30)
    return found[0]
