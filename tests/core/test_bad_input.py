"""Bad input, found by trying: each is refused with a Polyqueue error naming the problem, and
nothing is stored half-right."""

from __future__ import annotations

import math
from typing import Any

import asyncpg
import pluggy
import pytest
from pydantic import BaseModel

from polyqueue import (
    ConfigurationError,
    InvalidPayloadError,
    JobStatus,
    Polyqueue,
    SerializationError,
    UnknownPluginError,
    builtins,
    hookspecs,
)
from polyqueue.plugins import select_broker
from polyqueue.serializers import JsonSerializer
from polyqueue.settings import load_settings


class Anything(BaseModel):
    value: Any = None
    ratio: float = 0.0


class Opaque:
    """An object pydantic does not know how to encode."""


def build(make_app, **settings: Any) -> Polyqueue:
    app = make_app(**settings)

    @app.register("bad.echo")
    async def echo(payload: Anything) -> Any:
        return payload.value

    return app


@pytest.fixture
async def app(make_app) -> Polyqueue:
    app = build(make_app)
    async with app:
        yield app


async def job_count(db: asyncpg.Connection) -> int:
    return await db.fetchval("SELECT count(*) FROM polyqueue.jobs")


# -- headers ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("headers", "message"),
    [
        ({"a": 1}, "headers must map str to str: 'a' maps to a int"),
        ({1: "a"}, "the key 1 is a int"),
        ({"a": None}, "'a' maps to a NoneType"),
        (["a"], "headers must be a mapping of str to str, not list"),
        ({"a": "x\x00y"}, "headers contains a NUL character"),
    ],
)
async def test_headers_that_are_not_strings_are_refused_at_enqueue(
    app: Polyqueue, db: asyncpg.Connection, headers: Any, message: str
) -> None:
    with pytest.raises((InvalidPayloadError, SerializationError), match=message):
        await app.enqueue("bad.echo", {"value": 1}, headers=headers)
    with pytest.raises((InvalidPayloadError, SerializationError), match=message):
        await app.enqueue_many("bad.echo", [{"value": 1}], headers=headers)
    assert await job_count(db) == 0


async def test_string_headers_are_stored_and_read_back(app: Polyqueue) -> None:
    job_id = await app.enqueue("bad.echo", {"value": 1}, headers={"tenant": "acme"})
    assert (await app.get_job(job_id)).headers == {"tenant": "acme"}


# -- payloads that JSON cannot hold -----------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "message"),
    [
        (b"\xff\xfe", "cannot be encoded as JSON: .*invalid utf-8"),
        (Opaque(), "cannot be encoded as JSON: .*Opaque"),
        ("a\x00b", "contains a NUL character"),
        (float("nan"), r"contains nan at value"),
        ({"deep": [1.0, float("inf")]}, r"contains inf at value\.deep\[1\]"),
    ],
)
async def test_a_payload_json_cannot_hold_is_a_serialization_error(
    app: Polyqueue, db: asyncpg.Connection, value: Any, message: str
) -> None:
    with pytest.raises(SerializationError, match=f"payload for 'bad.echo' {message}|{message}"):
        await app.enqueue("bad.echo", {"value": value})
    assert await job_count(db) == 0


async def test_nan_in_a_float_field_is_refused_not_stored_as_null(
    app: Polyqueue, db: asyncpg.Connection
) -> None:
    with pytest.raises(SerializationError, match="contains nan at ratio"):
        await app.enqueue("bad.echo", Anything(ratio=math.nan))
    assert await job_count(db) == 0


async def test_a_payload_with_null_and_finite_numbers_is_stored_as_is(app: Polyqueue) -> None:
    job_id = await app.enqueue("bad.echo", {"value": {"a": None, "b": 1.5}, "ratio": 2.0})
    assert (await app.get_job(job_id)).payload == {"value": {"a": None, "b": 1.5}, "ratio": 2.0}


def test_a_result_model_holding_nan_is_refused_by_the_serializer() -> None:
    with pytest.raises(SerializationError, match="contains nan at ratio"):
        JsonSerializer().dumps(Anything(ratio=math.nan))
    assert JsonSerializer().dumps(Anything()) == '{"value":null,"ratio":0.0}'


async def test_a_job_returning_nan_fails_at_once_with_the_reason(make_app) -> None:
    app = make_app()

    @app.register("bad.nan", max_attempts=3)
    async def nan(payload: Anything) -> Anything:
        return Anything(ratio=math.nan)

    async with app:
        job_id = await app.enqueue("bad.nan", {})
        await app.run_until_idle()
        job = await app.get_job(job_id)
    assert job.status is JobStatus.FAILED
    assert job.attempt == 1  # not retried: the same value would fail the same way
    assert job.error is not None
    assert job.error.type == "SerializationError"
    assert "contains nan at ratio" in job.error.message


# -- max_attempts -----------------------------------------------------------------------------


@pytest.mark.parametrize("value", [0, -1, True, 1.5])
async def test_max_attempts_below_one_is_refused_at_enqueue(
    app: Polyqueue, db: asyncpg.Connection, value: Any
) -> None:
    with pytest.raises(InvalidPayloadError, match="max_attempts must be a whole number"):
        await app.enqueue("bad.echo", {"value": 1}, max_attempts=value)
    assert await job_count(db) == 0


async def test_max_attempts_one_is_kept(app: Polyqueue) -> None:
    job_id = await app.enqueue("bad.echo", {"value": 1}, max_attempts=1)
    assert (await app.get_job(job_id)).max_attempts == 1


def test_max_attempts_zero_is_refused_at_registration() -> None:
    app = Polyqueue(database_url="postgresql://localhost/x")
    with pytest.raises(ConfigurationError, match="max_attempts must be at least 1"):
        app.register("zero", max_attempts=0)(_echo)
    with pytest.raises(ConfigurationError, match="max_run_seconds must be positive"):
        app.register("instant", max_run_seconds=0)(_echo)


async def _echo(payload: Anything) -> None:
    return None


# -- database URLs ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("postgresql://u:pw@db:notaport/x", "port 'notaport' is not a number from 1 to 65535"),
        ("postgresql://u:pw@db:99999/x", "port '99999' is not a number from 1 to 65535"),
        ("postgresql://u:pw@[::1/x", "is not a valid URL"),
        ("postgresql://u:pw@[::1]x/x", "after the IPv6 host"),
        ("postgresql://u:pw@a:1,b:x/x", "port 'x'"),
        ("mysql://u:pw@db/x", "must be a postgresql:// URL"),
    ],
)
def test_a_bad_database_url_is_one_clear_error_without_the_password(
    monkeypatch: pytest.MonkeyPatch, url: str, message: str
) -> None:
    monkeypatch.setenv("POLYQUEUE_DATABASE_URL", url)
    with pytest.raises(ConfigurationError) as caught:
        Polyqueue()
    assert str(caught.value).startswith("invalid settings: POLYQUEUE_DATABASE_URL: ")
    assert message in str(caught.value)
    assert "pw" not in str(caught.value)


@pytest.mark.parametrize(
    "url",
    [
        "postgresql://db:5432/x",
        "postgresql://[::1]:5432/x",
        "postgresql://a:5432,b:5433/x",
        "postgresql:///x?host=/var/run/postgresql",
        "postgres://u:p%40ss@db/x",
    ],
)
def test_good_database_urls_are_accepted(url: str) -> None:
    assert load_settings(database_url=url).database_url == url


# Showing a URL without its password: tests/core/test_settings.py tests `redact_url`.


# -- brokers ----------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["redis", "sqs", "azure", "pgmq"])
def test_a_known_plugin_that_is_not_installed_says_what_to_install(name: str) -> None:
    manager = pluggy.PluginManager(hookspecs.PROJECT)  # the built-ins only: no entry points
    manager.add_hookspecs(hookspecs)
    manager.register(builtins)
    with pytest.raises(UnknownPluginError) as caught:
        select_broker(manager, name)
    assert f"`pip install 'polyqueue[{name}]'`" in str(caught.value)
    assert "available: none, postgres;" in str(caught.value)


def test_an_unknown_broker_lists_the_available_ones_without_a_hint() -> None:
    with pytest.raises(UnknownPluginError) as caught:
        Polyqueue(database_url="postgresql://localhost/x", queue_backend="kafka")
    assert "unknown broker (POLYQUEUE_QUEUE_BACKEND) 'kafka'; available: " in str(caught.value)
    assert "pip install" not in str(caught.value)


async def test_a_job_still_runs_after_the_refusals(app: Polyqueue) -> None:
    job_id = await app.enqueue("bad.echo", {"value": [1, None]})
    await app.run_until_idle()
    job = await app.get_job(job_id)
    assert job.status is JobStatus.SUCCEEDED
    assert job.result == [1, None]
