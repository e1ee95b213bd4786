"""`polyqueue inspect workflows|workflow ID`: workflows and every node's state (read-only)."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

import click
from rich.table import Table

from polyqueue.cli.support import age, console, echo_json, format_age, open_store, plain
from polyqueue.status import JobStatus
from polyqueue.workflow_state import WorkflowSummary, read_workflow

if TYPE_CHECKING:
    from polyqueue.workflow_state import WorkflowInfo

__all__ = ["workflow", "workflows"]

JSON_HELP = "Print JSON on stdout instead of a table."
WIDE_HELP = "Never shorten cells to fit the terminal (as when stdout is not a terminal)."
_ORDER = [status.value for status in JobStatus]


@click.command(short_help="Workflows, newest first, with their jobs counted per status.")
@click.option("--limit", type=click.IntRange(min=1), default=50, show_default=True)
@click.option("--json", "as_json", is_flag=True, help=JSON_HELP)
@click.option("--wide", is_flag=True, help=WIDE_HELP)
def workflows(limit: int, as_json: bool, wide: bool) -> None:
    """Workflows, newest first: id, name, status (running until every job has finished),
    jobs, and how many are in each status."""
    found = asyncio.run(_workflows(limit))
    if as_json:
        echo_json([{**w.model_dump(), "status": w.status} for w in found])
    elif not found:
        click.echo("no workflows")
    else:
        console(wide=wide).print(_workflows_table(found))


async def _workflows(limit: int) -> list[WorkflowSummary]:
    async with open_store() as store:
        return [WorkflowSummary.from_row(row) for row in await store.workflow_find(limit)]


def _counts(counts: dict[str, int]) -> str:
    return ", ".join(f"{counts[s]} {s}" for s in _ORDER if counts.get(s))


def _workflows_table(found: list[WorkflowSummary]) -> Table:
    table = Table(title="Workflows (newest first)")
    for column in ("ID", "Name", "Status", "Jobs", "Per status", "Created"):
        table.add_column(column, justify="right" if column in {"ID", "Jobs"} else "left")
    for w in found:
        table.add_row(
            plain(w.id),
            plain(w.name),
            plain(w.status),
            plain(w.nodes),
            plain(_counts(w.counts)),
            plain(f"{format_age(age(w.created_at))} ago"),
        )
    return table


@click.command(short_help="One workflow: every job with its state and what it waits for.")
@click.argument("workflow_id", type=int, metavar="ID")
@click.option("--json", "as_json", is_flag=True, help=JSON_HELP)
@click.option("--wide", is_flag=True, help=WIDE_HELP)
def workflow(workflow_id: int, as_json: bool, wide: bool) -> None:
    """One workflow: its status, and every job (node) with its state, attempts, the jobs it
    waits for (with each edge's failure policy) and its last error."""
    info = asyncio.run(_workflow(workflow_id))
    if as_json:
        echo_json({**info.model_dump(), "status": info.status, "counts": info.counts})
        return
    out = console(wide=wide)
    out.print(f"workflow {info.id} {info.name!r}: {info.status} ({_counts(info.counts)})")
    out.print(_nodes_table(info))


async def _workflow(workflow_id: int) -> WorkflowInfo:
    async with open_store() as store:
        return await read_workflow(store, workflow_id)


def _nodes_table(info: WorkflowInfo) -> Table:
    table = Table(title=f"Jobs of workflow {info.id}")
    for column in ("Job", "Name", "Status", "Attempt", "After", "Error"):
        table.add_column(column, justify="right" if column in {"Job", "Attempt"} else "left")
    for node in info.nodes:
        after = ", ".join(
            _edge(job, policy) for job, policy in zip(node.depends_on, node.on_failure, strict=True)
        )
        error = f"{node.error.type}: {node.error.message}" if node.error else None
        table.add_row(
            plain(node.job_id),
            plain(node.name),
            plain(node.status.value),
            plain(f"{node.attempt}/{node.max_attempts}"),
            plain(after or None),
            plain(error),
        )
    return table


def _edge(job_id: int, policy: str) -> str:
    return str(job_id) if policy == "cancel" else f"{job_id} ({policy})"
