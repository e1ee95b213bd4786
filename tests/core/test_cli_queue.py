"""`polyqueue queue list|pause|resume|limit`, run as the console script on a real database."""

from __future__ import annotations

import asyncio
import uuid

import pytest
from pydantic import BaseModel
from test_cli_admin import as_json, ok, run_cli

from polyqueue import JobStatus, Polyqueue


class Item(BaseModel):
    n: int


@pytest.fixture
def env(polyqueue_database_url: str) -> dict[str, str]:
    schema = f"cliq_{uuid.uuid4().hex[:10]}"
    return {"POLYQUEUE_DATABASE_URL": polyqueue_database_url, "POLYQUEUE_SCHEMA": schema}


def app_for(env: dict[str, str]) -> Polyqueue:
    app = Polyqueue(database_url=env["POLYQUEUE_DATABASE_URL"], schema_name=env["POLYQUEUE_SCHEMA"])

    @app.register("cliq.work", queue="mail", concurrency_limit=2, rate_limit="30/m")
    async def work(payload: Item) -> int:
        return payload.n

    return app


async def test_pause_list_limit_and_resume_from_the_command_line(env: dict[str, str]) -> None:
    app = app_for(env)
    async with app:
        await app.run_until_idle(queues=["mail"])  # a worker declares its handlers' limits
        ids = await app.enqueue_many("cliq.work", [Item(n=i) for i in range(3)])

        await asyncio.to_thread(ok, "queue", "pause", "mail", env=env)
        await asyncio.to_thread(ok, "queue", "limit", "mail", "--concurrency", "5", env=env)
        listed = await asyncio.to_thread(as_json, "queue", "list", env=env)
        assert await asyncio.to_thread(as_json, "inspect", "limits", env=env) == listed
        table = await asyncio.to_thread(ok, "queue", "list", env=env)

        assert listed["paused"][0]["queue"] == "mail"  # type: ignore[index]
        assert listed["paused"][0]["waiting"] == 3  # type: ignore[index]
        limits = {(x["scope"], x["name"]): x for x in listed["limits"]}  # type: ignore[index]
        assert limits[("queue", "mail")]["concurrency_limit"] == 5
        assert limits[("handler", "cliq.work")]["concurrency_limit"] == 2
        assert limits[("handler", "cliq.work")]["rate_limit"] == 30
        assert "Paused queues" in table
        assert "2 at once, 30/60s" in table

        await app.run_until_idle(queues=["mail"])
        assert {(await app.get_job(i)).status for i in ids} == {JobStatus.QUEUED}

        resumed = await asyncio.to_thread(ok, "queue", "resume", "mail", env=env)
        assert "3 waiting jobs" in resumed
        await asyncio.to_thread(ok, "queue", "limit", "mail", env=env)  # removes its limits
        await app.run_until_idle(queues=["mail"])
        assert {(await app.get_job(i)).status for i in ids} == {JobStatus.SUCCEEDED}
        after = await asyncio.to_thread(as_json, "queue", "list", env=env)
        assert after["paused"] == []  # type: ignore[index]
        assert [x["scope"] for x in after["limits"]] == ["handler"]  # type: ignore[index]


def test_a_bad_rate_is_a_usage_error_naming_it(env: dict[str, str]) -> None:
    result = run_cli("queue", "limit", "mail", "--rate", "lots", env=env)
    assert result.returncode == 2
    assert "rate_limit must look like '100/m'" in result.stderr
    assert "Traceback" not in result.stderr
