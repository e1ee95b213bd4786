"""How Polyqueue connects: one classification of connection errors, statement timeouts, TCP
keepalives, and a LISTEN connection that comes back after anything."""

from __future__ import annotations

import asyncio
import socket
from typing import TYPE_CHECKING

import asyncpg
import pytest
from asyncpg import exceptions as pg

from polyqueue import BrokerUnavailableError, DatabaseUnavailableError, StoreError
from polyqueue.listener import Listener
from polyqueue.pgconnect import ConnectionOptions
from polyqueue.store.errors import connection_lost, translate_errors
from polyqueue.testing.helpers import eventually
from polyqueue.testing.proxy import FaultProxy

if TYPE_CHECKING:
    from polyqueue import Polyqueue


@pytest.mark.parametrize(
    "error",
    [
        pg.InternalClientError("cannot switch to state 12; another operation (2) is in progress"),
        pg.ProtocolError("unexpected message"),
        pg.InterfaceError("connection is closed"),
        pg.ConnectionDoesNotExistError("connection was closed in the middle of operation"),
        pg.AdminShutdownError("terminating connection due to administrator command"),
        pg.CrashShutdownError("terminating connection because of crash of another process"),
        pg.CannotConnectNowError("the database system is starting up"),
        pg.QueryCanceledError("canceling statement due to statement timeout"),
        pg.TooManyConnectionsError("sorry, too many clients already"),
        pg.ConnectionFailureError("connection failure"),
        ConnectionResetError(104, "Connection reset by peer"),
        TimeoutError(),
    ],
    ids=lambda error: type(error).__name__,
)
def test_every_way_a_connection_dies_is_database_unavailable(error: Exception) -> None:
    assert connection_lost(error)
    expected = pytest.raises(DatabaseUnavailableError, match="claim: database unavailable")
    with expected as raised, translate_errors("claim"):
        raise error
    assert raised.value.__cause__ is error


@pytest.mark.parametrize(
    "error",
    [
        pg.DataError("invalid input for query argument $1"),
        pg.UniqueViolationError("duplicate key"),
        pg.UndefinedTableError("relation does not exist"),
        pg.ClientConfigurationError("bad parameter"),
    ],
    ids=lambda error: type(error).__name__,
)
def test_a_refused_statement_is_a_store_error_not_an_outage(error: Exception) -> None:
    assert not connection_lost(error)
    with pytest.raises(StoreError) as raised, translate_errors("claim"):
        raise error
    assert not isinstance(raised.value, DatabaseUnavailableError)


def test_brokers_translate_with_their_own_errors() -> None:
    with (
        pytest.raises(BrokerUnavailableError),
        translate_errors("pgmq", unavailable=lambda m: BrokerUnavailableError(m, broker="pgmq")),
    ):
        raise pg.InternalClientError("cannot switch to state 12")


def test_other_exceptions_pass_through_untouched() -> None:
    with pytest.raises(KeyError), translate_errors("claim"):
        raise KeyError("not a database error")


async def test_pooled_connections_have_keepalives_and_the_statement_timeout(
    make_app, clean_database: str
) -> None:
    app: Polyqueue = make_app(statement_timeout=7.5, tcp_keepalive_seconds=9)
    await app.start()
    async with app.store.pool.acquire() as connection:
        timeout = await connection.fetchval("SHOW statement_timeout")
        assert timeout == "7500ms"
        assert await connection.fetchval("SHOW tcp_keepalives_idle") == "9"
        sock = connection._transport.get_extra_info("socket")
        assert sock.getsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE) == 1
        assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPIDLE) == 9
        assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_USER_TIMEOUT) > 0
    async with app.store.migration_connection() as unlimited:
        assert await unlimited.fetchval("SHOW statement_timeout") == "0"


async def test_only_claims_commit_without_waiting_for_the_disk(
    make_app, clean_database: str
) -> None:
    """The claims' pools (the store's claim pool, the built-in broker's pool) commit with
    `synchronous_commit = off`; every other write (enqueue, outcome) keeps the server's own
    setting (on by default; the test server may run without it)."""
    app: Polyqueue = make_app(queue_backend="postgres")
    setting = "SELECT setting, source FROM pg_settings WHERE name = 'synchronous_commit'"
    async with app:
        async with app.store.pool.acquire() as connection:
            assert (await connection.fetchrow(setting))["source"] != "client"
        claim_pools = [app.store.claim_pool, app.runtime.broker._require_pool()]  # type: ignore[attr-defined]
        for pool in claim_pools:
            async with pool.acquire() as connection:
                assert tuple(await connection.fetchrow(setting)) == ("off", "client")


async def test_a_statement_past_the_timeout_is_retried_as_unavailable(make_app) -> None:
    app: Polyqueue = make_app(statement_timeout=0.2)
    async with app:
        expected = pytest.raises(DatabaseUnavailableError, match="statement timeout")
        with expected, translate_errors("slow"):
            await app.store.pool.execute("SELECT pg_sleep(5)")


def _port(url: str) -> int:
    return int(url.rsplit(":", 1)[1].split("/", 1)[0])


async def test_listen_comes_back_after_a_reset_and_after_unexpected_errors(
    clean_database: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    received: list[str] = []
    reconnected = asyncio.Event()
    async with FaultProxy(_port(clean_database)) as proxy:
        listener = Listener(
            proxy.url_for(clean_database),
            ["pq_test_channel"],
            lambda _channel, payload: received.append(payload),
            reconnected.set,
            check_interval=0.1,
        )
        await listener.start()
        sender = await asyncpg.connect(clean_database)
        try:
            await sender.execute("NOTIFY pq_test_channel, 'one'")
            await eventually(lambda: received == ["one"], timeout=30)

            failures = 0
            connect = ConnectionOptions.connect

            async def flaky(self: ConnectionOptions, url: str) -> asyncpg.Connection:
                nonlocal failures
                if failures < 2:
                    failures += 1
                    raise RuntimeError("a surprise while reconnecting")
                return await connect(self, url)

            monkeypatch.setattr(ConnectionOptions, "connect", flaky)
            proxy.reset()
            await asyncio.wait_for(reconnected.wait(), timeout=30)
            assert failures == 2
            await sender.execute("NOTIFY pq_test_channel, 'two'")
            await eventually(lambda: received == ["one", "two"], timeout=30)
        finally:
            await sender.close()
            await listener.close()


async def test_a_delaying_proxy_passes_every_byte_in_order(clean_database: str) -> None:
    """A `FaultProxy` with a delay (the bench's slow link) keeps a connection's traffic whole:
    many statements and a large reply, split into many chunks, come back right and in order."""
    async with FaultProxy(_port(clean_database), delay=0.001) as proxy:
        connection = await asyncpg.connect(proxy.url_for(clean_database))
        try:
            values = [await connection.fetchval("SELECT $1::int", n) for n in range(50)]
            big = await connection.fetchval("SELECT repeat('x', 500000)")
        finally:
            await connection.close()
    assert values == list(range(50))
    assert big == "x" * 500_000


def test_a_proxy_delay_below_zero_is_refused() -> None:
    with pytest.raises(ValueError, match="proxy delay must be >= 0 seconds"):
        FaultProxy(5432, delay=-1)
