"""`polyqueue queue list|pause|resume|limit`: flow control of queues from the command line.

What the app's `pause_queue`, `resume_queue` and `configure_queue` do, through the same
code: every worker obeys at its next claim. `list` shows every limit in force (handlers' and
queues'), with the jobs running under it and waiting for it, and the paused queues.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

import click
from rich.table import Table

from polyqueue.cli.support import age, console, echo_json, format_age, open_app, plain
from polyqueue.exceptions import ConfigurationError

if TYPE_CHECKING:
    from polyqueue.queues import FlowLimit, PausedQueue

__all__ = ["queue"]


@click.group(short_help="Pause, resume and limit queues; list limits and paused queues.")
def queue() -> None:
    """Flow control of queues: pause, resume, limits (docs/flow-control.md)."""


@queue.command(name="list", short_help="Limits in force and paused queues, with waiting jobs.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON on stdout instead of tables.")
@click.option("--wide", is_flag=True, help="Never shorten cells to fit the terminal.")
def list_queues(as_json: bool, wide: bool) -> None:
    """Every limit (of a handler or a queue) with its running and waiting jobs, and every
    paused queue with its waiting jobs."""
    limits, paused = asyncio.run(_read())
    if as_json:
        echo_json(
            {
                "limits": [limit_entry(x) for x in limits],
                "paused": [paused_entry(p) for p in paused],
            }
        )
        return
    if not limits and not paused:
        click.echo("no limits and no paused queues")
        return
    out = console(wide=wide)
    if limits:
        out.print(_limits_table(limits))
    if paused:
        out.print(_paused_table(paused))


async def _read() -> tuple[list[FlowLimit], list[PausedQueue]]:
    async with open_app() as app:
        return await app.flow_limits(), await app.paused_queues()


def limit_entry(limit: FlowLimit) -> dict[str, Any]:
    """One limit as JSON."""
    rate = limit.limits.rate
    return {
        "scope": limit.scope,
        "name": limit.name,
        "concurrency_limit": limit.limits.concurrency,
        "rate_limit": None if rate is None else rate.count,
        "rate_window_seconds": None if rate is None else rate.window,
        "per_key": limit.limits.per_key,
        "running": limit.running,
        "waiting": limit.waiting,
    }


def paused_entry(paused: PausedQueue) -> dict[str, Any]:
    """One paused queue as JSON."""
    return {"queue": paused.queue, "paused_at": paused.paused_at, "waiting": paused.waiting}


def _limits_table(limits: list[FlowLimit]) -> Table:
    table = Table(title="Limits")
    for column in ("Scope", "Name", "Limits", "Running", "Waiting"):
        table.add_column(column, justify="right" if column in {"Running", "Waiting"} else "left")
    for limit in limits:
        table.add_row(
            plain(limit.scope),
            plain(limit.name),
            plain(limit.limits.describe()),
            plain(limit.running),
            plain(limit.waiting),
        )
    return table


def _paused_table(paused: list[PausedQueue]) -> Table:
    table = Table(title="Paused queues")
    for column in ("Queue", "Paused", "Waiting"):
        table.add_column(column, justify="right" if column == "Waiting" else "left")
    for entry in paused:
        table.add_row(
            plain(entry.queue),
            plain(f"{format_age(age(entry.paused_at))} ago"),
            plain(entry.waiting),
        )
    return table


@queue.command(short_help="Stop workers from starting jobs of QUEUE; running ones finish.")
@click.argument("name")
def pause(name: str) -> None:
    """Pause queue NAME: no worker starts its jobs until it is resumed; enqueueing goes on."""
    asyncio.run(_pause(name))
    click.echo(f"paused {name}")


async def _pause(name: str) -> None:
    async with open_app() as app:
        await app.pause_queue(name)


@queue.command(short_help="Let workers start jobs of QUEUE again.")
@click.argument("name")
def resume(name: str) -> None:
    """Resume queue NAME; its waiting jobs start."""
    waiting = asyncio.run(_resume(name))
    click.echo(f"resumed {name}: {waiting} waiting jobs")


async def _resume(name: str) -> int:
    async with open_app() as app:
        return await app.resume_queue(name)


@queue.command(short_help="Set or remove QUEUE's concurrency and rate limits.")
@click.argument("name")
@click.option("--concurrency", type=int, help="At most this many of its jobs running at once.")
@click.option("--rate", help="At most this many starting per window: 50/s, 100/m, 10/30s.")
def limit(name: str, concurrency: int | None, rate: str | None) -> None:
    """Limit queue NAME across every worker; with neither option, remove its limits."""
    try:
        asyncio.run(_limit(name, concurrency, rate))
    except ConfigurationError as exc:
        raise click.UsageError(str(exc)) from exc
    click.echo(f"limits of {name}: " + ("none" if concurrency is None and rate is None else "set"))


async def _limit(name: str, concurrency: int | None, rate: str | None) -> None:
    async with open_app() as app:
        await app.configure_queue(name, concurrency_limit=concurrency, rate_limit=rate)
