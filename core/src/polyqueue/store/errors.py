"""Which asyncpg errors mean "the database is not reachable right now", in one place.

Everything that talks to PostgreSQL through asyncpg (the job store, the built-in broker, the
LISTEN connections, the PGMQ plugin and any third-party broker) classifies errors with
`connection_lost` and translates them with `translate_errors`, so a dying connection is one
error everywhere: `DatabaseUnavailableError` at the store boundary (or the caller's
"unavailable" error, e.g. `BrokerUnavailableError`), retried by the loops that call it.
"""

from __future__ import annotations

import contextlib
from typing import TYPE_CHECKING

import asyncpg
from asyncpg import exceptions as pg

from polyqueue.exceptions import DatabaseUnavailableError, PolyqueueError, StoreError

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator

__all__ = ["CONNECTION_ERRORS", "connection_lost", "translate_errors"]

CONNECTION_ERRORS: tuple[type[BaseException], ...] = (
    OSError,  # refused, reset, broken pipe, no route
    TimeoutError,  # connect timeout, `statement_timeout`'s client-side twin (command_timeout)
    asyncpg.InterfaceError,  # "connection is closed", "another operation is in progress"
    pg.InternalClientError,  # ProtocolError and "cannot switch to state N" on a half-dead one
    pg.PostgresConnectionError,  # SQLSTATE class 08
    pg.OperatorInterventionError,  # 57xxx: admin/crash shutdown, cannot connect now, cancel
    pg.InsufficientResourcesError,  # 53xxx: too many connections, out of memory, disk full
)
"""The error classes that may mean the connection or the server went away. Use
`connection_lost`, which also leaves out the subclasses that are the caller's mistake."""

_CALLERS_MISTAKES: tuple[type[BaseException], ...] = (
    pg.DataError,  # an argument of the wrong type
    pg.ClientConfigurationError,  # a bad connection parameter
    pg.UnsupportedClientFeatureError,
    pg.UnsupportedServerFeatureError,
)


def connection_lost(exc: BaseException) -> bool:
    """Whether `exc` means the database cannot be reached now (retry later), as opposed to
    a statement it refused (retrying the same call would fail the same way).

    A statement cancelled by `statement_timeout` (57014) counts: it is retried, never
    turned into a job's outcome. So does one the server rolled back to break a deadlock or a
    serialization failure (40xxx): the same statement may pass when run again.
    """
    if isinstance(exc, pg.TransactionRollbackError):  # 40xxx: a deadlock, a serialization
        return True  # failure: the server rolled the statement back; the same call may pass
    return isinstance(exc, CONNECTION_ERRORS) and not isinstance(exc, _CALLERS_MISTAKES)


@contextlib.contextmanager
def translate_errors(
    operation: str,
    *,
    unavailable: Callable[[str], PolyqueueError] = DatabaseUnavailableError,
    refused: Callable[[str], PolyqueueError] = StoreError,
) -> Iterator[None]:
    """Turn asyncpg errors into the Polyqueue tree, chaining the original: a lost connection
    becomes `unavailable(message)`, any other database error `refused(message)`."""
    try:
        yield
    except PolyqueueError:
        raise
    except Exception as exc:
        if connection_lost(exc):
            detail = str(exc) or type(exc).__name__
            raise unavailable(f"{operation}: database unavailable ({detail})") from exc
        if isinstance(exc, asyncpg.PostgresError | asyncpg.InterfaceError):
            raise refused(f"{operation}: {exc}") from exc
        raise
