"""What the CLI loads: an app named as "module:attribute", and the database it works on."""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from polyqueue.exceptions import ConfigurationError

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

    from polyqueue.app import Polyqueue
    from polyqueue.embedded import EmbeddedPostgres
    from polyqueue.settings import PolyqueueSettings

__all__ = ["AppImportError", "NoDatabaseError", "database_url", "embedded_server", "load_app"]


class AppImportError(ConfigurationError):
    """The APP argument does not name a Polyqueue app."""


class NoDatabaseError(ConfigurationError):
    """A command that reads an existing database found no embedded one where it looked."""


def load_app(spec: str) -> Polyqueue:
    """Import the `Polyqueue` named by `spec` ("module:attribute", the cwd on `sys.path`).

    `AppImportError` says which part of `spec` is wrong. Errors raised by the module itself
    while it is imported (a `ConfigurationError` from bad settings, a bug) propagate unchanged.
    """
    from polyqueue.app import Polyqueue  # noqa: PLC0415 -- `polyqueue --help` stays fast

    module_name, _, attribute = spec.partition(":")
    if not module_name or not attribute:
        raise AppImportError(f"APP must look like 'module:attribute', got {spec!r}")
    _put_cwd_on_path()
    target: object = _import(module_name)
    for part in attribute.split("."):
        try:
            target = getattr(target, part)
        except AttributeError:
            raise AppImportError(f"{part!r} not found in {module_name!r} (APP {spec!r})") from None
    if not isinstance(target, Polyqueue):
        raise AppImportError(
            f"{spec!r} is a {type(target).__name__}, not a Polyqueue app "
            f"(set it to `{attribute} = Polyqueue()` in {module_name!r})"
        )
    return target


def _put_cwd_on_path() -> None:
    cwd = str(Path.cwd())
    if cwd not in sys.path and "" not in sys.path:
        sys.path.insert(0, cwd)


def _import(module_name: str) -> object:
    try:
        return importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name is not None and (module_name + ".").startswith(exc.name + "."):
            raise AppImportError(
                f"cannot import module {module_name!r}: no module named {exc.name!r} "
                f"(searched the current directory and sys.path)"
            ) from None
        raise  # the module exists but one of its own imports is missing


@contextlib.asynccontextmanager
async def database_url(
    settings: PolyqueueSettings, *, must_exist: bool = False
) -> AsyncIterator[str]:
    """The settings' database URL, or the embedded server's (adopted if it runs, else
    started here; stopped after only if no other process uses it).

    The embedded server lives where `Polyqueue` would start it: `<data_dir>/postgres`. With
    `must_exist`, a data directory where no server was ever created is a `NoDatabaseError`
    naming the directory and the servers this user runs elsewhere, instead of a new, empty
    database (what `inspect` and `admin` want: they read what an app wrote).
    """
    if settings.database_url:
        yield settings.database_url
        return
    server = embedded_server(settings)
    if must_exist and not server.exists:
        raise NoDatabaseError(no_database_message(settings))
    url = await asyncio.to_thread(server.start)
    try:
        yield url
    finally:
        await asyncio.to_thread(server.stop)


def embedded_server(settings: PolyqueueSettings) -> EmbeddedPostgres:
    """The embedded server of `settings` (not started)."""
    from polyqueue.embedded import EmbeddedPostgres  # noqa: PLC0415  (optional extra)

    return EmbeddedPostgres(settings.data_dir / "postgres", record=True)


def no_database_message(settings: PolyqueueSettings) -> str:
    """Why there is no database to read, and where this user's embedded servers are."""
    from polyqueue.embedded_registry import registered_servers  # noqa: PLC0415

    here = (settings.data_dir / "postgres").resolve()
    message = (
        f"no embedded PostgreSQL in {here.parent} (POLYQUEUE_DATA_DIR, relative to the "
        "current directory): run this from your app's directory, or set POLYQUEUE_DATA_DIR "
        "to its data directory or POLYQUEUE_DATABASE_URL to its database"
    )
    others = [path.parent for path in registered_servers() if path != here]
    if others:
        message += "; embedded servers of this user: " + ", ".join(map(str, others))
    return message
