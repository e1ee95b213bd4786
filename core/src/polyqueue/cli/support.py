"""What the `inspect` and `admin` commands share: options, durations, the store, output."""

from __future__ import annotations

import contextlib
import enum
import itertools
import json
import re
import sys
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import TYPE_CHECKING, Any

import click
from rich.console import Console
from rich.text import Text

from polyqueue.loading import NoDatabaseError, database_url, embedded_server, no_database_message
from polyqueue.settings import load_settings
from polyqueue.status import JobStatus

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Callable, Mapping

    from polyqueue.app import Polyqueue
    from polyqueue.settings import PolyqueueSettings
    from polyqueue.store import JobStore

__all__ = [
    "DURATION_HELP",
    "STATUSES",
    "JobFilter",
    "console",
    "echo_json",
    "format_age",
    "job_filter_options",
    "jsonable",
    "open_app",
    "open_store",
    "plain",
    "to_duration",
    "to_since",
]

STATUSES = [status.value for status in JobStatus]
DURATION_HELP = "a duration like 30s, 10m, 2h or 1d"
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhd])\s*$")
_UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
_AGE_UNITS = (("d", 86400), ("h", 3600), ("m", 60), ("s", 1))
_UNLIMITED = 100_000  # columns: wider than any table, which rich sizes to its content


def parse_duration(value: str) -> timedelta | None:
    """`10m` as a timedelta; None if `value` is not a duration."""
    match = _DURATION.match(value.lower())
    if match is None:
        return None
    return timedelta(seconds=float(match[1]) * _UNIT_SECONDS[match[2]])


def to_duration(ctx: click.Context, param: click.Parameter, value: str | None) -> Any:
    """Click callback: `10m` as a positive timedelta (None stays None)."""
    if value is None:
        return None
    duration = parse_duration(value)
    if duration is None or duration <= timedelta(0):
        raise click.BadParameter(f"expected {DURATION_HELP}, got {value!r}", ctx, param)
    return duration


def to_since(ctx: click.Context, param: click.Parameter, value: str | None) -> Any:
    """Click callback: a duration back from now, or an ISO 8601 timestamp (UTC if naive)."""
    if value is None:
        return None
    duration = parse_duration(value)
    if duration is not None:
        return datetime.now(UTC) - duration
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise click.BadParameter(
            f"expected {DURATION_HELP}, or an ISO timestamp like 2025-01-31T12:00:00+00:00; "
            f"got {value!r}",
            ctx,
            param,
        ) from None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


@dataclass(frozen=True)
class JobFilter:
    """The job filters common to `inspect jobs` and `admin ...`; empty means "every job"."""

    statuses: tuple[str, ...] = ()
    queue: str | None = None
    name: str | None = None
    since: datetime | None = None

    @property
    def empty(self) -> bool:
        """Whether no filter was given at all."""
        return not (self.statuses or self.queue or self.name or self.since)


def job_filter_options(command: Callable[..., Any]) -> Callable[..., Any]:
    """Add `--status` (repeatable), `--queue`, `--name` and `--since` to a command."""
    options = [
        click.option(
            "--status",
            "statuses",
            multiple=True,
            type=click.Choice(STATUSES),
            help="Only jobs in this status (repeatable).",
        ),
        click.option("--queue", metavar="QUEUE", help="Only jobs of this queue."),
        click.option("--name", metavar="NAME", help="Only jobs of this handler name."),
        click.option(
            "--since",
            callback=to_since,
            metavar="WHEN",
            help=f"Only jobs created since WHEN: {DURATION_HELP} ago, or an ISO 8601 "
            "timestamp (UTC unless it has an offset).",
        ),
    ]
    for option in reversed(options):
        command = option(command)
    return command


@contextlib.asynccontextmanager
async def open_store(
    settings: PolyqueueSettings | None = None, *, must_exist: bool = True
) -> AsyncIterator[JobStore]:
    """A small job store on the settings' database, without migrating. Embedded (no
    `database_url`): the server of `data_dir`, which `must_exist` unless told otherwise."""
    from polyqueue.pgconnect import ConnectionOptions  # noqa: PLC0415 -- fast `--help`
    from polyqueue.store import JobStore  # noqa: PLC0415

    settings = settings or load_settings()
    async with database_url(settings, must_exist=must_exist) as url:
        options = ConnectionOptions.from_settings(settings)
        store = JobStore(url, settings.schema_name, pool_size=2, options=options)
        await store.open()
        try:
            yield store
        finally:
            await store.close()


@contextlib.asynccontextmanager
async def open_app() -> AsyncIterator[Polyqueue]:
    """A started `Polyqueue` from the environment's settings (no handlers: control only);
    an embedded database must exist already."""
    from polyqueue.app import Polyqueue  # noqa: PLC0415 -- fast `--help`

    settings = load_settings()
    if not settings.database_url and not embedded_server(settings).exists:
        raise NoDatabaseError(no_database_message(settings))
    async with Polyqueue(settings) as app:
        yield app


def console(*, wide: bool = False) -> Console:
    """A console on stdout for tables: plain text when stdout is not a terminal, and then (or
    when `wide`) as wide as the table needs, so that ids and names are never shortened."""
    if wide or not sys.stdout.isatty():
        return Console(highlight=False, emoji=False, width=_UNLIMITED, soft_wrap=True)
    return Console(highlight=False, emoji=False)


def plain(value: object) -> Text:
    """A table cell showing `value` as is (never read as rich markup); `-` for None."""
    return Text("-" if value is None else str(value))


def format_age(seconds: float | None) -> str:
    """`42s`, `5m 3s`, `2h`, `3d 4h` (two units at most); `-` for None."""
    if seconds is None:
        return "-"
    total = max(0, round(seconds))
    for (unit, size), (sub, sub_size) in itertools.pairwise(_AGE_UNITS):
        if total >= size:
            rest = total % size // sub_size
            return f"{total // size}{unit}" + (f" {rest}{sub}" if rest else "")
    return f"{total}s"


def age(moment: datetime | None) -> float | None:
    """Seconds since `moment` (on this machine's clock); None for None."""
    return None if moment is None else (datetime.now(UTC) - moment).total_seconds()


def jsonable(value: Any) -> Any:
    """`value` with datetimes as ISO strings and decimals as floats, for `json.dumps`."""
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, Decimal):
        return float(value)
    if isinstance(value, dict):
        return {key: jsonable(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [jsonable(item) for item in value]
    return value


def echo_json(data: Mapping[str, Any] | list[Any]) -> None:
    """Print `data` as one JSON document on stdout."""
    click.echo(json.dumps(jsonable(data)))
