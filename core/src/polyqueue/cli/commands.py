"""The root `polyqueue` group and its own commands `demo`, `migrate` and `worker APP`.

The group turns errors into one `error: ...` line (see the package docstring) and imports the
groups of `LAZY_COMMANDS` (`inspect`, `admin`, `db`, `queue`, `dashboard`: one module each
in this package) only when one of them runs. A new command or group is added with
`cli.add_command(...)`.
"""

from __future__ import annotations

import asyncio
import importlib
import json
import logging
import sys
from typing import TYPE_CHECKING, Any, NoReturn

import click

from polyqueue.exceptions import ConfigurationError, PolyqueueError
from polyqueue.loading import AppImportError

if TYPE_CHECKING:
    from polyqueue.app import Polyqueue
    from polyqueue.settings import PolyqueueSettings

__all__ = ["cli", "main"]

EXIT_ERROR = 1
EXIT_USAGE = 2
_SHOWS_HELP: tuple[type[Exception], ...] = tuple(
    getattr(click.exceptions, name)
    for name in ("NoArgsIsHelpError",)  # click >= 8.2: how a bare group prints its help
    if hasattr(click.exceptions, name)
)


LAZY_COMMANDS = {
    "inspect": ("polyqueue.cli.inspect:inspect", "Look at jobs, queues and workers (read-only)."),
    "admin": ("polyqueue.cli.admin:admin", "Requeue, fail or cancel jobs by id or by filter."),
    "db": ("polyqueue.cli.db:db", "See or stop the embedded PostgreSQL."),
    "dashboard": (
        "polyqueue.cli.dashboard:dashboard",
        "Serve the web dashboard (needs polyqueue[dashboard]).",
    ),
    "queue": (
        "polyqueue.cli.queue:queue",
        "Pause, resume and limit queues; list limits and paused queues.",
    ),
}
"""Command groups imported only when run (name: "module:attribute", short help), so that
`polyqueue --help` loads neither rich nor the app."""


class PolyqueueGroup(click.Group):
    """A click group that turns errors from any subcommand into one clear line, and imports
    the groups of `LAZY_COMMANDS` only when one of them runs."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        """Every command name, the lazy ones included."""
        return sorted({*super().list_commands(ctx), *LAZY_COMMANDS})

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        """The command; a lazy group is imported (once) when asked for."""
        if cmd_name in LAZY_COMMANDS and cmd_name not in self.commands:
            module_name, _, attribute = LAZY_COMMANDS[cmd_name][0].partition(":")
            self.add_command(getattr(importlib.import_module(module_name), attribute), cmd_name)
        return super().get_command(ctx, cmd_name)

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        """The commands section of `--help`, without importing the lazy groups."""
        names = self.list_commands(ctx)
        limit = formatter.width - 6 - max(map(len, names))
        rows = []
        for name in names:
            if name in LAZY_COMMANDS and name not in self.commands:
                rows.append((name, LAZY_COMMANDS[name][1]))
            elif (command := self.get_command(ctx, name)) is not None and not command.hidden:
                rows.append((name, command.get_short_help_str(limit)))
        with formatter.section("Commands"):
            formatter.write_dl(rows)

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
    from polyqueue.demo import run_demo  # noqa: PLC0415 -- fast `--help`
    from polyqueue.logs import configure_logging  # noqa: PLC0415
    from polyqueue.settings import load_settings  # noqa: PLC0415

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
    from polyqueue.settings import load_settings  # noqa: PLC0415 -- fast `--help`

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
    from polyqueue.cli.support import open_store  # noqa: PLC0415 -- fast `--help`
    from polyqueue.migrations import migrate_all, migration_labels  # noqa: PLC0415
    from polyqueue.plugins import create_plugin_manager, migration_lines  # noqa: PLC0415

    lines = migration_lines(create_plugin_manager())
    async with (
        open_store(settings, must_exist=False) as store,
        store.migration_connection() as connection,
    ):
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
@click.option(
    "--metrics-port",
    type=click.IntRange(min=1, max=65535),
    default=None,
    metavar="PORT",
    help="Serve Prometheus metrics on http://ADDR:PORT/metrics (needs prometheus-client).",
)
@click.option(
    "--metrics-addr",
    default="127.0.0.1",
    show_default=True,
    metavar="ADDR",
    help="Address of the metrics endpoint (0.0.0.0: every interface, e.g. in a container).",
)
@click.option(
    "--processes",
    type=click.IntRange(min=1),
    default=1,
    show_default=True,
    help="Worker processes, supervised: a dead one is started again; SIGTERM stops them all"
    " gracefully. With --metrics-port, process i serves on PORT+i.",
)
@click.option("--supervised", is_flag=True, hidden=True)
@click.option("--no-maintenance", is_flag=True, hidden=True)
def worker(  # noqa: PLR0917 -- click passes one argument per option
    app_spec: str,
    queues: tuple[str, ...],
    concurrency: int | None,
    log_level: str,
    burst: bool,
    metrics_port: int | None,
    metrics_addr: str,
    processes: int,
    supervised: bool,
    no_maintenance: bool,
) -> None:
    """Run a worker for APP ("module:attribute", a Polyqueue) until SIGTERM or SIGINT.

    With --burst, until no job of its queues is queued or due. With --processes N, N worker
    processes under one supervisor (this process); only the first takes part in maintenance.
    """
    from polyqueue.loading import load_app  # noqa: PLC0415 -- fast `--help`
    from polyqueue.runner import main as run_app  # noqa: PLC0415

    app = load_app(app_spec)
    _refuse_in_process_broker(app)
    if processes > 1:
        argv = _worker_argv(app_spec, queues, concurrency, log_level, burst=burst)
        _supervise(
            app, argv, processes, log_level, burst=burst, metrics=(metrics_port, metrics_addr)
        )
        return
    if supervised:
        from polyqueue.supervisor import watch_parent  # noqa: PLC0415

        watch_parent()
    if no_maintenance:
        app.configure(maintenance=False)
    run_app(
        app,
        metrics=None if metrics_port is None else _prometheus(metrics_port, metrics_addr),
        queues=list(queues) or None,
        concurrency=concurrency,
        log_level=log_level.upper(),
        burst=burst,
    )


def _worker_argv(
    app_spec: str,
    queues: tuple[str, ...],
    concurrency: int | None,
    log_level: str,
    *,
    burst: bool,
) -> list[str]:
    """`polyqueue worker` with these options, for a supervised worker process."""
    argv = [sys.executable, "-m", "polyqueue.cli", "worker", app_spec, "--log-level", log_level]
    for queue in queues:
        argv += ["--queue", queue]
    if concurrency is not None:
        argv += ["--concurrency", str(concurrency)]
    return [*argv, *(["--burst"] if burst else []), "--supervised"]


def _supervise(
    app: Polyqueue,
    argv: list[str],
    processes: int,
    log_level: str,
    *,
    burst: bool,
    metrics: tuple[int | None, str],
) -> None:
    """Run `processes` copies of `argv` under a `Supervisor` and exit with its status."""
    from polyqueue.logs import configure_logging  # noqa: PLC0415
    from polyqueue.supervisor import Supervisor  # noqa: PLC0415

    configure_logging(log_level.upper(), app.settings.log_format)
    port, addr = metrics

    def command(index: int) -> list[str]:
        extra = (
            [] if port is None else ["--metrics-port", str(port + index), "--metrics-addr", addr]
        )
        return [*argv, *extra, *(["--no-maintenance"] if index else [])]

    sys.exit(asyncio.run(Supervisor(command, processes, burst=burst).run()))


def _refuse_in_process_broker(app: Polyqueue) -> None:
    """A worker process on the in-process broker hears only its own process's jobs."""
    if app.broker_class.capabilities.in_process:
        raise ConfigurationError(
            f"POLYQUEUE_QUEUE_BACKEND={app.settings.queue_backend} is the in-process broker: "
            "a worker started by `polyqueue worker` would never hear of jobs that other "
            "processes enqueue. Use the default `postgres` broker (or another that crosses "
            "processes), or run the worker inside the producing process "
            "(`await app.run_worker()`, `await app.run_until_idle()`)"
        )


def _prometheus(port: int, addr: str) -> object:
    """A `PrometheusMetrics` serving `/metrics` on `addr:port` once registered."""
    try:
        from polyqueue.contrib.prometheus import PrometheusMetrics  # noqa: PLC0415
    except ImportError as exc:
        raise ConfigurationError(
            "--metrics-port needs prometheus-client: `pip install 'polyqueue[prometheus]'`"
        ) from exc
    return PrometheusMetrics(port=port, addr=addr)


def main() -> None:
    """The `polyqueue` console script."""
    cli()
