"""`polyqueue db status|stop`: see and stop the embedded PostgreSQL of the data directory."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

import click

from polyqueue.embedded_registry import registered_servers
from polyqueue.exceptions import PolyqueueError
from polyqueue.loading import embedded_server
from polyqueue.settings import describe_database_url, load_settings

if TYPE_CHECKING:
    from polyqueue.embedded import EmbeddedPostgres

__all__ = ["db"]


@click.group(short_help="See or stop the embedded PostgreSQL.")
def db() -> None:
    """The embedded PostgreSQL that runs when POLYQUEUE_DATABASE_URL is unset: one server per
    data directory (POLYQUEUE_DATA_DIR, default ./.polyqueue), shared by every process that
    uses it, stopped when the last of them exits or by `polyqueue db stop`."""


@db.command(short_help="Whether the embedded server runs, where, and who uses it.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON on stdout instead of text.")
def status(as_json: bool) -> None:
    """The embedded server of POLYQUEUE_DATA_DIR: running or not, its URL, the processes
    that use it; and the other embedded servers this user runs elsewhere."""
    settings = load_settings()
    server = embedded_server(settings)
    report = _status(server)
    report["database_url"] = (
        describe_database_url(settings.database_url) if settings.database_url else None
    )
    report["elsewhere"] = [
        _status(embedded_server(load_settings(data_dir=path.parent)))
        for path in registered_servers()
        if path != server.data_dir
    ]
    if as_json:
        click.echo(json.dumps(report))
        return
    if settings.database_url:
        click.echo(
            f"POLYQUEUE_DATABASE_URL is set ({report['database_url']}): "
            "the embedded server is not used"
        )
    click.echo(_describe(report))
    for other in report["elsewhere"]:
        click.echo("elsewhere: " + _describe(other))


def _status(server: EmbeddedPostgres) -> dict[str, Any]:
    port = server.live_port
    return {
        "data_dir": str(server.data_dir.parent),
        "exists": server.exists,
        "running": port is not None,
        "port": port,
        "pid": server.pid,
        "url": server.url_on(port) if port is not None else None,
        "clients": [{"pid": c.pid, "command": c.command} for c in server.clients()],
    }


def _describe(report: dict[str, Any]) -> str:
    where = report["data_dir"]
    if not report["exists"]:
        return f"{where}: no embedded PostgreSQL (none was ever started here)"
    if not report["running"]:
        return f"{where}: stopped (data kept; the next app, worker or command starts it)"
    users = "; ".join(f"pid {c['pid']}: {c['command']}" for c in report["clients"])
    return f"{where}: running, pid {report['pid']}, {report['url']}; " + (
        f"used by {len(report['clients'])} process(es): {users}" if users else "unused"
    )


@db.command(short_help="Stop the embedded server (refused while processes use it).")
@click.option("--force", is_flag=True, help="Stop it even while processes use it.")
def stop(force: bool) -> None:
    """Stop the embedded server of POLYQUEUE_DATA_DIR. While workers or other processes use
    it, refuse and name them, unless --force (they then lose their database)."""
    server = embedded_server(load_settings())
    if not server.running:
        click.echo(f"{server.data_dir.parent}: not running")
        return
    clients = server.clients()
    if clients and not force:
        users = "; ".join(f"pid {c.pid}: {c.command}" for c in clients)
        raise PolyqueueError(
            f"{len(clients)} process(es) use the embedded server in {server.data_dir.parent} "
            f"({users}): stop them first, or pass --force"
        )
    server.stop(force=True)
    click.echo(f"{server.data_dir.parent}: stopped")
