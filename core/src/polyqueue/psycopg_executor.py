"""Run the store's SQL on a caller's psycopg 3 connection, so that `enqueue(connection=...)`
joins a Django or SQLAlchemy transaction as it joins an asyncpg one.

The store speaks asyncpg: `$1` placeholders and `execute/fetch/fetchrow/fetchval`. psycopg's
raw cursors take `$1` placeholders as they are (server-side binding), so the same SQL runs
unchanged; the executors here give a psycopg connection asyncpg's four methods. A sync
connection's calls run in a worker thread, so they never block the event loop.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from collections.abc import Callable

    import psycopg

__all__ = ["AsyncPsycopgExecutor", "PsycopgExecutor", "adapt_connection"]

Row = dict[str, Any]


def adapt_connection(connection: Any) -> Any:
    """`connection` as the store can use it: a psycopg 3 connection (sync or async) wrapped
    in an executor, anything else (an asyncpg connection, `None`) as it is."""
    if not type(connection).__module__.startswith("psycopg"):
        return connection
    import psycopg  # noqa: PLC0415  (an optional dependency: `polyqueue[psycopg]`)

    if isinstance(connection, psycopg.AsyncConnection):
        return AsyncPsycopgExecutor(connection)
    if isinstance(connection, psycopg.Connection):
        return PsycopgExecutor(connection)
    raise TypeError(
        f"connection= takes an asyncpg or psycopg 3 connection, not {type(connection).__name__}"
    )


class _Executor:
    """asyncpg's four query methods over `_run`, in the connection's current transaction."""

    async def _run(self, sql: str, args: tuple[Any, ...]) -> tuple[list[Row], str]:
        raise NotImplementedError

    async def execute(self, sql: str, *args: Any) -> str:
        """Run `sql`; return its status (`INSERT 0 1`, ...)."""
        return (await self._run(sql, args))[1]

    async def fetch(self, sql: str, *args: Any) -> list[Row]:
        """Every row of `sql`, each a dict by column name."""
        return (await self._run(sql, args))[0]

    async def fetchrow(self, sql: str, *args: Any) -> Row | None:
        """The first row of `sql`, or None."""
        rows = (await self._run(sql, args))[0]
        return rows[0] if rows else None

    async def fetchval(self, sql: str, *args: Any) -> Any:
        """The first column of the first row of `sql`, or None."""
        row = await self.fetchrow(sql, *args)
        return None if row is None else next(iter(row.values()))


class AsyncPsycopgExecutor(_Executor):
    """The store's executor on a `psycopg.AsyncConnection`."""

    def __init__(self, connection: psycopg.AsyncConnection[Any]) -> None:
        self.connection = connection

    async def _run(self, sql: str, args: tuple[Any, ...]) -> tuple[list[Row], str]:
        from psycopg import AsyncRawCursor  # noqa: PLC0415
        from psycopg.rows import dict_row  # noqa: PLC0415

        async with AsyncRawCursor(self.connection, row_factory=dict_row) as cursor:
            await cursor.execute(sql, args)
            rows = await cursor.fetchall() if cursor.description is not None else []
            return rows, cursor.statusmessage or ""


class PsycopgExecutor(_Executor):
    """The store's executor on a sync `psycopg.Connection`; each call runs in a thread."""

    def __init__(self, connection: psycopg.Connection[Any]) -> None:
        self.connection = connection

    async def _run(self, sql: str, args: tuple[Any, ...]) -> tuple[list[Row], str]:
        return await asyncio.to_thread(_run_blocking(self.connection), sql, args)


def _run_blocking(
    connection: psycopg.Connection[Any],
) -> Callable[[str, tuple[Any, ...]], tuple[list[Row], str]]:
    def run(sql: str, args: tuple[Any, ...]) -> tuple[list[Row], str]:
        from psycopg import RawCursor  # noqa: PLC0415
        from psycopg.rows import dict_row  # noqa: PLC0415

        with RawCursor(connection, row_factory=dict_row) as cursor:
            cursor.execute(sql, args)
            rows = cursor.fetchall() if cursor.description is not None else []
            return rows, cursor.statusmessage or ""

    return run
