"""The app on the `pgmq` broker: jobs run, and enqueue publishes inside its transaction."""

from __future__ import annotations

import asyncio

import asyncpg
import pytest
from pgmq_support import count_messages, running_worker
from pydantic import BaseModel

from polyqueue import JobStatus, Polyqueue
from polyqueue.exceptions import BrokerError
from polyqueue.notices import decode_notice


class Item(BaseModel):
    n: int


class Boom(Exception):
    pass


def build(make_app, **settings) -> Polyqueue:
    app = make_app(queue_backend="pgmq", **settings)

    @app.register("items.double")
    async def double(payload: Item) -> int:
        return payload.n * 2

    return app


async def jobs_count(url: str) -> int:
    connection = await asyncpg.connect(url)
    try:
        return int(await connection.fetchval("SELECT count(*) FROM polyqueue.jobs"))
    finally:
        await connection.close()


async def test_jobs_run_through_pgmq(make_app, pgmq_env: str, pgmq_database: str) -> None:
    async with build(make_app) as app, running_worker(app):
        ids = await app.enqueue_many("items.double", [Item(n=n) for n in range(20)])
        for n, job_id in enumerate(ids):
            job = await app.wait_for(job_id, timeout=30)
            assert job.status is JobStatus.SUCCEEDED
            assert await app.get_job_result(job_id) == n * 2
    assert await count_messages(pgmq_database, pgmq_env + "default") == 0


async def test_concurrent_enqueues_share_a_transaction_with_their_messages(
    make_app, pgmq_env: str, pgmq_database: str
) -> None:
    """Single enqueues made at once go in shared statements (`polyqueue.batching`); each
    statement's PGMQ messages are sent in its transaction, so every job runs once."""
    async with build(make_app) as app, running_worker(app):
        ids = await asyncio.gather(*(app.enqueue("items.double", Item(n=n)) for n in range(50)))
        for n, job_id in enumerate(ids):
            job = await app.wait_for(job_id, timeout=30)
            assert job.status is JobStatus.SUCCEEDED
            assert await app.get_job_result(job_id) == n * 2
    assert len(set(ids)) == 50
    assert await count_messages(pgmq_database, pgmq_env + "default") == 0


async def test_a_rolled_back_enqueue_leaves_no_job_and_no_message(
    make_app, pgmq_env: str, pgmq_database: str
) -> None:
    async with build(make_app) as app:
        assert app.broker.capabilities.transactional_publish
        pool = await asyncpg.create_pool(pgmq_database, min_size=1, max_size=1)
        try:
            with pytest.raises(Boom):
                async with pool.acquire() as c, c.transaction():
                    await app.enqueue("items.double", Item(n=1), connection=c)
                    assert await count_messages(pgmq_database, pgmq_env + "default") == 0
                    raise Boom
            assert await jobs_count(pgmq_database) == 0
            assert await count_messages(pgmq_database, pgmq_env + "default") == 0
            async with pool.acquire() as c, c.transaction():
                job_id = await app.enqueue("items.double", Item(n=2), connection=c)
        finally:
            await pool.close()
        assert await jobs_count(pgmq_database) == 1
        assert await count_messages(pgmq_database, pgmq_env + "default") == 1
        async with running_worker(app):
            assert (await app.wait_for(job_id, timeout=30)).status is JobStatus.SUCCEEDED


async def test_own_transaction_enqueue_publishes_inside_it(
    make_app, pgmq_env: str, pgmq_database: str
) -> None:
    async with build(make_app) as app:
        await app.enqueue("items.double", Item(n=3))
        assert app.publisher.pending == 0
        assert await count_messages(pgmq_database, pgmq_env + "default") == 1


async def test_a_single_enqueue_sends_its_notice_in_its_insert_statement(
    make_app, pgmq_env: str, pgmq_database: str
) -> None:
    """One statement, one commit: the core's insert sends the notices (`notice_sender`);
    neither `publish` nor `publish_in` is called, and the bodies are the jobs' notices."""
    async with build(make_app) as app:
        await app.enqueue("items.double", Item(n=0))  # the queue exists from here on
        calls: list[str] = []
        for name in ("publish", "publish_in"):
            original = getattr(app.broker, name)

            async def spy(*args, _name=name, _original=original, **kwargs):
                calls.append(_name)
                return await _original(*args, **kwargs)

            setattr(app.broker, name, spy)
        ids = await asyncio.gather(*(app.enqueue("items.double", Item(n=n)) for n in range(30)))
        assert calls == []
        connection = await asyncpg.connect(pgmq_database)
        try:
            bodies = await connection.fetch(
                f"SELECT message::text AS body FROM pgmq.q_{pgmq_env}default"
            )
        finally:
            await connection.close()
        sent = [decode_notice(row["body"].encode()) for row in bodies]
        assert sorted(sent)[1:] == sorted(ids)
        async with running_worker(app):
            for n, job_id in enumerate(ids):
                job = await app.wait_for(job_id, timeout=30)
                assert job.status is JobStatus.SUCCEEDED
                assert await app.get_job_result(job_id) == n * 2


async def test_a_queue_dropped_by_hand_gets_its_notice_after_the_commit(
    make_app, pgmq_env: str, pgmq_database: str
) -> None:
    async with build(make_app) as app:
        await app.enqueue("items.double", Item(n=1))
        connection = await asyncpg.connect(pgmq_database)
        try:
            await connection.execute("SELECT pgmq.drop_queue($1)", pgmq_env + "default")
        finally:
            await connection.close()
        job_id = await app.enqueue("items.double", Item(n=2))
        await app.publisher.flush()
        assert await count_messages(pgmq_database, pgmq_env + "default") == 1
        async with running_worker(app):
            assert (await app.wait_for(job_id, timeout=30)).status is JobStatus.SUCCEEDED


@pytest.mark.parametrize("queue", ["Upper", "dotted.name"])
async def test_a_queue_pgmq_cannot_hold_fails_the_enqueue_before_any_row(
    make_app, pgmq_env: str, pgmq_database: str, queue: str
) -> None:
    async with build(make_app) as app:
        with pytest.raises(BrokerError, match="cannot be a PGMQ queue"):
            await app.enqueue("items.double", Item(n=1), queue=queue)
    assert await jobs_count(pgmq_database) == 0


async def test_pgmq_in_another_database(
    make_app,
    pgmq_env: str,
    pgmq_database: str,
    empty_database: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("POLYQUEUE_PGMQ_DATABASE_URL", empty_database)
    monkeypatch.setenv("POLYQUEUE_PGMQ_INSTALL", "true")
    async with build(make_app) as app:
        assert not app.broker.capabilities.transactional_publish  # the outbox relay instead
        pool = await asyncpg.create_pool(pgmq_database, min_size=1, max_size=1)
        try:
            with pytest.raises(Boom):
                async with pool.acquire() as c, c.transaction():
                    await app.enqueue("items.double", Item(n=1), connection=c)
                    raise Boom
            async with pool.acquire() as c, c.transaction():
                committed = await app.enqueue("items.double", Item(n=5), connection=c)
        finally:
            await pool.close()
        own = await app.enqueue("items.double", Item(n=6))
        async with running_worker(app):
            for job_id in (committed, own):
                assert (await app.wait_for(job_id, timeout=30)).status is JobStatus.SUCCEEDED
        assert await jobs_count(pgmq_database) == 2
    assert await count_messages(empty_database, pgmq_env + "default") == 0
    connection = await asyncpg.connect(pgmq_database)
    try:  # the notices went to the other database, not to the jobs database's PGMQ
        queues = await connection.fetch("SELECT queue_name FROM pgmq.meta")
        assert pgmq_env + "default" not in {row["queue_name"] for row in queues}
    finally:
        await connection.close()
