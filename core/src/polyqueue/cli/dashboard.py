"""`polyqueue dashboard [APP]`: serve the web dashboard (needs `polyqueue[dashboard]`).

Secrets come from the environment, never from the command line (where `ps` shows them):
`POLYQUEUE_DASHBOARD_TOKEN` or `POLYQUEUE_DASHBOARD_BASIC_AUTH=user:password`, or the
variables `--token-env` / `--basic-auth-env` name. Without either, only a loopback host is
served: any other refuses to start.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

import click

from polyqueue.exceptions import ConfigurationError

if TYPE_CHECKING:
    from polyqueue.app import Polyqueue
    from polyqueue.dashboard.security import Auth

__all__ = ["DEFAULT_PORT", "dashboard"]

DEFAULT_PORT = 8700
TOKEN_ENV = "POLYQUEUE_DASHBOARD_TOKEN"  # noqa: S105 -- a variable name, not a secret
BASIC_AUTH_ENV = "POLYQUEUE_DASHBOARD_BASIC_AUTH"


@click.command(short_help="Serve the web dashboard (needs polyqueue[dashboard]).")
@click.argument("app_spec", metavar="[APP]", required=False)
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option(
    "--port", default=DEFAULT_PORT, show_default=True, type=click.IntRange(min=0, max=65535)
)
@click.option("--read-only", is_flag=True, help="Show everything, change nothing (403).")
@click.option(
    "--token-env",
    default=TOKEN_ENV,
    show_default=True,
    metavar="VAR",
    help="Environment variable holding the bearer token (16+ characters).",
)
@click.option(
    "--basic-auth-env",
    default=BASIC_AUTH_ENV,
    show_default=True,
    metavar="VAR",
    help="Environment variable holding USER:PASSWORD for HTTP basic auth.",
)
def dashboard(  # noqa: PLR0917 -- click passes one argument per option
    app_spec: str | None,
    host: str,
    port: int,
    read_only: bool,
    token_env: str,
    basic_auth_env: str,
) -> None:
    """Serve the dashboard of APP ("module:attribute", to show its cron schedules too), or of
    the database in POLYQUEUE_* settings, until Ctrl-C."""
    try:
        import uvicorn  # noqa: PLC0415 -- an optional dependency

        from polyqueue.dashboard import check_exposure, create_app  # noqa: PLC0415
    except ImportError as exc:
        raise ConfigurationError(
            f"the dashboard needs the dashboard extra: pip install 'polyqueue[dashboard]' "
            f"({exc.name} is missing)"
        ) from None
    auth = _auth(token_env, basic_auth_env)
    check_exposure(host, auth)
    site = create_app(_app(app_spec), read_only=read_only, auth=auth)
    click.echo(f"Polyqueue dashboard on http://{_authority(host, port)}/", err=True)
    uvicorn.run(site, host=host, port=port, log_level="warning", server_header=False)


def _auth(token_env: str, basic_auth_env: str) -> Auth:
    from polyqueue.dashboard.security import BasicAuth, TokenAuth  # noqa: PLC0415

    token, basic = os.environ.get(token_env), os.environ.get(basic_auth_env)
    if token and basic:
        raise ConfigurationError(f"set {token_env} or {basic_auth_env}, not both")
    try:
        if token:
            return TokenAuth(token)
        if basic:
            return BasicAuth.parse(basic)
    except ConfigurationError as exc:
        raise ConfigurationError(f"{token_env if token else basic_auth_env}: {exc}") from None
    return None


def _app(app_spec: str | None) -> Polyqueue:
    from polyqueue.app import Polyqueue  # noqa: PLC0415 -- fast `--help`
    from polyqueue.loading import load_app  # noqa: PLC0415

    return load_app(app_spec) if app_spec else Polyqueue()


def _authority(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
