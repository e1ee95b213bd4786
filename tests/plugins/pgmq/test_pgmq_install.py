"""Installing PGMQ is explicit: a clear error when it is missing, `install` and the setting."""

from __future__ import annotations

import asyncio
import subprocess
import sys

import asyncpg
import pytest

from polyqueue import ConfigurationError, Polyqueue
from polyqueue.broker import BrokerEnvironment
from polyqueue.plugins import broker_classes, create_plugin_manager
from polyqueue_pgmq import PgmqBroker, install
from polyqueue_pgmq.install import packaged_version


async def pgmq_installed(url: str) -> bool:
    connection = await asyncpg.connect(url)
    try:
        return bool(await connection.fetchval("SELECT to_regclass('pgmq.meta') IS NOT NULL"))
    finally:
        await connection.close()


async def test_a_missing_pgmq_is_an_error_naming_the_setting(empty_database: str) -> None:
    with pytest.raises(ConfigurationError, match="POLYQUEUE_PGMQ_INSTALL=true") as caught:
        await PgmqBroker(empty_database).start()
    assert "PGMQ is not installed" in str(caught.value)
    assert not await pgmq_installed(empty_database)  # never installed silently


async def test_the_install_setting_installs_at_start(empty_database: str) -> None:
    async with PgmqBroker(empty_database, install=True):
        pass
    assert await pgmq_installed(empty_database)
    async with PgmqBroker(empty_database):  # installed now: no flag needed
        pass


async def test_install_runs_once_and_says_what_it_did(empty_database: str) -> None:
    connection = await asyncpg.connect(empty_database)
    try:
        assert await install(connection) == "sql"  # this server has no pgmq extension
        assert await install(connection) == "present"
        assert await connection.fetchval("SELECT count(*) FROM pgmq.list_queues()") == 0
    finally:
        await connection.close()
    assert packaged_version().count(".") == 2


async def test_concurrent_installs_do_not_collide(empty_database: str) -> None:
    async def one() -> str:
        connection = await asyncpg.connect(empty_database)
        try:
            return await install(connection)
        finally:
            await connection.close()

    results = await asyncio.gather(*(one() for _ in range(3)))
    assert sorted(results) == ["present", "present", "sql"]


def test_the_entry_point_registers_the_broker() -> None:
    assert broker_classes(create_plugin_manager())["pgmq"] is PgmqBroker


def test_hooks_import_neither_pgmq_nor_psycopg() -> None:
    code = (
        "import sys, polyqueue_pgmq.hooks; "
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('pgmq', 'psycopg')))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


# -- settings -------------------------------------------------------------------------------


def environment(url: str) -> BrokerEnvironment:
    app = Polyqueue(database_url=url, queue_backend="pgmq")
    return BrokerEnvironment(app.settings, url, "polyqueue")


def test_settings_come_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("POLYQUEUE_PGMQ_QUEUE_PREFIX", "app1_")
    monkeypatch.setenv("POLYQUEUE_PGMQ_VISIBILITY_TIMEOUT", "7.5")
    monkeypatch.setenv("POLYQUEUE_PGMQ_ARCHIVE", "true")
    broker = PgmqBroker.from_environment(environment("postgresql://u@h/jobs"))
    assert broker.lease_seconds == 7.5
    assert broker._prefix == "app1_"
    assert broker._archive is True
    assert broker.capabilities.transactional_publish is True


def test_pgmq_in_another_database_cannot_publish_in_the_jobs_transaction(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("POLYQUEUE_PGMQ_DATABASE_URL", "postgresql://u@h/elsewhere")
    broker = PgmqBroker.from_environment(environment("postgresql://u@h/jobs"))
    assert broker._url == "postgresql://u@h/elsewhere"
    assert broker.capabilities.transactional_publish is False
    assert PgmqBroker.capabilities.transactional_publish is True  # other instances unchanged


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("POLYQUEUE_PGMQ_QUEUE_PREFIX", "Bad-Prefix"),
        ("POLYQUEUE_PGMQ_DATABASE_URL", "mysql://nope"),
        ("POLYQUEUE_PGMQ_POLL_INTERVAL", "0"),
    ],
)
def test_bad_settings_name_their_variable(
    monkeypatch: pytest.MonkeyPatch, variable: str, value: str
) -> None:
    monkeypatch.setenv(variable, value)
    with pytest.raises(ConfigurationError, match=variable):
        PgmqBroker.from_environment(environment("postgresql://u@h/jobs"))
