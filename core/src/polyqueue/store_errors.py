"""Turning asyncpg errors into the Polyqueue error tree, in one place."""

from __future__ import annotations

import contextlib
from typing import TYPE_CHECKING

import asyncpg

from polyqueue.exceptions import DatabaseUnavailableError, StoreError

if TYPE_CHECKING:
    from collections.abc import Iterator

__all__ = ["CONNECTION_ERRORS", "translate_errors"]

CONNECTION_ERRORS: tuple[type[BaseException], ...] = (
    OSError,
    TimeoutError,
    asyncpg.InterfaceError,
    asyncpg.ConnectionDoesNotExistError,
    asyncpg.CannotConnectNowError,
    asyncpg.AdminShutdownError,
    asyncpg.CrashShutdownError,
)
"""Errors that mean "the database is not reachable right now", as opposed to a bad query."""


@contextlib.contextmanager
def translate_errors(operation: str) -> Iterator[None]:
    """Turn asyncpg errors into the Polyqueue tree, chaining the original."""
    try:
        yield
    except CONNECTION_ERRORS as exc:
        raise DatabaseUnavailableError(f"{operation}: database unavailable ({exc})") from exc
    except asyncpg.PostgresError as exc:
        raise StoreError(f"{operation}: {exc}") from exc
