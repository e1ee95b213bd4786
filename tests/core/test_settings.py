"""Settings from POLYQUEUE_* variables, and errors that name the variable."""

from __future__ import annotations

import pytest

from polyqueue import ConfigurationError, Polyqueue, UnknownPluginError
from polyqueue.settings import load_settings


def test_settings_come_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("POLYQUEUE_DATABASE_URL", "postgresql://db.example/jobs")
    monkeypatch.setenv("POLYQUEUE_QUEUE_BACKEND", "none")
    monkeypatch.setenv("POLYQUEUE_SCHEMA", "jobs_v2")
    monkeypatch.setenv("POLYQUEUE_CONCURRENCY", "32")
    settings = load_settings()
    assert settings.database_url == "postgresql://db.example/jobs"
    assert settings.queue_backend == "none"
    assert settings.schema_name == "jobs_v2"
    assert settings.concurrency == 32


def test_keyword_overrides_win_over_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("POLYQUEUE_CONCURRENCY", "32")
    assert load_settings(concurrency=4).concurrency == 4


@pytest.mark.parametrize(
    ("variable", "value", "message"),
    [
        ("POLYQUEUE_CONCURRENCY", "many", "POLYQUEUE_CONCURRENCY: Input should be a valid integer"),
        (
            "POLYQUEUE_CONCURRENCY",
            "0",
            "POLYQUEUE_CONCURRENCY: Input should be greater than or equal to 1",
        ),
        ("POLYQUEUE_SCHEMA", "Robert'); DROP", "POLYQUEUE_SCHEMA: Value error"),
        (
            "POLYQUEUE_DATABASE_URL",
            "mysql://x",
            "POLYQUEUE_DATABASE_URL: Value error, must be a postgresql://",
        ),
        ("POLYQUEUE_DEFAULT_TIMEOUT_STRATEGY", "panic", "POLYQUEUE_DEFAULT_TIMEOUT_STRATEGY"),
        ("POLYQUEUE_MAX_PAYLOAD_BYTES", "-1", "POLYQUEUE_MAX_PAYLOAD_BYTES"),
    ],
)
def test_a_bad_variable_is_named_in_the_error(
    monkeypatch: pytest.MonkeyPatch, variable: str, value: str, message: str
) -> None:
    monkeypatch.setenv(variable, value)
    with pytest.raises(ConfigurationError) as caught:
        Polyqueue()
    assert message in str(caught.value)


def test_a_bad_database_url_is_not_echoed(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("POLYQUEUE_DATABASE_URL", "mysql://user:hunter2@db/x")
    with pytest.raises(ConfigurationError) as caught:
        Polyqueue()
    assert "POLYQUEUE_DATABASE_URL" in str(caught.value)
    assert "hunter2" not in str(caught.value)


def test_an_unknown_backend_lists_the_available_ones(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("POLYQUEUE_QUEUE_BACKEND", "rabbit")
    with pytest.raises(
        UnknownPluginError, match=r"POLYQUEUE_QUEUE_BACKEND.*'rabbit'; available: "
    ) as caught:
        Polyqueue()
    assert {"none", "postgres"} <= set(caught.value.available)


def test_the_schema_variable_is_named_once(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("POLYQUEUE_SCHEMA", "Bad Name")
    with pytest.raises(ConfigurationError, match=r"^invalid settings: POLYQUEUE_SCHEMA: "):
        load_settings()


def test_an_unprefixed_variable_is_not_read(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SCHEMA_NAME", "evil")
    monkeypatch.setenv("CONCURRENCY", "99")
    settings = load_settings()
    assert (settings.schema_name, settings.concurrency) == ("polyqueue", 10)


def test_a_misspelt_keyword_is_refused() -> None:
    with pytest.raises(ConfigurationError, match=r"unknown setting\(s\): databse_url"):
        Polyqueue(databse_url="postgresql://localhost/x")


@pytest.mark.parametrize(
    ("settings", "names"),
    [
        (
            {"worker_stale_after": 4, "heartbeat_interval": 5},
            ["POLYQUEUE_WORKER_STALE_AFTER (4)", "POLYQUEUE_HEARTBEAT_INTERVAL (5)"],
        ),
        (
            {"worker_stale_after": 5, "heartbeat_interval": 5},
            ["POLYQUEUE_WORKER_STALE_AFTER (5)", "POLYQUEUE_HEARTBEAT_INTERVAL (5)"],
        ),
        (
            {"lease_seconds": 3, "heartbeat_interval": 5, "worker_stale_after": 30},
            ["POLYQUEUE_LEASE_SECONDS (3)", "POLYQUEUE_HEARTBEAT_INTERVAL (5)"],
        ),
    ],
)
def test_settings_that_contradict_each_other_are_refused_naming_both(
    settings: dict[str, float], names: list[str]
) -> None:
    with pytest.raises(ConfigurationError) as raised:
        load_settings(**settings)
    message = str(raised.value)
    assert all(name in message for name in names), message
    assert "must be greater than" in message


def test_contradicting_environment_variables_are_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("POLYQUEUE_DATABASE_URL", "postgresql://user:hunter2@db.example/jobs")
    monkeypatch.setenv("POLYQUEUE_HEARTBEAT_INTERVAL", "5")
    monkeypatch.setenv("POLYQUEUE_WORKER_STALE_AFTER", "4")
    with pytest.raises(ConfigurationError, match="POLYQUEUE_WORKER_STALE_AFTER") as raised:
        Polyqueue()
    assert "hunter2" not in str(raised.value)


def test_timeouts_and_keepalives_have_sane_defaults() -> None:
    settings = load_settings()
    assert settings.statement_timeout == 30.0
    assert settings.tcp_keepalive_seconds == 10.0
    assert settings.worker_stale_after > settings.heartbeat_interval
    assert load_settings(statement_timeout=None).statement_timeout is None
