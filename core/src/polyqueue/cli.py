"""The `polyqueue` command line: `demo`, `migrate`, `worker APP`, `inspect ...`, `admin ...`.

Every command reports a `PolyqueueError` as one `error: ...` line on stderr with exit code 1,
and bad usage (an APP that names no app, an invalid option value) as one such line with exit
code 2, never as a traceback. Commands whose output is data take `--json`. A new command or
group is added with `cli.add_command(...)`.
"""

from __future__ import annotations

import asyncio
import json
import logging
from typing import TYPE_CHECKING, Any, NoReturn

import click

from polyqueue.cli_admin import admin
from polyqueue.cli_inspect import inspect
from polyqueue.cli_support import open_store
from polyqueue.demo import run_demo
from polyqueue.exceptions import PolyqueueError
from polyqueue.loading import AppImportError, load_app
from polyqueue.logs import configure_logging
from polyqueue.migrations import migrate_all, migration_labels
from polyqueue.plugins import create_plugin_manager, migration_lines
from polyqueue.runner import main as run_app
from polyqueue.settings import load_settings

if TYPE_CHECKING:
    from polyqueue.settings import PolyqueueSettings

__all__ = ["cli", "main"]

EXIT_ERROR = 1
EXIT_USAGE = 2
_SHOWS_HELP: tuple[type[Exception], ...] = tuple(
    getattr(click.exceptions, name)
    for name in ("NoArgsIsHelpError",)  # click >= 8.2: how a bare group prints its help
    if hasattr(click.exceptions, name)
)


class PolyqueueGroup(click.Group):
    """A click group that turns errors from any subcommand into one clear line."""

    def invoke(self, ctx: click.Context) -> Any:
        """Run the subcommand; report `PolyqueueError` or bad usage as `error: ...` and exit."""
        try:
            return super().invoke(ctx)
        except AppImportError as exc:
            _fail(str(exc), EXIT_USAGE)
        except PolyqueueError as exc:
            _fail(str(exc), EXIT_ERROR)
        except click.UsageError as exc:
            if isinstance(exc, _SHOWS_HELP):
                raise
            command = f" (see '{exc.ctx.command_path} --help')" if exc.ctx else ""
            _fail(exc.format_message().rstrip(".") + command, EXIT_USAGE)


def _fail(message: str, code: int) -> NoReturn:
    click.echo(f"error: {message}", err=True)
    raise click.exceptions.Exit(code)


@click.group(cls=PolyqueueGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="polyqueue")
def cli() -> None:
    """Polyqueue: PostgreSQL is the truth, brokers are doorbells.

    Settings come from POLYQUEUE_* environment variables; without POLYQUEUE_DATABASE_URL an
    embedded PostgreSQL is started in ./.polyqueue (needs `polyqueue[embedded]`).
    """


# -- demo ---------------------------------------------------------------------------------------


@cli.command(short_help="Run typed jobs through a worker, with a progress bar.")
@click.option("--jobs", default=300, show_default=True, type=click.IntRange(min=1))
@click.option("--concurrency", default=10, show_default=True, type=click.IntRange(min=1))
@click.option(
    "--backend",
    default=None,
    metavar="NAME",
    help="Broker: postgres, none (in-process) or a plugin's. Default: POLYQUEUE_QUEUE_BACKEND.",
)
@click.option("--verbose", is_flag=True, help="Also print the worker's log (every job's line).")
def demo(jobs: int, concurrency: int, backend: str | None, verbose: bool) -> None:
    """Enqueue a few hundred typed jobs and run them with a worker in this process."""
    if verbose:
        configure_logging("INFO")
    else:  # the outcome table tells the story; failures' tracebacks would bury the bar
        logging.getLogger("polyqueue").setLevel(logging.CRITICAL)
    asyncio.run(run_demo(jobs, concurrency, backend or load_settings().queue_backend))


# -- migrate ------------------------------------------------------------------------------------


@cli.command(short_help="Apply pending migrations (idempotent).")
@click.option("--schema", default=None, help="Schema to migrate. Default: POLYQUEUE_SCHEMA.")
@click.option("--json", "as_json", is_flag=True, help="Print {schema, applied} as JSON.")
def migrate(schema: str | None, as_json: bool) -> None:
    """Apply the migrations the database has not seen yet (safe to run again)."""
    settings = load_settings(**({"schema_name": schema} if schema else {}))
    applied = asyncio.run(_migrate(settings))
    _report_migrations(settings.schema_name, applied, as_json)


def _report_migrations(schema: str, applied: list[str], as_json: bool) -> None:
    if as_json:
        click.echo(json.dumps({"schema": schema, "applied": applied}))
        return
    if not applied:
        click.echo(f"schema {schema!r} is already up to date")
    for name in applied:
        click.echo(f"applied {name} to schema {schema!r}")


async def _migrate(settings: PolyqueueSettings) -> list[str]:
    """The core's migrations, then every plugin's migration line; labels of those applied."""
    lines = migration_lines(create_plugin_manager())
    async with open_store(settings) as store, store.migration_connection() as connection:
        applied = await migrate_all(connection, settings.schema_name, lines)
    return migration_labels(settings.schema_name, applied, lines)


# -- worker -------------------------------------------------------------------------------------


@cli.command(short_help="Run a worker for APP (module:attribute).")
@click.argument("app_spec", metavar="APP")
@click.option(
    "--queue",
    "queues",
    multiple=True,
    metavar="QUEUE",
    help="Queue to consume (repeatable). Default: every queue of a registered handler.",
)
@click.option("--concurrency", type=click.IntRange(min=1), default=None, help="Jobs at once.")
@click.option(
    "--log-level",
    default="info",
    show_default=True,
    type=click.Choice(["debug", "info", "warning", "error"], case_sensitive=False),
)
@click.option(
    "--burst",
    is_flag=True,
    help="Exit (status 0) once no job of the queues is ready to run: for tests and batch runs.",
)
def worker(
    app_spec: str, queues: tuple[str, ...], concurrency: int | None, log_level: str, burst: bool
) -> None:
    """Run a worker for APP ("module:attribute", a Polyqueue) until SIGTERM or SIGINT.

    With --burst, until no job of its queues is queued or due.
    """
    app = load_app(app_spec)
    run_app(
        app,
        queues=list(queues) or None,
        concurrency=concurrency,
        log_level=log_level.upper(),
        burst=burst,
    )


cli.add_command(inspect)
cli.add_command(admin)


def main() -> None:
    """The `polyqueue` console script."""
    cli()


if __name__ == "__main__":
    main()
