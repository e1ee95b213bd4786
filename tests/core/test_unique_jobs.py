"""Unique jobs against a real database: while active, for a period, by key or by payload,
many at once, under concurrent producers, in a caller's transaction, and bad input."""

from __future__ import annotations

import asyncio
import json
import math
from datetime import timedelta
from typing import Any

import asyncpg
import pytest
from pydantic import BaseModel

from polyqueue import InvalidPayloadError, JobId, JobIds, JobStatus, Polyqueue
from polyqueue.producer import MAX_UNIQUE_KEY_LENGTH, payload_key


class Sync(BaseModel):
    account: int
    options: dict[str, Any] = {}


def build(make_app, **settings: Any) -> Polyqueue:
    app = make_app(**settings)

    @app.register("accounts.sync", queue="sync")
    async def sync_account(payload: Sync) -> int:
        return payload.account

    @app.register("accounts.audit", queue="sync")
    async def audit_account(payload: Sync) -> int:
        return payload.account

    return app


@pytest.fixture(params=["postgres", "none"])
async def app(request, make_app):
    app = build(make_app, queue_backend=request.param)
    async with app:
        yield app


async def job_count(db: asyncpg.Connection) -> int:
    return await db.fetchval("SELECT count(*) FROM polyqueue.jobs")


async def set_status(db: asyncpg.Connection, job_id: int, status: str) -> None:
    await db.execute(
        "UPDATE polyqueue.jobs SET status = $2::polyqueue.job_status WHERE id = $1", job_id, status
    )


async def end_period(db: asyncpg.Connection, job_id: int) -> None:
    """Move the job's unique period into the past, as if `unique_for` had gone by."""
    await db.execute(
        "UPDATE polyqueue.jobs SET unique_until = now() - interval '1 second' WHERE id = $1",
        job_id,
    )


# -- while active -------------------------------------------------------------------------


@pytest.mark.parametrize("status", ["scheduled", "queued", "running"])
async def test_a_key_is_held_while_its_job_is_active(app: Polyqueue, db, status: str) -> None:
    first = await app.enqueue("accounts.sync", Sync(account=1), unique="account-1")
    assert isinstance(first, JobId) and first.created
    await set_status(db, first, status)
    again = await app.enqueue("accounts.sync", Sync(account=2), unique="account-1")
    assert (again, again.created) == (first, False)
    assert await job_count(db) == 1
    assert (await app.get_job(first)).payload["account"] == 1


async def test_a_finished_job_gives_its_key_back(app: Polyqueue, db) -> None:
    first = await app.enqueue("accounts.sync", Sync(account=1), unique="account-1")
    await app.run_until_idle()
    assert (await app.get_job(first)).status is JobStatus.SUCCEEDED
    second = await app.enqueue("accounts.sync", Sync(account=1), unique="account-1")
    assert second.created and second != first
    third = await app.enqueue("accounts.sync", Sync(account=1), unique="account-1")
    assert (third, third.created) == (second, False)
    assert await job_count(db) == 2


async def test_a_taken_key_publishes_no_second_notice(make_app) -> None:
    app = build(make_app, queue_backend="postgres")
    async with app:
        first = await app.enqueue("accounts.sync", Sync(account=1), unique="k")
        await app.enqueue("accounts.sync", Sync(account=1), unique="k")
        await app.enqueue_many("accounts.sync", [Sync(account=1)] * 3, unique=["k"] * 3)
        deliveries = await app.broker.receive(["sync"], max_messages=10, wait_seconds=5)
        assert [d.body for d in deliveries] == [b'{"job_id":%d}' % first]


# -- for a period -------------------------------------------------------------------------


async def test_a_key_is_held_for_its_period_even_once_finished(app: Polyqueue, db) -> None:
    first = await app.enqueue("accounts.sync", Sync(account=1), unique="daily", unique_for=3600)
    await app.run_until_idle()
    within = await app.enqueue(
        "accounts.sync", Sync(account=1), unique="daily", unique_for=timedelta(hours=1)
    )
    assert (within, within.created) == (first, False)
    assert (await app.get_job(first)).status is JobStatus.SUCCEEDED

    await end_period(db, first)
    after = await app.enqueue("accounts.sync", Sync(account=1), unique="daily", unique_for=3600)
    assert after.created and after != first
    assert await job_count(db) == 2


async def test_an_active_job_holds_its_key_past_its_period(app: Polyqueue, db) -> None:
    first = await app.enqueue("accounts.sync", Sync(account=1), unique="p", unique_for=60)
    await end_period(db, first)
    again = await app.enqueue("accounts.sync", Sync(account=1), unique="p", unique_for=60)
    assert (again, again.created) == (first, False)


async def test_an_enqueue_without_a_period_respects_the_holders(app: Polyqueue, db) -> None:
    first = await app.enqueue("accounts.sync", Sync(account=1), unique="p", unique_for=60)
    await set_status(db, first, "failed")
    held = await app.enqueue("accounts.sync", Sync(account=1), unique="p")
    assert (held, held.created) == (first, False)
    await end_period(db, first)
    free = await app.enqueue("accounts.sync", Sync(account=1), unique="p")
    assert free.created
    assert await db.fetchval("SELECT unique_key FROM polyqueue.jobs WHERE id = $1", first) is None


# -- by payload ---------------------------------------------------------------------------


async def test_payload_keys_are_per_handler_and_canonical_payload(app: Polyqueue, db) -> None:
    first = await app.enqueue(
        "accounts.sync", Sync(account=7, options={"a": 1, "b": 2}), unique=True
    )
    same = await app.enqueue(
        "accounts.sync", {"options": {"b": 2, "a": 1}, "account": "7"}, unique=True
    )
    assert (same, same.created) == (first, False)
    other_payload = await app.enqueue("accounts.sync", Sync(account=8), unique=True)
    other_handler = await app.enqueue(
        "accounts.audit", Sync(account=7, options={"a": 1, "b": 2}), unique=True
    )
    assert other_payload.created and other_handler.created
    assert len({first, other_payload, other_handler}) == 3
    key = await db.fetchval("SELECT unique_key FROM polyqueue.jobs WHERE id = $1", first)
    assert key == payload_key("accounts.sync", '{"options":{"a":1,"b":2},"account":7}')
    assert key.startswith("accounts.sync:")


# -- enqueue_many -------------------------------------------------------------------------


async def test_enqueue_many_with_keys_mixes_new_and_existing_in_order(app: Polyqueue, db) -> None:
    existing = await app.enqueue("accounts.sync", Sync(account=0), unique="a")
    ids = await app.enqueue_many(
        "accounts.sync",
        [Sync(account=n) for n in range(1, 6)],
        unique=["b", "a", "c", "b", "d"],
    )
    assert isinstance(ids, JobIds) and isinstance(ids, list)
    assert [i.created for i in ids] == [True, False, True, False, True]
    assert ids[1] == existing and ids[3] == ids[0]
    assert ids[0] < ids[2] < ids[4]  # new ids ascend in the order of the payloads
    payloads = [(await app.get_job(i)).payload["account"] for i in ids]
    assert payloads == [1, 0, 3, 1, 5]
    assert await job_count(db) == 4


async def test_enqueue_many_with_payload_keys(app: Polyqueue, db) -> None:
    ids = await app.enqueue_many(
        "accounts.sync", [Sync(account=1), Sync(account=2), Sync(account=1)], unique=True
    )
    assert [i.created for i in ids] == [True, True, False]
    assert ids[2] == ids[0]
    again = await app.enqueue_many("accounts.sync", [Sync(account=2)], unique=True)
    assert (again[0], again[0].created) == (ids[1], False)
    assert await job_count(db) == 2


async def test_plain_enqueues_report_created_and_idempotency_keys_too(app: Polyqueue) -> None:
    plain = await app.enqueue("accounts.sync", Sync(account=1))
    many = await app.enqueue_many("accounts.sync", [Sync(account=1)] * 2)
    assert plain.created and all(i.created for i in many)
    keyed = await app.enqueue("accounts.sync", Sync(account=1), idempotency_key="once")
    taken = await app.enqueue("accounts.sync", Sync(account=2), idempotency_key="once")
    assert keyed.created and (taken, taken.created) == (keyed, False)


def test_a_job_id_is_an_int_everywhere_an_int_goes() -> None:
    job_id = JobId(42, created=False)
    assert job_id == 42 and hash(job_id) == hash(42) and f"{job_id}" == "42"
    assert json.dumps({"id": job_id}) == '{"id": 42}'  # stored or sent as a plain number
    assert not job_id.created
    assert JobId(5).created


# -- concurrency --------------------------------------------------------------------------


async def _race(apps: list[Polyqueue], keys: list[str], **options: Any) -> list[list[JobId]]:
    """20 producers over `apps`, released together, each enqueueing every key once (one by
    one in a shuffled order, or all in one `enqueue_many`)."""
    start = asyncio.Event()

    async def producer(n: int) -> list[JobId]:
        app = apps[n % len(apps)]
        order = _order(keys, n)
        await start.wait()
        if n % 2:
            return list(
                await app.enqueue_many(
                    "accounts.sync", [Sync(account=n)] * len(order), unique=order, **options
                )
            )
        return [
            await app.enqueue("accounts.sync", Sync(account=n), unique=key, **options)
            for key in order
        ]

    tasks = [asyncio.create_task(producer(n)) for n in range(20)]
    await asyncio.sleep(0.05)
    start.set()
    results = await asyncio.gather(*tasks)
    # every producer's ids back in the order of `keys`
    return [
        [dict(zip(_order(keys, n), ids, strict=True))[k] for k in keys]
        for n, ids in enumerate(results)
    ]


def _order(keys: list[str], n: int) -> list[str]:
    """Producer `n`'s order of the keys: rotated by `n`, backwards for every other pair."""
    rotated = keys[n % len(keys) :] + keys[: n % len(keys)]
    return rotated[::-1] if n % 4 >= 2 else rotated


def _assert_one_job_per_key(
    results: list[list[JobId]], keys: list[str], created: int = 1
) -> list[JobId]:
    """Every producer got the same job for each key, and `created` of them created it."""
    winners = []
    for column in range(len(keys)):
        ids = [row[column] for row in results]
        assert len(set(ids)) == 1, f"key {keys[column]}: {sorted(set(ids))}"
        assert sum(i.created for i in ids) == created
        winners.append(ids[0])
    return winners


@pytest.mark.parametrize("backend", ["postgres", "none"])
async def test_twenty_concurrent_producers_get_one_job_per_key(make_app, db, backend) -> None:
    apps = [build(make_app, queue_backend=backend, pool_max_size=6) for _ in range(4)]
    for app in apps:
        await app.start()
    keys = [f"key-{n}" for n in range(6)]
    winners = _assert_one_job_per_key(await _race(apps, keys), keys)
    rows = await db.fetch("SELECT id, unique_key FROM polyqueue.jobs ORDER BY unique_key")
    assert [(r["unique_key"], r["id"]) for r in rows] == list(zip(keys, winners, strict=True))
    if backend == "postgres":
        assert await db.fetchval("SELECT count(*) FROM polyqueue.broker_messages") == len(keys)

    # Again with every key held by a finished job whose period is over: one taker per key.
    await db.execute("UPDATE polyqueue.jobs SET status = 'succeeded'")
    winners_now = _assert_one_job_per_key(await _race(apps, keys, unique_for=60), keys)
    assert not set(winners) & set(winners_now)
    for job_id in winners_now:
        await set_status(db, job_id, "succeeded")  # finished, within its period: still held
    held = _assert_one_job_per_key(await _race(apps, keys, unique_for=60), keys, created=0)
    assert held == winners_now
    assert await job_count(db) == 2 * len(keys)
    owners = await db.fetchval("SELECT count(*) FROM polyqueue.jobs WHERE unique_key IS NOT NULL")
    assert owners == len(keys)


async def test_twenty_concurrent_producers_of_idempotency_keys(make_app, db) -> None:
    apps = [build(make_app, queue_backend="none", pool_max_size=6) for _ in range(4)]
    for app in apps:
        await app.start()
        await asyncio.gather(*(app.store.pool.fetchval("SELECT pg_sleep(0.05)") for _ in range(5)))
    for key in ("i-1", "i-2", "i-3"):
        start = asyncio.Event()

        async def producer(n: int, key: str = key, start: asyncio.Event = start) -> JobId:
            await start.wait()
            return await apps[n % 4].enqueue("accounts.sync", Sync(account=n), idempotency_key=key)

        tasks = [asyncio.create_task(producer(n)) for n in range(20)]
        await asyncio.sleep(0.05)
        start.set()
        ids = await asyncio.gather(*tasks)
        assert len(set(ids)) == 1 and sum(i.created for i in ids) == 1
    assert await job_count(db) == 3


# -- a caller's transaction ---------------------------------------------------------------


async def test_a_rolled_back_transaction_leaves_no_job_and_no_key_held(app: Polyqueue, db) -> None:
    old = await app.enqueue("accounts.sync", Sync(account=0), unique="tx", unique_for=60)
    await set_status(db, old, "succeeded")
    await end_period(db, old)  # free: the enqueue below takes the key from it

    class Rollback(Exception):
        pass

    with pytest.raises(Rollback):
        async with app.store.pool.acquire() as connection, connection.transaction():
            inside = await app.enqueue(
                "accounts.sync", Sync(account=1), unique="tx", connection=connection
            )
            assert inside.created
            again = await app.enqueue(
                "accounts.sync", Sync(account=2), unique="tx", connection=connection
            )
            assert (again, again.created) == (inside, False)
            raise Rollback
    assert await job_count(db) == 1
    assert await db.fetchval("SELECT unique_key FROM polyqueue.jobs WHERE id = $1", old) == "tx"
    after = await app.enqueue("accounts.sync", Sync(account=3), unique="tx")
    assert after.created


async def test_a_committed_transaction_holds_the_key(app: Polyqueue, db) -> None:
    async with app.store.pool.acquire() as connection, connection.transaction():
        inside = await app.enqueue(
            "accounts.sync", Sync(account=1), unique="tx", connection=connection
        )
    outside = await app.enqueue("accounts.sync", Sync(account=2), unique="tx")
    assert inside.created and (outside, outside.created) == (inside, False)


@pytest.mark.parametrize("commit", [True, False])
async def test_a_producer_waits_for_the_transaction_that_holds_its_key(
    app: Polyqueue, db, commit: bool
) -> None:
    """The key taken in an open transaction is neither free nor a job yet: another producer
    waits for that transaction, then gets its job (commit) or a new one (rollback)."""
    async with app.store.pool.acquire() as connection:
        transaction = connection.transaction()
        await transaction.start()
        inside = await app.enqueue(
            "accounts.sync", Sync(account=1), unique="wait", connection=connection
        )
        other = asyncio.create_task(app.enqueue("accounts.sync", Sync(account=2), unique="wait"))
        await asyncio.sleep(0.3)
        assert not other.done()  # waiting on the unique index
        await (transaction.commit() if commit else transaction.rollback())
        outside = await asyncio.wait_for(other, 10)
    if commit:
        assert (outside, outside.created) == (inside, False)
    else:
        assert outside.created and outside != inside
    assert await job_count(db) == 1


def test_the_sync_api_passes_unique_through(clean_database: str) -> None:
    app = build(lambda: Polyqueue(database_url=clean_database, queue_backend="none"))
    try:
        first = app.sync.enqueue("accounts.sync", Sync(account=1), unique="s", unique_for=60)
        again = app.sync.enqueue("accounts.sync", Sync(account=2), unique="s")
        many = app.sync.enqueue_many("accounts.sync", [Sync(account=3)] * 2, unique=True)
    finally:
        app.sync.close()
    assert first.created and (again, again.created) == (first, False)
    assert [i.created for i in many] == [True, False]


# -- bad input ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"unique": "k", "unique_for": 0}, r"unique_for must be .* above 0.*not 0"),
        ({"unique": "k", "unique_for": -5}, r"unique_for must be .* above 0"),
        ({"unique": "k", "unique_for": timedelta(0)}, r"unique_for must be"),
        ({"unique": "k", "unique_for": math.nan}, r"unique_for must be"),
        ({"unique": "k", "unique_for": True}, r"unique_for must be"),
        ({"unique": "k", "unique_for": "60"}, r"unique_for must be"),
        ({"unique_for": 60}, r"unique_for needs unique"),
        ({"unique": "x" * (MAX_UNIQUE_KEY_LENGTH + 1)}, r"unique must be at most 255 .*not 256"),
        ({"unique": ""}, r"unique must not be empty"),
        ({"unique": "a\x00b"}, r"unique contains a NUL"),
        ({"unique": 42}, r"unique must be True or a key \(str\), not int"),
        ({"unique": b"k"}, r"unique must be True or a key \(str\), not bytes"),
        ({"unique": ["k"]}, r"unique must be True or a key \(str\), not list"),
        ({"unique": "k", "idempotency_key": "i"}, r"either idempotency_key or unique"),
    ],
)
async def test_bad_unique_options_of_enqueue_are_refused(
    app: Polyqueue, db, options: dict[str, Any], message: str
) -> None:
    with pytest.raises(InvalidPayloadError, match=message):
        await app.enqueue("accounts.sync", Sync(account=1), **options)
    assert await job_count(db) == 0


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"unique": ["a", "b"]}, r"one key per payload: 2 keys for 3 payloads"),
        ({"unique": ["a", "b", "c", "d"]}, r"one key per payload: 4 keys for 3 payloads"),
        ({"unique": ["a", 2, "c"]}, r"unique\[1\] must be a str, not int"),
        ({"unique": ["a", "b", "c" * 300]}, r"unique\[2\] must be at most 255 characters"),
        ({"unique": "abc"}, r"enqueue_many must be True or a list of keys.*not a str"),
        ({"unique": 7}, r"unique must be True, a key \(str\) or a list of keys, not int"),
        ({"unique": ["a", "b", "c"], "unique_for": -1}, r"unique_for must be"),
    ],
)
async def test_bad_unique_options_of_enqueue_many_are_refused(
    app: Polyqueue, db, options: dict[str, Any], message: str
) -> None:
    with pytest.raises(InvalidPayloadError, match=message):
        await app.enqueue_many("accounts.sync", [Sync(account=n) for n in range(3)], **options)
    assert await job_count(db) == 0


async def test_keys_without_payloads_are_refused(app: Polyqueue, db) -> None:
    with pytest.raises(InvalidPayloadError, match=r"1 keys for 0 payloads"):
        await app.enqueue_many("accounts.sync", [], unique=["a"])
    assert await app.enqueue_many("accounts.sync", [], unique=True) == []
