"""docs/examples/fastapi_app.py: lifespan, enqueue from endpoints, a worker beside the server."""

from __future__ import annotations

import importlib
from typing import Any

import httpx
import pytest

from polyqueue import Polyqueue


@pytest.fixture
def example() -> Any:
    return importlib.import_module("fastapi_app")


@pytest.fixture
def polyqueue_target(example) -> Polyqueue:
    return example.queue


async def test_an_endpoint_enqueues_and_the_worker_beside_the_server_runs_it(
    example, polyqueue_target: Polyqueue, polyqueue_test_settings: dict[str, Any]
) -> None:
    polyqueue_target.configure(**polyqueue_test_settings)  # the module is imported already
    transport = httpx.ASGITransport(app=example.api)
    async with (
        example.lifespan(example.api),  # what the server runs: the app and a worker start
        httpx.AsyncClient(transport=transport, base_url="http://api") as client,
    ):
        response = await client.post("/thumbnails", json={"url": "https://x/cat.png", "width": 64})
        assert response.status_code == 202
        job_id = response.json()["job_id"]
        status = (await client.get(f"/jobs/{job_id}", params={"wait": 30})).json()
        assert status == {
            "id": job_id,
            "status": "succeeded",
            "result": {"path": "/thumbs/64/cat.png"},
        }

        sync = await client.post("/thumbnails/sync", json={"url": "https://x/dog.png", "width": 8})
        sync_id = sync.json()["job_id"]
        waited = await client.get(f"/jobs/{sync_id}", params={"wait": 30})
        assert waited.json()["status"] == "succeeded"
        assert (await client.get("/jobs/999999999")).status_code == 404
    assert polyqueue_target.loop is None  # the lifespan closed it


async def test_the_handlers_in_a_users_async_test(polyqueue_app: Polyqueue) -> None:
    """docs/testing.md: the app of the example, started by `polyqueue_app` in this loop."""
    example = importlib.import_module("fastapi_app")
    assert polyqueue_app is example.queue
    job_id = await polyqueue_app.enqueue("thumbnails.make", {"url": "u/a.png", "width": 3})
    await polyqueue_app.run_until_idle()
    result = await polyqueue_app.get_job_result_typed(job_id, example.Thumbnailed)
    assert result.path == "/thumbs/3/a.png"
