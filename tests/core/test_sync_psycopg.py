"""`enqueue(connection=...)` with psycopg 3 connections (Django's, SQLAlchemy's): the job
exists if and only if the caller's transaction commits, with every broker path."""

from __future__ import annotations

from collections.abc import Iterator

import psycopg
import pytest
from pydantic import BaseModel

from polyqueue import JobNotFoundError, JobStatus, Polyqueue


class Note(BaseModel):
    text: str


def build(url: str, backend: str) -> Polyqueue:
    app = Polyqueue(database_url=url, queue_backend=backend, scheduler_interval=0.1)

    @app.register("notes.write")
    async def write(payload: Note) -> str:
        return payload.text.upper()

    return app


def job_count(conn: psycopg.Connection) -> int:
    with psycopg.connect(conn.info.dsn) as other:
        row = other.execute("SELECT count(*) FROM polyqueue.jobs").fetchone()
    assert row is not None
    return int(row[0])


@pytest.fixture(params=["postgres", "none"])
def app(request, clean_database: str) -> Iterator[Polyqueue]:
    app = build(clean_database, request.param)
    yield app
    app.sync.close()


@pytest.fixture
def conn(clean_database: str) -> Iterator[psycopg.Connection]:
    with psycopg.connect(clean_database) as conn:  # not autocommit, as Django in atomic()
        yield conn


def test_a_rolled_back_transaction_leaves_no_job(app: Polyqueue, conn: psycopg.Connection) -> None:
    conn.execute("CREATE TEMP TABLE notes (text text)")
    conn.execute("INSERT INTO notes VALUES ('kept?')")
    job_id = app.sync.enqueue("notes.write", Note(text="x"), connection=conn)
    assert job_id > 0
    assert job_count(conn) == 0  # not committed yet: nobody else sees it
    conn.rollback()
    assert job_count(conn) == 0
    app.sync.run_until_idle()  # nothing to run, and no notice of a job that never was
    assert job_count(conn) == 0


def test_a_committed_transaction_queues_the_job_and_a_worker_runs_it(
    app: Polyqueue, conn: psycopg.Connection
) -> None:
    with conn.transaction():
        job_id = app.sync.enqueue("notes.write", Note(text="hello"), connection=conn)
        (other,) = app.sync.enqueue_many("notes.write", [Note(text="b")], connection=conn)
    assert app.sync.get_job(job_id).status is JobStatus.QUEUED
    app.sync.run_until_idle()
    assert app.sync.get_job_result(job_id) == "HELLO"
    assert app.sync.get_job_result(other) == "B"


def test_idempotency_key_inside_the_callers_transaction(
    app: Polyqueue, conn: psycopg.Connection
) -> None:
    with conn.transaction():
        first = app.sync.enqueue(
            "notes.write", Note(text="a"), idempotency_key="k", connection=conn
        )
        again = app.sync.enqueue(
            "notes.write", Note(text="a"), idempotency_key="k", connection=conn
        )
    assert first == again
    assert job_count(conn) == 1


@pytest.mark.parametrize("backend", ["postgres", "none"])
async def test_async_psycopg_connection_with_await_enqueue(
    backend: str, clean_database: str
) -> None:
    app = build(clean_database, backend)
    async with app, await psycopg.AsyncConnection.connect(clean_database) as aconn:
        async with aconn.transaction():
            rolled_back = await app.enqueue("notes.write", Note(text="no"), connection=aconn)
            raise psycopg.Rollback  # leaves the block, rolling the transaction back
        async with aconn.transaction():
            job_id = await app.enqueue("notes.write", Note(text="yes"), connection=aconn)
        await app.run_until_idle()
        assert (await app.get_job(job_id)).status is JobStatus.SUCCEEDED
        with pytest.raises(JobNotFoundError):
            await app.get_job(rolled_back)


def test_other_connection_objects_are_refused(app: Polyqueue, conn: psycopg.Connection) -> None:
    with conn.cursor() as cursor, pytest.raises(TypeError, match="psycopg 3 connection"):
        app.sync.enqueue("notes.write", Note(text="x"), connection=cursor)
