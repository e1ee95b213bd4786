"""docs/examples/django_site.py: enqueue in a view inside `transaction.atomic()`."""

from __future__ import annotations

import importlib
from collections.abc import Iterator
from typing import Any

import pytest
from django.db import connection
from django.test import Client

from polyqueue import Polyqueue


@pytest.fixture(scope="module")
def site(polyqueue_database_url: str) -> Iterator[Any]:
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("POLYQUEUE_DATABASE_URL", polyqueue_database_url)  # read by Django's settings
        module = importlib.import_module("django_site")
        module.create_tables()
        yield module
    connection.close()


@pytest.fixture
def polyqueue_target(site) -> Polyqueue:
    return site.queue


@pytest.fixture
def client(site, polyqueue_sync_app: Polyqueue) -> Any:
    with connection.cursor() as cursor:
        cursor.execute("TRUNCATE signups")
    return Client()


def counts(site) -> tuple[int, int]:
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT (SELECT count(*) FROM signups), (SELECT count(*) FROM polyqueue.jobs)"
        )
        return cursor.fetchone()


def test_a_committed_signup_has_its_job_and_a_worker_runs_it(
    site, client, polyqueue_sync_app: Polyqueue
) -> None:
    response = client.post("/signup", {"email": "ada@example.com"})
    assert response.status_code == 201
    job_id = response.json()["job_id"]
    assert counts(site) == (1, 1)
    polyqueue_sync_app.sync.run_until_idle()
    assert polyqueue_sync_app.sync.get_job_result(job_id) == "welcome mail to ada@example.com"


def test_a_rolled_back_atomic_block_leaves_neither_row_nor_job(
    site, client, polyqueue_sync_app: Polyqueue
) -> None:
    response = client.post("/signup", {"email": "bob@example.com", "dry_run": "1"})
    assert response.json()["dry_run"] is True
    assert counts(site) == (0, 0)
    polyqueue_sync_app.sync.run_until_idle()  # and no notice of a job that never was
    assert counts(site) == (0, 0)


def test_a_failing_signup_enqueues_nothing(site, client) -> None:
    assert client.post("/signup", {"email": "eve@example.com"}).status_code == 201
    assert client.post("/signup", {"email": "eve@example.com"}).status_code == 409
    assert counts(site) == (1, 1)
