"""`polyqueue admin requeue|fail|cancel`: change jobs by id or by filter, with `--dry-run`."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import click
from rich.table import Table

from polyqueue.cli.support import JobFilter, console, echo_json, job_filter_options, open_app, plain
from polyqueue.exceptions import JobNotFoundError

if TYPE_CHECKING:
    from collections.abc import Callable

    from polyqueue.app import Polyqueue

__all__ = ["ACTION_SOURCES", "admin"]

ACTION_SOURCES = {
    "requeue": frozenset({"failed", "cancelled", "running"}),
    "cancel": frozenset({"waiting", "scheduled", "queued", "running"}),
    "fail": frozenset({"waiting", "scheduled", "queued", "running"}),
}
"""The statuses each action changes (as its SQL block does); others are left as they are."""

DONE = {"requeue": "requeued", "cancel": "cancelled", "fail": "failed"}
SHOWN_IDS = 20


def skip_reason(action: str, status: str) -> str:
    """Why `action` leaves a job in `status` as it is."""
    if status in ACTION_SOURCES[action]:  # it could, when selected: someone changed it since
        return f"was {status} when selected, then changed before the {action}"
    if action == "requeue":
        if status == "succeeded":
            return "succeeded: a succeeded job is not run again"
        return f"{status}: it is waiting to run already"
    if status == DONE[action]:
        return f"{DONE[action]} already"
    return f"{status} already: a finished job is not {DONE[action]}"


@click.group(short_help="Requeue, fail or cancel jobs by id or by filter.")
def admin() -> None:
    """Change jobs: requeue, fail or cancel them by --id or by filter (try --dry-run first)."""


@dataclass
class Selection:
    """The jobs an admin command matched: `(id, status)` in order, and whether the limit hit."""

    jobs: list[tuple[int, str]]
    limit_reached: bool = False
    changed: list[int] = field(default_factory=list)

    @property
    def ids(self) -> list[int]:
        """The matched ids."""
        return [job_id for job_id, _ in self.jobs]

    def skipped(self, action: str) -> list[dict[str, Any]]:
        """The matched jobs the action did not change, each with the reason."""
        changed = set(self.changed)
        return [
            {"id": job_id, "status": status, "reason": skip_reason(action, status)}
            for job_id, status in self.jobs
            if job_id not in changed
        ]


def admin_options(command: Callable[..., Any]) -> Callable[..., Any]:
    """The options every admin command takes: ids or filters, limit, dry run, JSON."""
    for option in (
        click.option("--json", "as_json", is_flag=True, help="Print the counts as JSON."),
        click.option("--dry-run", is_flag=True, help="Show the matching jobs and change nothing."),
        click.option(
            "--limit",
            type=click.IntRange(min=1),
            default=1000,
            show_default=True,
            help="With filters: act on at most this many matching jobs (newest first).",
        ),
        job_filter_options,
        click.option(
            "--id", "job_ids", type=int, multiple=True, metavar="ID", help="A job (repeatable)."
        ),
    ):
        command = option(command)
    return command


@admin.command(short_help="Queue failed, cancelled (or running) jobs again, fresh attempts.")
@admin_options
def requeue(**options: Any) -> None:
    """Queue failed, cancelled or running jobs again with a fresh budget of attempts."""
    _run("requeue", "", **options)


@admin.command(short_help="Fail waiting, scheduled, queued or running jobs now.")
@admin_options
@click.option("--reason", default="failed by an operator", show_default=True)
def fail(reason: str, **options: Any) -> None:
    """Fail waiting, scheduled, queued or running jobs now, recording --reason as their error."""
    _run("fail", reason, **options)


@admin.command(short_help="Cancel waiting, scheduled, queued or running jobs.")
@admin_options
def cancel(**options: Any) -> None:
    """Cancel waiting, scheduled, queued or running jobs (running ones are told to stop)."""
    _run("cancel", "", **options)


def _run(
    action: str,
    reason: str,
    *,
    job_ids: tuple[int, ...],
    limit: int,
    dry_run: bool,
    as_json: bool,
    **filters: Any,
) -> None:
    job_filter = JobFilter(**filters)
    if job_ids and not job_filter.empty:
        raise click.UsageError("give --id or filters, not both")
    if not job_ids and job_filter.empty:
        raise click.UsageError(
            "give --id or at least one filter (--status, --queue, --name, --since)"
        )
    selection = asyncio.run(
        _apply(
            action,
            reason=reason,
            job_ids=job_ids,
            job_filter=job_filter,
            limit=limit,
            dry_run=dry_run,
        )
    )
    if as_json:
        echo_json(_report(action, selection, dry_run))
    elif dry_run:
        _print_dry_run(action, selection, limit)
    else:
        _print_changes(action, selection, limit)


async def _apply(
    action: str,
    *,
    reason: str,
    job_ids: tuple[int, ...],
    job_filter: JobFilter,
    limit: int,
    dry_run: bool,
) -> Selection:
    async with open_app() as app:
        if job_ids:
            selection = await _by_id(app, job_ids)
        else:
            selection = await _by_filter(app, job_filter, limit)
        if not dry_run and selection.jobs:
            selection.changed = await app.control_many(action, selection.ids, reason)
    return selection


async def _by_id(app: Polyqueue, job_ids: tuple[int, ...]) -> Selection:
    statuses = await app.store.job_status_many(job_ids)
    for job_id in job_ids:
        if job_id not in statuses:
            raise JobNotFoundError(job_id)
    return Selection([(job_id, statuses[job_id]) for job_id in dict.fromkeys(job_ids)])


async def _by_filter(app: Polyqueue, job_filter: JobFilter, limit: int) -> Selection:
    rows = await app.store.job_find(
        statuses=job_filter.statuses,
        queue=job_filter.queue,
        name=job_filter.name,
        since=job_filter.since,
        limit=limit + 1,  # one more than asked: tells whether the limit cut the selection
    )
    return Selection([(row["id"], row["status"]) for row in rows[:limit]], len(rows) > limit)


def _report(action: str, selection: Selection, dry_run: bool) -> dict[str, Any]:
    report: dict[str, Any] = {
        "action": action,
        "dry_run": dry_run,
        "matched": len(selection.jobs),
        "changed": len(selection.changed),
        "ids": selection.ids if dry_run else selection.changed,
        "limit_reached": selection.limit_reached,
    }
    if not dry_run:
        report["skipped"] = selection.skipped(action)
    if dry_run:
        report["would_change"] = len(_would_change(action, selection))
        report["jobs"] = [{"id": job_id, "status": status} for job_id, status in selection.jobs]
    return report


def _would_change(action: str, selection: Selection) -> list[int]:
    return [job_id for job_id, status in selection.jobs if status in ACTION_SOURCES[action]]


def _print_dry_run(action: str, selection: Selection, limit: int) -> None:
    if selection.jobs:
        table = Table(title=f"Dry run: {action}")
        for column in ("ID", "Status", "Would"):
            table.add_column(column)
        for job_id, status in selection.jobs:
            would = (
                action
                if status in ACTION_SOURCES[action]
                else f"skip: {skip_reason(action, status)}"
            )
            table.add_row(plain(job_id), plain(status), plain(would))
        console().print(table)
    count = len(_would_change(action, selection))
    click.echo(f"dry run: matched {len(selection.jobs)}, would {action} {count}; nothing changed")
    _warn_limit(selection, limit)


def _print_changes(action: str, selection: Selection, limit: int) -> None:
    click.echo(f"matched {len(selection.jobs)}, {DONE[action]} {len(selection.changed)}")
    if selection.changed:
        shown = ", ".join(str(job_id) for job_id in selection.changed[:SHOWN_IDS])
        more = len(selection.changed) - SHOWN_IDS
        click.echo(f"{DONE[action]}: {shown}" + (f" and {more} more" if more > 0 else ""))
    skipped = selection.skipped(action)
    for entry in skipped[:SHOWN_IDS]:
        click.echo(f"not {DONE[action]}: {entry['id']} ({entry['reason']})")
    if len(skipped) > SHOWN_IDS:
        click.echo(f"not {DONE[action]}: {len(skipped) - SHOWN_IDS} more (see --json)")
    _warn_limit(selection, limit)


def _warn_limit(selection: Selection, limit: int) -> None:
    if selection.limit_reached:
        click.echo(
            f"limit reached: only the newest {limit} matching jobs were selected; "
            "run again or raise --limit"
        )
