"""`polyqueue inspect stats|workers|jobs|limits|workflows|workflow`: read-only views of the
job store."""

from __future__ import annotations

import asyncio
import itertools
import json
from typing import TYPE_CHECKING, Any

import click
from rich.table import Table

from polyqueue.cli.queue import list_queues
from polyqueue.cli.support import (
    JobFilter,
    age,
    console,
    echo_json,
    format_age,
    job_filter_options,
    open_store,
    plain,
    to_duration,
)
from polyqueue.cli.workflows import workflow, workflows
from polyqueue.status import FINISHED

if TYPE_CHECKING:
    from datetime import datetime, timedelta

    from asyncpg import Record

    from polyqueue.job import Job

__all__ = ["inspect"]

JSON_HELP = "Print JSON on stdout instead of a table."
WIDE_HELP = "Never shorten cells to fit the terminal (as when stdout is not a terminal)."


@click.group(short_help="Look at jobs, queues and workers (read-only).")
def inspect() -> None:
    """Read-only views of the job store: queue stats, workers, jobs, limits, workflows."""


inspect.add_command(list_queues, name="limits")  # the same view as `polyqueue queue list`
inspect.add_command(workflows)
inspect.add_command(workflow)


# -- stats --------------------------------------------------------------------------------------


@inspect.command(short_help="Per queue and status: jobs, oldest queued age, throughput.")
@click.option(
    "--window",
    callback=to_duration,
    default="5m",
    show_default=True,
    help="Throughput counts jobs finished in this window (30s, 10m, 2h, 1d).",
)
@click.option("--json", "as_json", is_flag=True, help=JSON_HELP)
@click.option("--wide", is_flag=True, help=WIDE_HELP)
def stats(window: timedelta, as_json: bool, wide: bool) -> None:
    """Per queue and status: how many jobs, the oldest queued job's age, and throughput
    (jobs that finished in the window / the window's length, in jobs per minute)."""
    rows = stats_rows(asyncio.run(_stats(window.total_seconds())), window.total_seconds())
    if as_json:
        echo_json({"window_seconds": window.total_seconds(), "rows": rows})
    elif not rows:
        click.echo("no jobs")
    else:
        console(wide=wide).print(_stats_table(rows, window))


async def _stats(window_seconds: float) -> list[Record]:
    async with open_store() as store:
        return await store.job_stats(window_seconds)


def stats_rows(rows: list[Record], window_seconds: float) -> list[dict[str, Any]]:
    """One entry per queue and status; throughput only for the finished statuses."""
    entries = []
    for row in rows:
        finished = row["status"] in FINISHED
        oldest = row["oldest_age"]
        entries.append(
            {
                "queue": row["queue"],
                "status": row["status"],
                "jobs": row["jobs"],
                "estimated": row["estimated"],
                "oldest_queued_seconds": None if oldest is None else float(oldest),
                "finished_in_window": row["recent"] if finished else None,
                "per_minute": round(row["recent"] * 60 / window_seconds, 3) if finished else None,
            }
        )
    return entries


def _stats_table(rows: list[dict[str, Any]], window: timedelta) -> Table:
    span = format_age(window.total_seconds())
    table = Table(title=f"Jobs per queue and status (throughput over the last {span})")
    table.add_column("Queue")
    table.add_column("Status")
    for header in ("Jobs", "Oldest queued", f"Done in {span}", "Jobs/min"):
        table.add_column(header, justify="right")
    for row, following in itertools.zip_longest(rows, rows[1:]):
        per_minute = None if row["per_minute"] is None else f"{row['per_minute']:g}"
        table.add_row(
            plain(row["queue"]),
            plain(row["status"]),
            plain(f"~{row['jobs']}" if row["estimated"] else row["jobs"]),
            plain(format_age(row["oldest_queued_seconds"])),
            plain(row["finished_in_window"]),
            plain(per_minute),
            end_section=following is None or following["queue"] != row["queue"],
        )
    return table


# -- workers ------------------------------------------------------------------------------------


@inspect.command(short_help="Registered workers: queues, current jobs, heartbeat age, status.")
@click.option("--limit", type=click.IntRange(min=1), default=100, show_default=True)
@click.option("--json", "as_json", is_flag=True, help=JSON_HELP)
@click.option("--wide", is_flag=True, help=WIDE_HELP)
def workers(limit: int, as_json: bool, wide: bool) -> None:
    """Registered workers, newest first: id, host, pid, queues, current jobs, heartbeat age."""
    rows = [dict(row) for row in asyncio.run(_workers(limit))]
    if as_json:
        echo_json(rows)
    elif not rows:
        click.echo("no workers")
    else:
        console(wide=wide).print(_workers_table(rows))


async def _workers(limit: int) -> list[Record]:
    async with open_store() as store:
        return await store.worker_list(limit)


def _workers_table(rows: list[dict[str, Any]]) -> Table:
    table = Table(title="Workers")
    for column in ("ID", "Host", "PID", "Queues", "Jobs", "Heartbeat", "Status"):
        table.add_column(column, justify="right" if column in {"PID", "Jobs"} else "left")
    for row in rows:
        table.add_row(
            plain(row["id"]),
            plain(row["hostname"]),
            plain(row["pid"]),
            plain(", ".join(row["queues"])),
            plain(f"{row['current_jobs']}/{row['concurrency']}"),
            plain(f"{format_age(row['heartbeat_age'])} ago"),
            plain(row["status"]),
        )
    return table


# -- jobs ---------------------------------------------------------------------------------------


@inspect.command(short_help="Find jobs by status, queue, name, age; or show one with --id.")
@click.option("--id", "job_id", type=int, metavar="ID", help="Show this one job in full.")
@job_filter_options
@click.option("--limit", type=click.IntRange(min=1), default=50, show_default=True)
@click.option("--json", "as_json", is_flag=True, help=JSON_HELP)
@click.option("--wide", is_flag=True, help=WIDE_HELP)
def jobs(job_id: int | None, limit: int, as_json: bool, wide: bool, **filters: Any) -> None:
    """Jobs matching every filter given, newest first; or one job in full with --id
    (payload, result, attempts, the last error and its traceback).

    With --json, each job has the fields `--id --json` shows, in the same shapes (the last
    error as `error: {type, message, traceback}` or null), less the payload, result,
    headers and traceback."""
    job_filter = JobFilter(**filters)
    if job_id is not None:
        if not job_filter.empty:
            raise click.UsageError("--id shows one job: leave out the filters")
        _show_job(asyncio.run(_job(job_id)), as_json, wide)
        return
    rows = [listed_job(row) for row in asyncio.run(_find(job_filter, limit))]
    if as_json:
        echo_json(rows)
    elif not rows:
        click.echo("no matching jobs")
    else:
        console(wide=wide).print(_jobs_table(rows))


def listed_job(row: Record) -> dict[str, Any]:
    """A `job_find` row in the shape of `Job` (the last error nested, as `--id` has it)."""
    data = dict(row)
    error_type, message = data.pop("error_type"), data.pop("error_message")
    data["error"] = (
        None
        if error_type is None
        else {"type": error_type, "message": message or "", "traceback": None}
    )
    return data


async def _job(job_id: int) -> Job:
    async with open_store() as store:
        return await store.job_get(job_id)


async def _find(job_filter: JobFilter, limit: int) -> list[Record]:
    async with open_store() as store:
        return await store.job_find(
            statuses=job_filter.statuses,
            queue=job_filter.queue,
            name=job_filter.name,
            since=job_filter.since,
            limit=limit,
        )


def _jobs_table(rows: list[dict[str, Any]]) -> Table:
    table = Table(title="Jobs (newest first)")
    for column in ("ID", "Name", "Queue", "Status", "Attempt", "Created", "Last error"):
        table.add_column(column, justify="right" if column in {"ID", "Attempt"} else "left")
    for row in rows:
        error = f"{row['error']['type']}: {row['error']['message']}" if row["error"] else None
        table.add_row(
            plain(row["id"]),
            plain(row["name"]),
            plain(row["queue"]),
            plain(row["status"]),
            plain(f"{row['attempt']}/{row['max_attempts']}"),
            plain(f"{format_age(age(row['created_at']))} ago"),
            plain(error),
        )
    return table


def _show_job(job: Job, as_json: bool, wide: bool) -> None:
    if as_json:
        echo_json(job.model_dump())
        return
    out = console(wide=wide)
    out.print(_job_table(job))
    out.print("payload:", json.dumps(job.payload, indent=2), sep="\n", markup=False)
    if job.result is not None:
        out.print("result:", json.dumps(job.result, indent=2), sep="\n", markup=False)
    if job.error is not None:
        out.print(f"last error: {job.error.type}: {job.error.message}", markup=False)
        if job.error.traceback:
            out.print(job.error.traceback.rstrip(), markup=False, soft_wrap=True)


def _job_table(job: Job) -> Table:
    table = Table(title=f"Job {job.id}", show_header=False)
    table.add_column(style="bold")
    table.add_column()
    fields: list[tuple[str, object]] = [
        ("name", job.name),
        ("queue", job.queue),
        ("status", job.status.value),
        ("attempt", f"{job.attempt} (max {job.max_attempts}, reclaims {job.reclaims})"),
        ("priority", job.priority),
        ("worker", job.worker_id),
        ("progress", _progress(job)),
        ("created", _when(job.created_at)),
        ("run at", _when(job.run_at)),
        ("started", _when(job.started_at)),
        ("finished", _when(job.finished_at)),
    ]
    for label, value in fields:
        table.add_row(label, plain(value))
    return table


def _when(moment: datetime | None) -> str | None:
    if moment is None:
        return None
    return f"{moment.isoformat(timespec='seconds')} ({format_age(age(moment))} ago)"


def _progress(job: Job) -> str | None:
    if job.progress is None:
        return None
    return f"{job.progress:.0%} {job.progress_message or ''}".rstrip()
