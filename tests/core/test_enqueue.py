"""Enqueue against a real database: options, idempotency, transactions, and bad input."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import asyncpg
import pytest
from pydantic import BaseModel

from polyqueue import (
    HandlerNotFoundError,
    InvalidPayloadError,
    JobStatus,
    PayloadTooLargeError,
    Polyqueue,
)
from polyqueue.notices import encode_notice


class Resize(BaseModel):
    url: str
    width: int


def build(make_app, **settings) -> Polyqueue:
    app = make_app(**settings)

    @app.register("images.resize", queue="cpu", max_attempts=5)
    async def resize(payload: Resize) -> str:
        return payload.url

    return app


async def job_count(db: asyncpg.Connection) -> int:
    return await db.fetchval("SELECT count(*) FROM polyqueue.jobs")


@pytest.fixture(params=["postgres", "none"])
async def app(request, make_app):
    app = build(make_app, queue_backend=request.param)
    async with app:
        yield app


async def test_enqueue_stores_a_queued_job_with_its_options(app: Polyqueue) -> None:
    job_id = await app.enqueue("images.resize", Resize(url="u", width=3), priority=5)
    job = await app.get_job(job_id)
    assert job.status is JobStatus.QUEUED
    assert job.payload == {"url": "u", "width": 3}
    assert (job.queue, job.priority, job.max_attempts, job.attempt) == ("cpu", 5, 5, 0)


async def test_enqueue_by_function_with_a_dict_and_queue_override(app: Polyqueue) -> None:
    resize = next(h.function for h in app.handlers.values())
    job_id = await app.enqueue(resize, {"url": "u", "width": "7"}, queue="other")
    job = await app.get_job(job_id)
    assert job.payload == {"url": "u", "width": 7}  # validated and coerced by the model
    assert job.queue == "other"


async def test_delay_and_run_at_schedule_the_job(app: Polyqueue) -> None:
    delayed = await app.get_job(
        await app.enqueue("images.resize", {"url": "u", "width": 1}, delay=60)
    )
    later = datetime.now(UTC) + timedelta(hours=1)
    at = await app.get_job(
        await app.enqueue("images.resize", {"url": "u", "width": 1}, run_at=later)
    )
    assert delayed.status is at.status is JobStatus.SCHEDULED
    assert delayed.run_at > datetime.now(UTC) + timedelta(seconds=50)
    assert abs((at.run_at - later).total_seconds()) < 0.001


async def test_idempotency_key_returns_the_first_job(app: Polyqueue, db) -> None:
    first = await app.enqueue("images.resize", {"url": "a", "width": 1}, idempotency_key="img-42")
    second = await app.enqueue("images.resize", {"url": "b", "width": 2}, idempotency_key="img-42")
    assert first == second
    assert await job_count(db) == 1
    assert (await app.get_job(first)).payload["url"] == "a"


async def test_enqueue_many_returns_ids_in_order(app: Polyqueue) -> None:
    payloads = [Resize(url=f"u{i}", width=i) for i in range(50)]
    ids = await app.enqueue_many("images.resize", payloads)
    assert len(set(ids)) == 50
    jobs = [await app.get_job(i) for i in ids]
    assert [j.payload["url"] for j in jobs] == [f"u{i}" for i in range(50)]


async def test_enqueue_many_with_one_bad_payload_enqueues_nothing(app: Polyqueue, db) -> None:
    with pytest.raises(InvalidPayloadError, match=r"width"):
        await app.enqueue_many("images.resize", [{"url": "a", "width": 1}, {"url": "b"}])
    assert await job_count(db) == 0


async def test_committed_transaction_enqueues_and_rings(app: Polyqueue, db) -> None:
    async with app.store.pool.acquire() as connection, connection.transaction():
        job_id = await app.enqueue("images.resize", {"url": "t", "width": 1}, connection=connection)
    deliveries = await app.broker.receive(["cpu"], max_messages=10, wait_seconds=10)
    assert [d.body for d in deliveries] == [b'{"job_id":%d}' % job_id]


async def test_rolled_back_transaction_leaves_no_job_and_no_notice(app: Polyqueue, db) -> None:
    class Rollback(Exception):
        pass

    with pytest.raises(Rollback):
        async with app.store.pool.acquire() as connection, connection.transaction():
            await app.enqueue("images.resize", {"url": "t", "width": 1}, connection=connection)
            raise Rollback
    marker = await app.enqueue("images.resize", {"url": "after", "width": 1})
    deliveries = await app.broker.receive(["cpu"], max_messages=10, wait_seconds=10)
    # The only notice is the one enqueued after the rollback (they are published in order).
    assert [d.body for d in deliveries] == [b'{"job_id":%d}' % marker]
    assert await job_count(db) == 1


async def test_every_queued_job_rings_once_with_its_own_notice(app: Polyqueue) -> None:
    """One job, many jobs, a scheduled job and a taken key: one notice per job queued."""
    single = await app.enqueue("images.resize", {"url": "a", "width": 1}, priority=3)
    many = await app.enqueue_many("images.resize", [{"url": "b", "width": 2}] * 3)
    await app.enqueue("images.resize", {"url": "c", "width": 3}, delay=60)
    keyed = await app.enqueue("images.resize", {"url": "d", "width": 4}, idempotency_key="k")
    await app.enqueue("images.resize", {"url": "e", "width": 5}, idempotency_key="k")
    deliveries = await app.broker.receive(["cpu"], max_messages=100, wait_seconds=10)
    expected = {encode_notice(job_id) for job_id in [single, *many, keyed]}
    assert sorted(d.body for d in deliveries) == sorted(expected)
    assert deliveries[0].body == encode_notice(single)  # priority 3 comes first
    assert await app.broker.receive(["cpu"], max_messages=100, wait_seconds=0) == []


# -- bad input ----------------------------------------------------------------------------


async def test_unknown_handler_is_refused_by_name(app: Polyqueue, db) -> None:
    with pytest.raises(HandlerNotFoundError, match=r"'images.crop'.*images.resize"):
        await app.enqueue("images.crop", {"url": "u", "width": 1})
    assert await job_count(db) == 0


async def test_unregistered_function_is_refused(app: Polyqueue) -> None:
    async def stray(payload: Resize) -> None: ...

    with pytest.raises(HandlerNotFoundError, match="stray"):
        await app.enqueue(stray, {"url": "u", "width": 1})


@pytest.mark.parametrize(
    ("payload", "field"),
    [({"url": "u"}, "width"), ({"url": "u", "width": "wide"}, "width"), ({"width": 1}, "url")],
)
async def test_invalid_payload_names_the_field_and_writes_nothing(app, db, payload, field) -> None:
    with pytest.raises(InvalidPayloadError, match=rf"images.resize.*{field}"):
        await app.enqueue("images.resize", payload)
    assert await job_count(db) == 0


async def test_payload_that_is_not_a_model_or_dict_is_refused(app: Polyqueue) -> None:
    with pytest.raises(InvalidPayloadError, match="list"):
        await app.enqueue("images.resize", ["u", 1])  # type: ignore[arg-type]


async def test_oversized_payload_is_refused_with_the_limit(make_app, db) -> None:
    app = build(make_app, max_payload_bytes=100)
    async with app:
        with pytest.raises(PayloadTooLargeError, match=r"over the limit of 100 bytes"):
            await app.enqueue("images.resize", {"url": "x" * 200, "width": 1})
        assert await job_count(db) == 0
        await app.enqueue("images.resize", {"url": "x" * 10, "width": 1})
        assert await job_count(db) == 1


async def test_delay_and_run_at_together_are_refused(app: Polyqueue) -> None:
    with pytest.raises(ValueError, match="either delay or run_at"):
        await app.enqueue(
            "images.resize", {"url": "u", "width": 1}, delay=1, run_at=datetime.now(UTC)
        )


async def test_naive_run_at_is_refused(app: Polyqueue) -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        await app.enqueue("images.resize", {"url": "u", "width": 1}, run_at=datetime(2030, 1, 1))  # noqa: DTZ001
