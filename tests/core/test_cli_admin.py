"""`polyqueue inspect` and `polyqueue admin`, run as the console script on a real database."""

from __future__ import annotations

import asyncio
import json
import os
import re
import socket
import subprocess
import sys
import uuid
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

import pytest
from pydantic import BaseModel

from polyqueue import JobStatus, Polyqueue
from polyqueue.cli.admin import ACTION_SOURCES
from polyqueue.sql import load_queries

if TYPE_CHECKING:
    from collections.abc import AsyncIterator
    from pathlib import Path

POLYQUEUE = os.path.join(os.path.dirname(sys.executable), "polyqueue")  # noqa: PTH118, PTH120
UNREACHABLE = "postgresql://u:s3cret@127.0.0.1:1/x"


class Item(BaseModel):
    n: int


@pytest.fixture
def schema() -> str:
    """A schema of its own for each test: its jobs and workers are the only ones in it."""
    return f"cli_{uuid.uuid4().hex[:10]}"


@pytest.fixture
def env(polyqueue_database_url: str, schema: str) -> dict[str, str]:
    return {"POLYQUEUE_DATABASE_URL": polyqueue_database_url, "POLYQUEUE_SCHEMA": schema}


def run_cli(
    *args: str, env: dict[str, str], cwd: Path | None = None
) -> subprocess.CompletedProcess[str]:
    """The console script with no POLYQUEUE_* variables but those in `env`."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith("POLYQUEUE_")}
    return subprocess.run(
        [POLYQUEUE, *args],
        cwd=cwd,
        env={**clean, "COLUMNS": "160", **env},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def ok(*args: str, env: dict[str, str]) -> str:
    """Stdout of a command that must succeed."""
    result = run_cli(*args, env=env)
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr
    return result.stdout


def as_json(*args: str, env: dict[str, str]) -> object:
    return json.loads(ok(*args, "--json", env=env))


def assert_one_line_error(result: subprocess.CompletedProcess[str], code: int) -> str:
    assert result.returncode == code, result.stderr
    assert "Traceback" not in result.stderr + result.stdout
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: ")
    return lines[0]


@asynccontextmanager
async def started_app(env: dict[str, str]) -> AsyncIterator[Polyqueue]:
    """An app on the test's schema with handlers on two queues; workers skip maintenance."""
    app = Polyqueue(
        database_url=env["POLYQUEUE_DATABASE_URL"],
        schema_name=env["POLYQUEUE_SCHEMA"],
        maintenance=False,
    )

    @app.register("t.echo", queue="mail")
    async def echo(payload: Item) -> int:
        return payload.n

    @app.register("t.report", queue="reports")
    async def report(payload: Item) -> int:
        return payload.n

    @app.register("t.boom", queue="mail", max_attempts=1)
    async def boom(payload: Item) -> int:
        raise ValueError(f"boom {payload.n}")

    async with app:
        yield app


async def statuses(app: Polyqueue, job_ids: list[int]) -> list[JobStatus]:
    return [(await app.get_job(job_id)).status for job_id in job_ids]


async def run_worker_until_finished(app: Polyqueue, job_ids: list[int]) -> None:
    worker = app.worker(concurrency=2)
    task = asyncio.create_task(worker.run())
    try:
        for job_id in job_ids:
            await app.wait_for(job_id, timeout=30)
    finally:
        worker.stop()
        await task


# -- inspect jobs ---------------------------------------------------------------------------------


async def test_inspect_jobs_filters_by_status_queue_name_and_since(env: dict[str, str]) -> None:
    async with started_app(env) as app:
        mail = await app.enqueue_many("t.echo", [Item(n=1), Item(n=2)])
        report = await app.enqueue("t.report", Item(n=3))
        await app.cancel(mail[0])

    everything = as_json("inspect", "jobs", env=env)
    by_queue = as_json("inspect", "jobs", "--queue", "mail", env=env)
    by_name = as_json("inspect", "jobs", "--name", "t.report", env=env)
    by_status = as_json("inspect", "jobs", "--status", "cancelled", "--status", "failed", env=env)
    recent = as_json("inspect", "jobs", "--since", "10m", "--queue", "reports", env=env)
    future = (datetime.now(UTC) + timedelta(hours=1)).isoformat()
    none_yet = as_json("inspect", "jobs", "--since", future, env=env)
    past = as_json("inspect", "jobs", "--since", "2000-01-01T00:00:00", "--limit", "2", env=env)

    assert [(j["id"], j["status"]) for j in everything] == [
        (report, "queued"),
        (mail[1], "queued"),
        (mail[0], "cancelled"),
    ]
    assert [j["id"] for j in by_queue] == [mail[1], mail[0]]
    assert [j["id"] for j in by_name] == [report]
    assert [j["id"] for j in by_status] == [mail[0]]
    assert [j["id"] for j in recent] == [report]
    assert none_yet == []
    assert [j["id"] for j in past] == [report, mail[1]]
    assert datetime.fromisoformat(everything[0]["created_at"]) <= datetime.now(UTC)


async def test_inspect_workflows_and_one_workflow(env: dict[str, str]) -> None:
    async with started_app(env) as app:
        wf = app.workflow("nightly")
        first = wf.add("t.echo", Item(n=1))
        second = wf.add("t.report", Item(n=2), after=[first])
        third = wf.add("t.report", Item(n=3), after=[(second, "run")])
        done = await wf.enqueue()

    listed = as_json("inspect", "workflows", env=env)
    shown = as_json("inspect", "workflow", str(done.id), env=env)
    table = ok("inspect", "workflow", str(done.id), env=env)
    listing = ok("inspect", "workflows", env=env)
    missing = run_cli("inspect", "workflow", "999999", env=env)

    assert listed == [
        {
            "id": done.id,
            "name": "nightly",
            "on_failure": "cancel",
            "nodes": 3,
            "created_at": listed[0]["created_at"],  # type: ignore[index]
            "counts": {"queued": 1, "waiting": 2},
            "status": "running",
        }
    ]
    assert shown["status"] == "running"  # type: ignore[index]
    nodes = shown["nodes"]  # type: ignore[index]
    assert [(n["job_id"], n["status"], n["depends_on"], n["on_failure"]) for n in nodes] == [
        (done[first], "queued", [], []),
        (done[second], "waiting", [done[first]], ["cancel"]),
        (done[third], "waiting", [done[second]], ["run"]),
    ]
    assert re.search(rf"{done[third]}\W+t\.report\W+waiting\W+0/3\W+{done[second]} \(run\)", table)
    assert re.search(rf"{done.id}\W+nightly\W+running\W+3\W+2 waiting, 1 queued", listing)
    assert "no workflow with id 999999" in assert_one_line_error(missing, 1)


async def test_inspect_jobs_table_shows_the_rows(env: dict[str, str]) -> None:
    async with started_app(env) as app:
        job_id = await app.enqueue("t.report", Item(n=3))

    table = ok("inspect", "jobs", env=env)
    empty = ok("inspect", "jobs", "--queue", "nowhere", env=env)

    row = next(line for line in table.splitlines() if f" {job_id} " in line)
    assert re.search(rf"{job_id}\W+t\.report\W+reports\W+queued\W+0/3", row), table
    assert empty.strip() == "no matching jobs"


async def test_inspect_job_by_id_shows_payload_and_traceback(env: dict[str, str]) -> None:
    async with started_app(env) as app:
        job_id = await app.enqueue("t.boom", Item(n=7))
        await run_worker_until_finished(app, [job_id])

    shown = ok("inspect", "jobs", "--id", str(job_id), env=env)
    data = as_json("inspect", "jobs", "--id", str(job_id), env=env)

    assert '"n": 7' in shown
    assert "last error: ValueError: boom 7" in shown
    assert "Traceback (most recent call last)" in shown
    assert 'raise ValueError(f"boom {payload.n}")' in shown
    assert re.search(r"status\W+failed", shown)
    assert data["payload"] == {"n": 7}
    assert (data["status"], data["attempt"], data["max_attempts"]) == ("failed", 1, 1)
    assert data["error"]["type"] == "ValueError"
    assert data["error"]["message"] == "boom 7"
    assert "ValueError: boom 7" in data["error"]["traceback"]


# -- inspect stats ------------------------------------------------------------------------------


async def test_inspect_stats_counts_per_queue_and_throughput(env: dict[str, str]) -> None:
    async with started_app(env) as app:
        mail = await app.enqueue_many("t.echo", [Item(n=n) for n in range(4)])
        await app.enqueue_many("t.report", [Item(n=1), Item(n=2)])
        await app.control_many("cancel", mail[:2])
        await app.fail(mail[2], "operator says no")

    stats = as_json("inspect", "stats", "--window", "10m", env=env)
    table = ok("inspect", "stats", env=env)

    assert stats["window_seconds"] == 600
    rows = {(r["queue"], r["status"]): r for r in stats["rows"]}
    assert {key: r["jobs"] for key, r in rows.items()} == {
        ("mail", "cancelled"): 2,
        ("mail", "failed"): 1,
        ("mail", "queued"): 1,
        ("reports", "queued"): 2,
    }
    cancelled, failed = rows["mail", "cancelled"], rows["mail", "failed"]
    assert (cancelled["finished_in_window"], cancelled["per_minute"]) == (2, 0.2)
    assert (failed["finished_in_window"], failed["per_minute"]) == (1, 0.1)
    queued = rows["reports", "queued"]
    assert (queued["finished_in_window"], queued["per_minute"]) == (None, None)
    assert 0 <= queued["oldest_queued_seconds"] < 600
    assert failed["oldest_queued_seconds"] is None
    assert "throughput over the last 5m" in table
    assert re.search(r"mail\W+cancelled\W+2\W+-\W+2\W+0\.4\W", table), table
    assert re.search(r"reports\W+queued\W+2\W+\d+s\W+-\W+-\W", table), table


async def test_inspect_stats_estimates_succeeded_jobs_in_a_big_table(env: dict[str, str]) -> None:
    """Above a million rows (as the planner counts them) succeeded jobs are estimated from a
    sample, marked so; every other count, and the finishes in the window, stay exact."""
    jobs = f'"{env["POLYQUEUE_SCHEMA"]}".jobs'
    async with started_app(env) as app:
        done = await app.enqueue_many("t.echo", [Item(n=n) for n in range(3)])
        await app.enqueue("t.echo", Item(n=9))
        pool = app.store.pool
        await pool.execute(
            f"UPDATE {jobs} SET status = 'succeeded', finished_at = now()"
            " WHERE id = ANY($1::bigint[])",
            done,
        )
        small = as_json("inspect", "stats", env=env)
        await pool.execute(f"ALTER TABLE {jobs} SET (autovacuum_enabled = false)")
        try:
            await pool.execute(
                "UPDATE pg_class SET reltuples = 2000000 WHERE oid = $1::regclass", jobs
            )
            big = as_json("inspect", "stats", env=env)
            table = ok("inspect", "stats", env=env)
        finally:
            await pool.execute(f"ALTER TABLE {jobs} RESET (autovacuum_enabled)")

    exact = {(r["queue"], r["status"]): r for r in small["rows"]}
    assert exact["mail", "succeeded"]["jobs"] == 3
    assert not exact["mail", "succeeded"]["estimated"]
    rows = {(r["queue"], r["status"]): r for r in big["rows"]}
    succeeded = rows["mail", "succeeded"]
    assert succeeded["estimated"]
    assert succeeded["finished_in_window"] == 3  # exact
    assert succeeded["jobs"] >= 3  # a 0.1% sample, scaled: never below the exact finishes
    assert (rows["mail", "queued"]["jobs"], rows["mail", "queued"]["estimated"]) == (1, False)
    assert re.search(r"mail\W+succeeded\W+~\d+", table), table


def test_inspect_stats_on_an_empty_schema(env: dict[str, str]) -> None:
    assert ok("migrate", env=env)
    assert as_json("inspect", "stats", env=env) == {"window_seconds": 300, "rows": []}
    assert ok("inspect", "stats", env=env).strip() == "no jobs"


# -- inspect workers ----------------------------------------------------------------------------


async def test_inspect_workers_shows_a_running_worker_and_its_current_job(
    env: dict[str, str],
) -> None:
    started, release = asyncio.Event(), asyncio.Event()
    async with started_app(env) as app:

        @app.register("t.wait", queue="slow")
        async def wait(payload: Item) -> int:
            started.set()
            await release.wait()
            return payload.n

        worker = app.worker(queues=["slow"], concurrency=2)
        task = asyncio.create_task(worker.run())
        job_id = await app.enqueue("t.wait", Item(n=1))
        await asyncio.wait_for(started.wait(), timeout=30)
        busy = json.loads(await asyncio.to_thread(ok, "inspect", "workers", "--json", env=env))
        table = await asyncio.to_thread(ok, "inspect", "workers", env=env)
        release.set()
        await app.wait_for(job_id, timeout=30)
        worker.stop()
        await task

    stopped = as_json("inspect", "workers", env=env)

    (row,) = busy
    assert row["id"] == worker.id
    assert (row["hostname"], row["pid"]) == (socket.gethostname(), os.getpid())
    assert (row["queues"], row["current_jobs"], row["concurrency"]) == (["slow"], 1, 2)
    assert (row["status"], row["stopped_at"]) == ("running", None)
    assert 0 <= row["heartbeat_age"] < 60
    assert re.search(rf"{re.escape(worker.id)}\W.*\W{os.getpid()}\W+slow\W+1/2\W.*running", table)
    assert [(w["id"], w["status"], w["current_jobs"]) for w in stopped] == [
        (worker.id, "stopped", 0)
    ]


def test_inspect_workers_when_there_are_none(env: dict[str, str]) -> None:
    assert ok("migrate", env=env)
    assert as_json("inspect", "workers", env=env) == []
    assert ok("inspect", "workers", env=env).strip() == "no workers"


# -- admin by id --------------------------------------------------------------------------------


async def test_admin_cancel_fail_requeue_by_id(env: dict[str, str]) -> None:
    async with started_app(env) as app:
        a, b, c = await app.enqueue_many("t.echo", [Item(n=1), Item(n=2), Item(n=3)])

        cancelled = as_json("admin", "cancel", "--id", str(a), "--id", str(b), env=env)
        again = as_json("admin", "cancel", "--id", str(a), env=env)
        failed = ok("admin", "fail", "--id", str(c), "--reason", "bad input", env=env)
        after_fail = await app.get_job(c)
        requeued = as_json("admin", "requeue", "--id", str(a), "--id", str(c), env=env)

        assert await statuses(app, [a, b, c]) == [
            JobStatus.QUEUED,
            JobStatus.CANCELLED,
            JobStatus.QUEUED,
        ]

    assert cancelled == {
        "action": "cancel",
        "dry_run": False,
        "matched": 2,
        "changed": 2,
        "ids": [a, b],
        "limit_reached": False,
        "skipped": [],
    }
    assert (again["matched"], again["changed"], again["ids"]) == (1, 0, [])
    assert failed.splitlines() == ["matched 1, failed 1", f"failed: {c}"]
    assert after_fail.status is JobStatus.FAILED
    assert after_fail.error is not None
    assert (after_fail.error.type, after_fail.error.message) == ("FailedByOperator", "bad input")
    assert (requeued["matched"], requeued["changed"], requeued["ids"]) == (2, 2, [a, c])


async def test_admin_fail_reason_shows_in_inspect(env: dict[str, str]) -> None:
    async with started_app(env) as app:
        job_id = await app.enqueue("t.echo", Item(n=1))

    reason = "[red]poison[/red] :boom: payload"  # neither rich markup nor an emoji code
    ok("admin", "fail", "--id", str(job_id), "--reason", reason, env=env)
    shown = ok("inspect", "jobs", "--id", str(job_id), env=env)

    assert f"last error: FailedByOperator: {reason}" in shown


# -- admin by filter ----------------------------------------------------------------------------


async def test_admin_by_filter_counts_matched_and_changed(env: dict[str, str]) -> None:
    async with started_app(env) as app:
        mail = await app.enqueue_many("t.echo", [Item(n=n) for n in range(3)])
        report = await app.enqueue("t.report", Item(n=9))
        await app.cancel(mail[0])

        result = as_json("admin", "cancel", "--queue", "mail", env=env)
        text = ok("admin", "requeue", "--status", "cancelled", "--name", "t.echo", env=env)

        assert await statuses(app, [*mail, report]) == [
            JobStatus.QUEUED,
            JobStatus.QUEUED,
            JobStatus.QUEUED,
            JobStatus.QUEUED,
        ]

    assert (result["matched"], result["changed"]) == (3, 2)  # mail[0] was already cancelled
    assert result["ids"] == [mail[1], mail[2]]
    assert text.splitlines()[0] == "matched 3, requeued 3"


async def test_admin_by_filter_reports_the_limit(env: dict[str, str]) -> None:
    async with started_app(env) as app:
        mail = await app.enqueue_many("t.echo", [Item(n=n) for n in range(3)])

        limited = as_json("admin", "fail", "--queue", "mail", "--limit", "2", env=env)
        text = ok("admin", "cancel", "--queue", "mail", "--limit", "2", env=env)
        rest = as_json("admin", "cancel", "--status", "queued", "--limit", "2", env=env)

        assert await statuses(app, mail) == [
            JobStatus.CANCELLED,
            JobStatus.FAILED,
            JobStatus.FAILED,
        ]

    assert limited["limit_reached"] is True
    assert (limited["matched"], limited["changed"], limited["ids"]) == (2, 2, mail[1:])
    assert text.splitlines() == [
        "matched 2, cancelled 0",  # the newest two, failed just before
        f"not cancelled: {mail[2]} (failed already: a finished job is not cancelled)",
        f"not cancelled: {mail[1]} (failed already: a finished job is not cancelled)",
        "limit reached: only the newest 2 matching jobs were selected; run again or raise --limit",
    ]
    assert (rest["matched"], rest["changed"], rest["ids"]) == (1, 1, [mail[0]])
    assert rest["limit_reached"] is False


async def test_admin_dry_run_changes_nothing_and_predicts_the_change(env: dict[str, str]) -> None:
    async with started_app(env) as app:
        mail = await app.enqueue_many("t.echo", [Item(n=n) for n in range(3)])
        await app.cancel(mail[0])
        await app.fail(mail[1])

        dry = as_json("admin", "requeue", "--queue", "mail", "--dry-run", env=env)
        table = ok("admin", "requeue", "--queue", "mail", "--dry-run", env=env)
        by_id = as_json("admin", "cancel", "--id", str(mail[2]), "--dry-run", env=env)
        unchanged = await statuses(app, mail)
        real = as_json("admin", "requeue", "--queue", "mail", env=env)

    assert unchanged == [JobStatus.CANCELLED, JobStatus.FAILED, JobStatus.QUEUED]
    assert dry == {
        "action": "requeue",
        "dry_run": True,
        "matched": 3,
        "changed": 0,
        "ids": [mail[2], mail[1], mail[0]],
        "limit_reached": False,
        "would_change": 2,
        "jobs": [
            {"id": mail[2], "status": "queued"},
            {"id": mail[1], "status": "failed"},
            {"id": mail[0], "status": "cancelled"},
        ],
    }
    assert (by_id["matched"], by_id["would_change"], by_id["changed"]) == (1, 1, 0)
    assert real["changed"] == dry["would_change"]
    assert re.search(rf"{mail[2]}\W+queued\W+skip: queued: it is waiting to run already", table)
    assert re.search(rf"{mail[1]}\W+failed\W+requeue", table), table
    assert "dry run: matched 3, would requeue 2; nothing changed" in table


@pytest.mark.parametrize(
    ("action", "block"),
    [("requeue", "job_requeue_many"), ("cancel", "job_cancel_many"), ("fail", "job_fail_many")],
)
def test_dry_run_prediction_is_the_declared_transition(action: str, block: str) -> None:
    """`--dry-run` predicts with ACTION_SOURCES: it must restate what each SQL block changes."""
    assert ACTION_SOURCES[action] == load_queries("queries.sql", "polyqueue")[block].sources


# -- bad input ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "command",
    [
        ["inspect", "jobs", "--id", "999999"],
        ["admin", "requeue", "--id", "999999"],
        ["admin", "fail", "--id", "999999", "--dry-run"],
    ],
)
def test_unknown_job_id_exits_1(env: dict[str, str], command: list[str]) -> None:
    assert ok("migrate", env=env)

    result = run_cli(*command, env=env)

    assert assert_one_line_error(result, 1) == "error: no job with id 999999"


async def test_admin_with_one_unknown_id_changes_nothing(env: dict[str, str]) -> None:
    async with started_app(env) as app:
        job_id = await app.enqueue("t.echo", Item(n=1))

        result = run_cli("admin", "cancel", "--id", str(job_id), "--id", "999999", env=env)

        assert await statuses(app, [job_id]) == [JobStatus.QUEUED]
    assert assert_one_line_error(result, 1) == "error: no job with id 999999"


@pytest.mark.parametrize(
    ("command", "message"),
    [
        (
            ["inspect", "jobs", "--status", "done"],
            "'done' is not one of 'waiting', 'scheduled', 'queued'",
        ),
        (["admin", "cancel", "--status", "stuck"], "'stuck' is not one of 'waiting'"),
        (["admin", "fail"], "give --id or at least one filter"),
        (["admin", "requeue", "--dry-run"], "give --id or at least one filter"),
        (["admin", "cancel", "--id", "1", "--queue", "q"], "give --id or filters, not both"),
        (["inspect", "jobs", "--id", "1", "--status", "failed"], "--id shows one job"),
        (["inspect", "jobs", "--since", "yesterday"], "expected a duration like 30s, 10m"),
        (["inspect", "jobs", "--since", "2025-13-01"], "or an ISO timestamp like"),
        (["inspect", "stats", "--window", "0s"], "expected a duration like 30s"),
        (["inspect", "jobs", "--id", "x"], "'x' is not a valid integer"),
    ],
)
def test_bad_usage_exits_2_with_one_line(command: list[str], message: str) -> None:
    result = run_cli(*command, env={"POLYQUEUE_DATABASE_URL": UNREACHABLE})

    line = assert_one_line_error(result, 2)
    assert message in line
    assert f"(see 'polyqueue {' '.join(command[:2])} --help')" in line


@pytest.mark.parametrize(
    "command",
    [
        ["inspect", "stats"],
        ["inspect", "workers"],
        ["inspect", "jobs"],
        ["inspect", "jobs", "--id", "1"],
        ["admin", "cancel", "--id", "1"],
        ["admin", "requeue", "--status", "failed", "--dry-run"],
    ],
)
def test_unreachable_database_exits_1_without_the_password(command: list[str]) -> None:
    env = {"POLYQUEUE_DATABASE_URL": UNREACHABLE, "POLYQUEUE_CONNECT_TIMEOUT": "2"}

    result = run_cli(*command, env=env)

    line = assert_one_line_error(result, 1)
    assert "cannot connect to postgresql://u@127.0.0.1:1/x" in line
    assert "s3cret" not in result.stdout + result.stderr


def test_help_says_what_since_accepts() -> None:
    result = run_cli("admin", "requeue", "--help", env={})

    assert result.returncode == 0
    assert "10m, 2h or 1d ago, or an ISO 8601" in " ".join(result.stdout.split())


# -- one job shape, whole cells, why a job was left alone ------------------------------------------


async def test_a_listed_job_has_the_shape_of_a_shown_job(env: dict[str, str]) -> None:
    async with started_app(env) as app:
        job_id = await app.enqueue("t.boom", Item(n=5))
        await run_worker_until_finished(app, [job_id])

    (listed,) = as_json("inspect", "jobs", "--name", "t.boom", env=env)  # type: ignore[misc]
    shown = as_json("inspect", "jobs", "--id", str(job_id), env=env)

    assert isinstance(shown, dict)
    assert set(listed) <= set(shown)
    for key in listed:
        if key != "error":
            assert listed[key] == shown[key], key
    assert listed["error"] == {**shown["error"], "traceback": None}
    assert listed["error"]["type"] == "ValueError"
    assert "error_type" not in listed
    assert shown["created_at"].endswith("+00:00")


async def test_piped_tables_never_shorten_ids_or_names(env: dict[str, str]) -> None:
    name = "t." + "very_long_handler_name_" * 6
    async with started_app(env) as app:

        @app.register(name, queue="reports")
        async def long(payload: Item) -> None:
            return None

        await app.enqueue(name, Item(n=1))

    narrow = {**env, "COLUMNS": "40"}
    for args in (("inspect", "jobs"), ("inspect", "jobs", "--wide")):
        table = ok(*args, env=narrow)
        assert name in table
        assert "…" not in table


async def test_admin_cancel_says_why_a_matched_job_was_not_cancelled(
    env: dict[str, str],
) -> None:
    async with started_app(env) as app:
        done = await app.enqueue("t.echo", Item(n=1))
        await run_worker_until_finished(app, [done])
        waiting = await app.enqueue("t.echo", Item(n=2))
        gone = await app.enqueue("t.echo", Item(n=3))
        await app.cancel(gone)

    args = ("admin", "cancel", "--id", str(done), "--id", str(waiting), "--id", str(gone))
    text = ok(*args, env=env)
    assert "matched 3, cancelled 1" in text
    assert f"not cancelled: {done} (succeeded already: a finished job is not cancelled)" in text
    assert f"not cancelled: {gone} (cancelled already)" in text

    report = as_json(*args, env=env)
    assert isinstance(report, dict)
    assert report["changed"] == 0
    assert {entry["id"]: entry["status"] for entry in report["skipped"]} == {
        done: "succeeded",
        waiting: "cancelled",
        gone: "cancelled",
    }
