"""The `polyqueue` command line, run as users run it: the console script, on a real database."""

from __future__ import annotations

import asyncio
import io
import json
import os
import signal
import socket
import subprocess
import sys
import textwrap
import urllib.request
from pathlib import Path

import asyncpg
import pytest
from pydantic import BaseModel
from rich.console import Console

from polyqueue import JobStatus, Polyqueue
from polyqueue.demo import DEMO_SCHEMA, run_demo
from polyqueue.sql import load_migrations

POLYQUEUE = Path(sys.executable).with_name("polyqueue")
UNREACHABLE = "postgresql://u:s3cret@127.0.0.1:1/x"

TASKS = textwrap.dedent(
    """
    from pydantic import BaseModel
    from polyqueue import Polyqueue

    app = Polyqueue()

    class Numbers(BaseModel):
        a: int
        b: int

    @app.register("cli.add")
    async def add(payload: Numbers) -> int:
        return payload.a + payload.b
    """
)


class Numbers(BaseModel):
    a: int
    b: int


def cli_env(extra: dict[str, str]) -> dict[str, str]:
    """This environment without POLYQUEUE_* variables, plus `extra`."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith("POLYQUEUE_")}
    return {**clean, "COLUMNS": "120", **extra}


def run_cli(
    *args: str, cwd: Path, env: dict[str, str] | None = None, timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    """Run the console script with no POLYQUEUE_* variables but those in `env`."""
    return subprocess.run(
        [str(POLYQUEUE), *args],
        cwd=cwd,
        env=cli_env(env or {}),
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def assert_one_line_error(result: subprocess.CompletedProcess[str], code: int) -> str:
    assert result.returncode == code, result.stderr
    assert "Traceback" not in result.stderr + result.stdout
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: ")
    return lines[0]


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """A directory with `tasks.py` defining `app`, as a user's project would."""
    (tmp_path / "tasks.py").write_text(TASKS)
    return tmp_path


# -- migrate --------------------------------------------------------------------------------------


def test_migrate_applies_then_is_idempotent(polyqueue_database_url: str, tmp_path: Path) -> None:
    env = {"POLYQUEUE_DATABASE_URL": polyqueue_database_url}
    expected = [f"{m.version:04d}_{m.name}" for m in load_migrations("cli_fresh")]

    first = run_cli("migrate", "--schema", "cli_fresh", "--json", cwd=tmp_path, env=env)
    second = run_cli("migrate", "--schema", "cli_fresh", "--json", cwd=tmp_path, env=env)
    third = run_cli("migrate", "--schema", "cli_fresh", cwd=tmp_path, env=env)

    assert json.loads(first.stdout) == {"schema": "cli_fresh", "applied": expected}
    assert json.loads(second.stdout) == {"schema": "cli_fresh", "applied": []}
    assert third.returncode == 0
    assert "already up to date" in third.stdout


def test_migrate_uses_the_schema_setting(polyqueue_database_url: str, tmp_path: Path) -> None:
    env = {"POLYQUEUE_DATABASE_URL": polyqueue_database_url, "POLYQUEUE_SCHEMA": "cli_env"}

    result = run_cli("migrate", cwd=tmp_path, env=env)

    assert result.returncode == 0, result.stderr
    assert "applied 0001_initial to schema 'cli_env'" in result.stdout


# -- worker APP -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("spec", "named"),
    [
        ("nomodule:app", "no module named 'nomodule'"),
        ("os:path", "'os:path' is a module, not a Polyqueue app"),
        ("missing colon", "APP must look like 'module:attribute', got 'missing colon'"),
        ("tasks:nope", "'nope' not found in 'tasks'"),
        ("tasks:add", "'tasks:add' is a function, not a Polyqueue app"),
    ],
)
def test_worker_with_a_bad_app_exits_2_naming_the_problem(
    project: Path, spec: str, named: str
) -> None:
    result = run_cli("worker", spec, cwd=project)

    assert named in assert_one_line_error(result, 2)


def test_worker_runs_jobs_and_stops_cleanly_on_sigterm(
    polyqueue_database_url: str, project: Path
) -> None:
    env = cli_env({"POLYQUEUE_DATABASE_URL": polyqueue_database_url})
    with (project / "worker.log").open("w") as log:
        worker = subprocess.Popen(
            [str(POLYQUEUE), "worker", "tasks:app", "--concurrency", "2"],
            cwd=project,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        try:
            job = _enqueue_and_wait(polyqueue_database_url)
        finally:
            worker.send_signal(signal.SIGTERM)
            code = worker.wait(timeout=30)

    assert (job.status, job.result) == (JobStatus.SUCCEEDED, 5)
    assert code == 0, (project / "worker.log").read_text()
    assert _worker_statuses(polyqueue_database_url, worker.pid) == ["stopped"]


def _enqueue_and_wait(url: str) -> object:
    async def go() -> object:
        async with Polyqueue(database_url=url, schema_name="polyqueue") as producer:

            @producer.register("cli.add")
            async def add(payload: Numbers) -> int:
                return payload.a + payload.b

            job_id = await producer.enqueue("cli.add", Numbers(a=2, b=3))
            return await producer.wait_for(job_id, timeout=30)

    return asyncio.run(go())


def _worker_statuses(url: str, pid: int) -> list[str]:
    async def go() -> list[str]:
        connection = await asyncpg.connect(url)
        try:
            rows = await connection.fetch(
                "SELECT status FROM polyqueue.workers WHERE pid = $1", pid
            )
        finally:
            await connection.close()
        return [row["status"] for row in rows]

    return asyncio.run(go())


# -- settings and database errors: one line, exit 1 ---------------------------------------------


def test_unknown_backend_lists_the_available_ones(project: Path) -> None:
    result = run_cli("worker", "tasks:app", cwd=project, env={"POLYQUEUE_QUEUE_BACKEND": "bogus"})

    line = assert_one_line_error(result, 1)
    assert "POLYQUEUE_QUEUE_BACKEND" in line
    assert "'bogus'" in line
    available = line.split("available: ", 1)[1].split(", ")
    assert {"none", "postgres"} <= set(available)


def test_invalid_number_names_the_variable(tmp_path: Path) -> None:
    result = run_cli("migrate", cwd=tmp_path, env={"POLYQUEUE_CONCURRENCY": "abc"})

    assert "POLYQUEUE_CONCURRENCY" in assert_one_line_error(result, 1)


@pytest.mark.parametrize("command", [["migrate"], ["worker", "tasks:app"], ["demo", "--jobs", "1"]])
def test_unreachable_database_fails_fast_without_the_password(
    project: Path, command: list[str]
) -> None:
    env = {"POLYQUEUE_DATABASE_URL": UNREACHABLE, "POLYQUEUE_CONNECT_TIMEOUT": "2"}

    result = run_cli(*command, cwd=project, env=env, timeout=30)

    line = assert_one_line_error(result, 1)
    assert "cannot connect to postgresql://u@127.0.0.1:1/x" in line
    assert "s3cret" not in result.stdout + result.stderr


# -- demo -----------------------------------------------------------------------------------------


def test_demo_prints_the_outcome_table(polyqueue_database_url: str, tmp_path: Path) -> None:
    env = {"POLYQUEUE_DATABASE_URL": polyqueue_database_url}

    result = run_cli("demo", "--jobs", "40", "--backend", "none", cwd=tmp_path, env=env)

    assert result.returncode == 0, result.stderr
    assert "Outcomes per handler" in result.stdout
    for handler in ("images.resize", "reports.render", "email.send", "billing.charge"):
        assert handler in result.stdout
    assert "enqueue refused a bad payload: payload for 'images.resize' is invalid" in result.stdout
    assert "40 jobs in" in result.stdout


async def test_demo_outcomes(polyqueue_database_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("POLYQUEUE_DATABASE_URL", polyqueue_database_url)
    output = io.StringIO()

    report = await run_demo(40, 4, "postgres", console=Console(file=output, width=120))
    again = await run_demo(40, 4, "postgres", console=Console(file=io.StringIO(), width=120))

    outcomes = {
        name: (o.jobs, o.succeeded, o.failed, o.retried) for name, o in report.outcomes.items()
    }
    assert outcomes == {
        "images.resize": (16, 16, 0, 0),
        "reports.render": (8, 8, 0, 0),
        "email.send": (10, 10, 0, 4),  # every third message fails once, then succeeds
        "billing.charge": (6, 4, 2, 0),  # declined cards fail at once, without retry
    }
    assert report.outcomes["email.send"].attempts == 14
    assert "EmailResult(" in output.getvalue()
    assert "attempts=2" in output.getvalue()
    assert again.outcomes == report.outcomes  # a rerun starts from a fresh schema
    assert await _count_jobs(polyqueue_database_url) == 40


async def _count_jobs(url: str) -> int:
    connection = await asyncpg.connect(url)
    try:
        count: int = await connection.fetchval(f"SELECT count(*) FROM {DEMO_SCHEMA}.jobs")
    finally:
        await connection.close()
    return count


# -- worker options and brokers -----------------------------------------------------------------


def test_worker_refuses_the_in_process_broker(project: Path) -> None:
    result = run_cli(
        "worker",
        "tasks:app",
        cwd=project,
        env={"POLYQUEUE_QUEUE_BACKEND": "none", "POLYQUEUE_DATABASE_URL": UNREACHABLE},
    )
    line = assert_one_line_error(result, 1)
    assert "POLYQUEUE_QUEUE_BACKEND=none is the in-process broker" in line
    assert "other processes enqueue" in line


def test_worker_serves_prometheus_metrics_on_the_port_given(
    polyqueue_database_url: str, project: Path
) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    env = cli_env({"POLYQUEUE_DATABASE_URL": polyqueue_database_url})
    command = [str(POLYQUEUE), "worker", "tasks:app", "--metrics-port", str(port)]
    with subprocess.Popen(
        command, cwd=project, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True
    ) as worker:
        try:
            assert worker.stderr is not None
            for line in worker.stderr:
                if "started on queues" in line:
                    break
            job = _enqueue_and_wait(polyqueue_database_url)
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as page:
                metrics = page.read().decode()
        finally:
            worker.send_signal(signal.SIGTERM)
            worker.communicate(timeout=30)

    assert job.status is JobStatus.SUCCEEDED  # type: ignore[attr-defined]
    assert 'polyqueue_jobs_total{handler="cli.add",outcome="succeeded",queue="default"} 1.0' in (
        metrics
    )


def test_help_lists_every_command_without_importing_them() -> None:
    probe = (
        "import sys; from click.testing import CliRunner; from polyqueue.cli import cli; "
        "result = CliRunner().invoke(cli, ['--help']); print(result.output); "
        "print(sorted(m for m in ('rich', 'polyqueue.app', 'polyqueue.cli.inspect', "
        "'polyqueue.cli.admin', 'polyqueue.cli.db', 'polyqueue.cli.queue', 'starlette', "
        "'polyqueue.cli.support', "
        "'polyqueue.demo', 'asyncpg') if m in sys.modules))"
    )
    result = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True, timeout=60
    )
    for command in ("admin", "dashboard", "db", "demo", "inspect", "migrate", "queue", "worker"):
        assert f"  {command} " in result.stdout
    assert "See or stop the embedded PostgreSQL." in result.stdout
    assert result.stdout.strip().splitlines()[-1] == "[]"


def test_python_m_runs_the_same_command() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "polyqueue.cli", "--help"],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    assert "  worker " in result.stdout
