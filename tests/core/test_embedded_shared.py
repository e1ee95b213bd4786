"""One embedded PostgreSQL shared by several processes: stopping one never takes it away from
the others, a crashed one leaves a server the next start adopts, and the CLI sees, stops and
finds it (or says clearly that there is none)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
from typing import TYPE_CHECKING

import asyncpg
import pytest
from pydantic import BaseModel

from polyqueue import JobStatus, Polyqueue
from polyqueue.embedded import EmbeddedPostgres

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

pytestmark = pytest.mark.slow

POLYQUEUE = os.path.join(os.path.dirname(sys.executable), "polyqueue")  # noqa: PTH118, PTH120
TASKS = textwrap.dedent(
    """
    from pydantic import BaseModel
    from polyqueue import Polyqueue

    app = Polyqueue()

    class Numbers(BaseModel):
        a: int
        b: int

    @app.register("shared.add")
    async def add(payload: Numbers) -> int:
        return payload.a + payload.b
    """
)
HOLDER = textwrap.dedent(
    """
    import sys
    from pathlib import Path
    from polyqueue.embedded import EmbeddedPostgres

    server = EmbeddedPostgres(Path(sys.argv[1]), fsync=False)
    print(server.start(), flush=True)
    sys.stdin.read()  # hold the server until killed
    """
)


class Numbers(BaseModel):
    a: int
    b: int


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    """The environment of CLI runs: no POLYQUEUE_* variables, a registry of the test's own."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith("POLYQUEUE_")}
    return {**clean, "COLUMNS": "200", "XDG_STATE_HOME": str(tmp_path / "state")}


@pytest.fixture
def project(
    polyqueue_server_dir: Path, env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> Path:
    """A user's project directory with `tasks.py`; this process uses the test's registry."""
    (polyqueue_server_dir / "tasks.py").write_text(TASKS)
    monkeypatch.setenv("XDG_STATE_HOME", env["XDG_STATE_HOME"])
    monkeypatch.delenv("POLYQUEUE_DATABASE_URL", raising=False)
    return polyqueue_server_dir


def cli(*args: str, cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [POLYQUEUE, *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def status(cwd: Path, env: dict[str, str]) -> dict[str, object]:
    result = cli("db", "status", "--json", cwd=cwd, env=env)
    assert result.returncode == 0, result.stderr
    report: dict[str, object] = json.loads(result.stdout)
    return report


@pytest.fixture
def worker(project: Path, env: dict[str, str]) -> Iterator[subprocess.Popen[str]]:
    """`polyqueue worker tasks:app` on the project's embedded server, which it starts;
    yielded once its worker runs."""
    process = subprocess.Popen(
        [POLYQUEUE, "worker", "tasks:app"],
        cwd=project,
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert process.stderr is not None
    lines = []
    for line in process.stderr:  # ends at EOF if the worker dies
        lines.append(line)
        if "started on queues" in line:
            break
    assert process.poll() is None, "".join(lines)
    with process:
        yield process
        if process.poll() is None:
            process.kill()


def test_two_objects_share_a_server_until_the_last_one_stops(polyqueue_server_dir: Path) -> None:
    first = EmbeddedPostgres(polyqueue_server_dir / "pg", fsync=False)
    second = EmbeddedPostgres(polyqueue_server_dir / "pg", fsync=False)
    url = first.start()
    assert second.start() == url
    assert (first.started_here, second.started_here) == (True, False)
    assert len(first.clients()) == 2

    first.stop()  # it started the server, but the second still uses it
    assert second.running
    assert [client.pid for client in second.clients()] == [os.getpid()]
    second.stop()  # the last user leaves: the server stops
    assert not second.running
    assert second.clients() == []


def test_a_killed_user_leaves_a_server_the_next_start_adopts(polyqueue_server_dir: Path) -> None:
    data_dir = polyqueue_server_dir / "pg"
    with subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(data_dir)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    ) as holder:
        assert holder.stdout is not None
        url = holder.stdout.readline().strip()
        holder.kill()  # SIGKILL: no stop(), the lease goes with the process

    server = EmbeddedPostgres(data_dir, fsync=False)
    assert server.running
    assert server.clients() == []  # the dead process's lease is gone
    assert server.start() == url  # adopted, not started again
    assert not server.started_here
    server.stop()  # the only user: it stops the orphan
    assert not server.running


async def test_sigterm_to_one_worker_leaves_the_database_to_the_others(
    project: Path, env: dict[str, str], worker: subprocess.Popen[str]
) -> None:
    app = Polyqueue(data_dir=project / ".polyqueue")

    @app.register("shared.add")
    async def add(payload: Numbers) -> int:
        return payload.a + payload.b

    async with app:
        assert app._embedded is not None
        assert not app._embedded.started_here  # the worker started it: this app adopted it
        job = await app.wait_for(await app.enqueue("shared.add", Numbers(a=2, b=3)), timeout=60)
        assert (job.status, job.result) == (JobStatus.SUCCEEDED, 5)

        worker.send_signal(signal.SIGTERM)
        assert worker.wait(timeout=60) == 0
        _, errors = worker.communicate()
        assert "database unavailable" not in errors

        job_id = await app.enqueue("shared.add", Numbers(a=1, b=1))  # the database is still up
        await app.run_until_idle()
        assert (await app.get_job(job_id)).result == 2
        report = status(project, env)
        assert report["running"] is True
        assert report["clients"] == [
            {"pid": os.getpid(), "command": report["clients"][0]["command"]}
        ]  # type: ignore[index]
        url = app.database_url
    with pytest.raises((OSError, asyncpg.PostgresError)):  # the last user stopped it
        await asyncpg.connect(url, timeout=5)
    assert status(project, env)["running"] is False


def test_inspect_elsewhere_says_there_is_none_and_where_servers_are(
    project: Path, env: dict[str, str], worker: subprocess.Popen[str], tmp_path: Path
) -> None:
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    result = cli("inspect", "stats", cwd=elsewhere, env=env)
    assert result.returncode == 1, result.stderr
    (line,) = result.stderr.strip().splitlines()
    assert line.startswith(f"error: no embedded PostgreSQL in {elsewhere / '.polyqueue'}")
    assert "POLYQUEUE_DATA_DIR" in line
    assert f"embedded servers of this user: {project / '.polyqueue'}" in line
    assert not (elsewhere / ".polyqueue").exists()  # nothing created there

    admin = cli("admin", "cancel", "--status", "queued", cwd=elsewhere, env=env)
    assert admin.returncode == 1
    assert "no embedded PostgreSQL in" in admin.stderr

    pointed = {**env, "POLYQUEUE_DATA_DIR": str(project / ".polyqueue")}
    found = cli("inspect", "workers", "--json", cwd=elsewhere, env=pointed)
    assert found.returncode == 0, found.stderr
    assert [row["pid"] for row in json.loads(found.stdout)] == [worker.pid]


def test_db_stop_refuses_while_a_worker_uses_the_server_unless_forced(
    project: Path, env: dict[str, str], worker: subprocess.Popen[str]
) -> None:
    report = status(project, env)
    assert report["running"] is True
    assert [client["pid"] for client in report["clients"]] == [worker.pid]  # type: ignore[union-attr]

    refused = cli("db", "stop", cwd=project, env=env)
    assert refused.returncode == 1
    assert f"pid {worker.pid}: polyqueue worker tasks:app" in refused.stderr
    assert "--force" in refused.stderr
    assert status(project, env)["running"] is True

    forced = cli("db", "stop", "--force", cwd=project, env=env)
    assert forced.returncode == 0, forced.stderr
    assert status(project, env)["running"] is False
