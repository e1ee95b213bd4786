"""docs/examples/flask_app.py: sync views enqueue, read and cancel through `queue.sync`."""

from __future__ import annotations

import importlib
from typing import Any

import pytest

from polyqueue import Polyqueue


@pytest.fixture
def example() -> Any:
    return importlib.import_module("flask_app")


@pytest.fixture
def polyqueue_target(example) -> Polyqueue:
    return example.queue


def test_a_view_enqueues_and_a_burst_runs_it(example, polyqueue_sync_app: Polyqueue) -> None:
    client = example.app.test_client()
    response = client.post("/reports", json={"customer_id": 7, "month": "2025-01"})
    assert response.status_code == 202
    job_id = response.get_json()["job_id"]
    assert client.get(f"/jobs/{job_id}").get_json()["status"] == "queued"

    polyqueue_sync_app.sync.run_until_idle()  # what a `polyqueue worker` process would do

    assert client.get(f"/jobs/{job_id}").get_json() == {
        "id": job_id,
        "status": "succeeded",
        "result": {"url": "/reports/7/2025-01.pdf"},
    }
    assert client.delete(f"/jobs/{job_id}").get_json() == {"cancelled": False}  # finished
    assert client.get("/jobs/999999999").status_code == 404


def test_a_view_cancels_a_queued_job(example, polyqueue_sync_app: Polyqueue) -> None:
    client = example.app.test_client()
    job_id = client.post("/reports", json={"customer_id": 1, "month": "x"}).get_json()["job_id"]
    assert client.delete(f"/jobs/{job_id}").get_json() == {"cancelled": True}
    polyqueue_sync_app.sync.run_until_idle()
    assert client.get(f"/jobs/{job_id}").get_json()["status"] == "cancelled"
