"""Settings from POLYQUEUE_* variables, and errors that name the variable."""

from __future__ import annotations

import pytest
from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

from polyqueue import ConfigurationError, Polyqueue, UnknownPluginError
from polyqueue import settings as settings_module
from polyqueue.redaction import redact_url
from polyqueue.settings import (
    PolyqueueSettings,
    describe_database_url,
    env_variable,
    load_settings,
    load_settings_model,
)


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


# -- the shared loader and redactor that core and plugins use ----------------------------------


class _Demo(BaseSettings):
    """A plugin-like settings model, read from `DEMO_*` variables."""

    model_config = SettingsConfigDict(env_prefix="DEMO_", extra="ignore", frozen=True)

    url: str = "demo://localhost"
    token: SecretStr | None = None
    dsn: str | None = None
    size: int = Field(default=1, ge=1)
    area: int = Field(default=1, validation_alias="DEMO_REGION")


def test_the_loader_names_the_variable_and_shows_the_value(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DEMO_SIZE", "zero")
    with pytest.raises(ConfigurationError) as caught:
        load_settings_model(_Demo, what="demo settings")
    assert str(caught.value) == (
        "invalid demo settings: DEMO_SIZE: Input should be a valid integer, unable to parse"
        " string as an integer (got 'zero')"
    )
    assert caught.value.__cause__ is None  # pydantic's own message would repeat every input
    assert caught.value.__suppress_context__


def test_the_loader_names_the_alias_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DEMO_REGION", "north")
    with pytest.raises(ConfigurationError, match=r"^invalid settings: DEMO_REGION: .*'north'\)$"):
        load_settings_model(_Demo)
    with pytest.raises(ConfigurationError, match=r"^invalid settings: DEMO_REGION: .*\(got 'x'\)$"):
        load_settings_model(_Demo, {"DEMO_REGION": "x"})  # pydantic takes the alias
    assert env_variable(_Demo, "area") == env_variable(_Demo, "DEMO_REGION") == "DEMO_REGION"
    assert env_variable(_Demo, "size") == "DEMO_SIZE"


def test_the_loader_never_shows_a_secret(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DEMO_TOKEN", "{not-a-string-but-hunter2}")
    monkeypatch.setenv("DEMO_DSN", "host=db password=hunter3")
    monkeypatch.setenv("DEMO_URL", "demo://me:hunter4@db/x?password=hunter5&sslmode=require")
    monkeypatch.setenv("DEMO_SIZE", "0")
    with pytest.raises(ConfigurationError) as caught:
        load_settings_model(
            _Demo,
            {"token": 12, "dsn": 13, "url": ["demo://me:hunter4@db/x"]},
            secret_fields=("dsn",),
        )
    message = str(caught.value)
    for variable in ("DEMO_TOKEN", "DEMO_DSN", "DEMO_URL", "DEMO_SIZE"):
        assert variable in message, message
    assert "hunter" not in message, message
    assert "(got '0')" in message


def test_a_shown_url_loses_its_password(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DEMO_SIZE", "postgresql://me:hunter2@db/x?password=hunter3&sslmode=on")
    with pytest.raises(ConfigurationError) as caught:
        load_settings_model(_Demo)
    assert "(got 'postgresql://me@db/x?sslmode=on')" in str(caught.value)
    assert "hunter" not in str(caught.value)


def test_a_secret_str_field_is_never_shown(monkeypatch: pytest.MonkeyPatch) -> None:
    class Keyed(BaseSettings):
        model_config = SettingsConfigDict(env_prefix="DEMO_")
        key: SecretStr = Field(min_length=40)

    monkeypatch.setenv("DEMO_KEY", "hunter2")
    with pytest.raises(
        ConfigurationError, match=r"^invalid settings: DEMO_KEY: Value should"
    ) as caught:
        load_settings_model(Keyed)
    assert "hunter2" not in str(caught.value)


def test_the_loader_refuses_an_unknown_override() -> None:
    with pytest.raises(
        ConfigurationError, match=r"^unknown setting\(s\): sise; known: area, dsn, "
    ):
        load_settings_model(_Demo, {"sise": 2})


def test_the_core_settings_use_the_shared_loader(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[tuple[object, ...]] = []

    def spy(model: type[BaseSettings], overrides: object, **options: object) -> BaseSettings:
        calls.append((model, overrides, options))
        return model()

    monkeypatch.setattr(settings_module, "load_settings_model", spy)
    load_settings(concurrency=3)
    assert calls == [(PolyqueueSettings, {"concurrency": 3}, {"secret_fields": ("database_url",)})]


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("redis://user:s3cret@h:1/0", "redis://user@h:1/0"),
        ("redis://:s3cret@h:1/0", "redis://h:1/0"),
        ("redis://h:1/0", "redis://h:1/0"),
        ("rediss://u:s3cret@[::1]:6380/2", "rediss://u@[::1]:6380/2"),
        ("unix:///run/redis.sock?db=1&password=s3cret", "unix:///run/redis.sock?db=1"),
        (
            "postgresql://a:1,b:2/x?PassWord=s3cret&sslmode=require",
            "postgresql://a:1,b:2/x?sslmode=require",
        ),
        ("postgresql://u:s3cret@db:notaport/x", "postgresql://u@db:notaport/x"),
        ("postgresql://u:s3cret@db:99999/x", "postgresql://u@db:99999/x"),
        ("postgresql://u:s3cret@db:5432/x", "postgresql://u@db:5432/x"),
        ("postgresql://u:s3cret@[::1/x", "postgresql://u@[::1/x"),
        ("postgresql://u:s3/cr?et@db/x", "postgresql://u@db/x"),
        ("https://h/q?X-Amz-Signature=s3cret&X-Amz-Security-Token=s3cret", "https://h/q"),
        ("u:s3cret@db", "u@db"),
        ("", ""),
    ],
)
def test_a_url_is_shown_without_any_password_and_never_raises(url: str, shown: str) -> None:
    assert redact_url(url) == shown
    assert describe_database_url is redact_url  # its former name, one redactor
