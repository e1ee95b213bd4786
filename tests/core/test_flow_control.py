"""Flow control in one process against real PostgreSQL: global and queue limits, rate
limits, paused queues, bad limits. Limits across worker processes and brokers are proved in
tests/e2e/test_flow_processes.py."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

import pytest
from pydantic import BaseModel

from polyqueue import ConfigurationError, InvalidPayloadError, Polyqueue
from polyqueue.limits import Rate, parse_rate
from polyqueue.status import JobStatus
from polyqueue.testing.helpers import eventually, running_worker

if TYPE_CHECKING:
    import asyncpg
    from tests.conftest import AppFactory


class Item(BaseModel):
    n: int


class Gauge:
    """Counts handlers running at once; `hold` keeps each running until released."""

    def __init__(self) -> None:
        self.now = 0
        self.most = 0
        self.started = 0
        self.release = asyncio.Event()

    async def run(self) -> None:
        self.now += 1
        self.started += 1
        self.most = max(self.most, self.now)
        try:
            await self.release.wait()
        finally:
            self.now -= 1


def limited_app(make_app: AppFactory, gauge: Gauge, **limits: object) -> Polyqueue:
    app = make_app()

    @app.register("flow.limited", queue="flow", **limits)  # type: ignore[arg-type]
    async def limited(payload: Item) -> int:
        await gauge.run()
        return payload.n

    return app


async def test_a_concurrency_limit_holds_with_free_slots_to_spare(make_app: AppFactory) -> None:
    gauge = Gauge()
    app = limited_app(make_app, gauge, concurrency_limit=3)
    async with app:
        ids = await app.enqueue_many("flow.limited", [Item(n=i) for i in range(12)])
        async with running_worker(app, concurrency=10):
            await eventually(lambda: gauge.now == 3)
            assert (
                await app.store.pool.fetchval(
                    "SELECT count(*) FROM polyqueue.jobs WHERE status = 'queued'"
                )
                == 9
            )  # waiting in PostgreSQL, not failed, not claimed
            gauge.release.set()
            for job_id in ids:
                assert (await app.wait_for(job_id, timeout=30)).status is JobStatus.SUCCEEDED
    assert gauge.most == 3
    assert gauge.started == 12


async def test_a_queue_limit_holds_across_handlers(make_app: AppFactory) -> None:
    gauge = Gauge()
    app = make_app()

    @app.register("flow.a", queue="shared")
    async def a(payload: Item) -> int:
        await gauge.run()
        return payload.n

    @app.register("flow.b", queue="shared")
    async def b(payload: Item) -> int:
        await gauge.run()
        return payload.n

    async with app:
        await app.configure_queue("shared", concurrency_limit=2)
        ids = await app.enqueue_many(a, [Item(n=i) for i in range(4)])
        ids += await app.enqueue_many(b, [Item(n=i) for i in range(4)])
        async with running_worker(app, concurrency=10):
            await eventually(lambda: gauge.now == 2)
            limits = {(limit.scope, limit.name): limit for limit in await app.flow_limits()}
            shared = limits[("queue", "shared")]
            assert (shared.limits.concurrency, shared.running, shared.waiting) == (2, 2, 6)
            gauge.release.set()
            for job_id in ids:
                assert (await app.wait_for(job_id, timeout=30)).status is JobStatus.SUCCEEDED
    assert gauge.most == 2


async def test_a_limited_job_enqueued_to_an_idle_worker_starts(make_app: AppFactory) -> None:
    """A held-back job has no notice; its insert tells the idle workers to look (a NOTIFY on
    the flow channel), in every enqueue path: one job, a batch, a caller's transaction."""
    gauge = Gauge()
    gauge.release.set()
    app = limited_app(make_app, gauge, concurrency_limit=2)

    @app.register("flow.free", queue="flow")
    async def free(payload: Item) -> int:
        return payload.n

    async with app, running_worker(app, concurrency=4):
        first = await app.enqueue(free, Item(n=-1))  # done: past its first look, now idle
        assert (await app.wait_for(first, timeout=30)).status is JobStatus.SUCCEEDED
        ids = [await app.enqueue("flow.limited", Item(n=0))]
        ids += await app.enqueue_many("flow.limited", [Item(n=1), Item(n=2)])
        async with app.store.transaction() as connection:
            ids.append(await app.enqueue("flow.limited", Item(n=3), connection=connection))
        for job_id in ids:
            assert (await app.wait_for(job_id, timeout=30)).status is JobStatus.SUCCEEDED


class Keyed(BaseModel):
    account: str


async def test_a_full_key_does_not_hide_the_keys_queued_behind_it(make_app: AppFactory) -> None:
    """Thirty jobs of one account come first, then one of each of three others: with one
    job per account at a time, the worker runs one of each of the four at once, not just
    the first account's (the claim looks past the candidates whose key is full)."""
    gauge = Gauge()
    accounts: list[str] = []
    app = make_app()

    @app.register("flow.keyed", queue="flow", concurrency_limit=1, concurrency_key="account")
    async def keyed(payload: Keyed) -> None:
        accounts.append(payload.account)
        await gauge.run()

    async with app:
        ids = await app.enqueue_many(keyed, [Keyed(account="busy") for _ in range(30)])
        ids += await app.enqueue_many(keyed, [Keyed(account=a) for a in ("b", "c", "d")])
        async with running_worker(app, concurrency=10):
            await eventually(lambda: gauge.now == 4)
            assert sorted(accounts) == ["b", "busy", "c", "d"]
            gauge.release.set()
            for job_id in ids:
                assert (await app.wait_for(job_id, timeout=30)).status is JobStatus.SUCCEEDED
    assert gauge.most == 4


async def test_a_rate_limit_caps_the_starts_in_every_window(
    make_app: AppFactory, db: asyncpg.Connection
) -> None:
    gauge = Gauge()
    gauge.release.set()
    app = limited_app(make_app, gauge, rate_limit="4/s")
    async with app:
        ids = await app.enqueue_many("flow.limited", [Item(n=i) for i in range(10)])
        async with running_worker(app, concurrency=10):
            for job_id in ids:
                assert (await app.wait_for(job_id, timeout=30)).status is JobStatus.SUCCEEDED
        starts = [
            row["at"]
            for row in await db.fetch(
                "SELECT extract(epoch FROM started_at) AS at FROM polyqueue.flow_starts"
                " WHERE scope = 'handler:flow.limited' ORDER BY started_at"
            )
        ]
    assert len(starts) == 10  # each start recorded where the limit is enforced
    busiest = max(sum(1 for t in starts if first <= t < first + 1) for first in starts)
    assert busiest <= 4


async def test_a_paused_queue_starts_nothing_until_resumed(make_app: AppFactory) -> None:
    gauge = Gauge()
    gauge.release.set()
    app = limited_app(make_app, gauge)  # no limit: pausing alone holds the jobs
    async with app:
        await app.pause_queue("flow")
        ids = await app.enqueue_many("flow.limited", [Item(n=i) for i in range(5)])
        await app.run_until_idle(queues=["flow"])  # nothing is ready: returns at once
        assert gauge.started == 0
        assert [(q.queue, q.waiting) for q in await app.paused_queues()] == [("flow", 5)]
        assert await app.resume_queue("flow") == 5
        await app.run_until_idle(queues=["flow"])
        assert [(await app.get_job(i)).status for i in ids] == [JobStatus.SUCCEEDED] * 5
        assert await app.paused_queues() == []


async def test_pausing_lets_running_jobs_finish_and_holds_the_rest(make_app: AppFactory) -> None:
    gauge = Gauge()
    app = limited_app(make_app, gauge)
    async with app:
        first = await app.enqueue("flow.limited", Item(n=0))
        async with running_worker(app, concurrency=5):
            await eventually(lambda: gauge.now == 1)
            await app.pause_queue("flow")
            later = await app.enqueue_many("flow.limited", [Item(n=i) for i in range(1, 4)])
            gauge.release.set()
            assert (await app.wait_for(first, timeout=30)).status is JobStatus.SUCCEEDED
            assert {(await app.get_job(i)).status for i in later} == {JobStatus.QUEUED}
            await app.resume_queue("flow")
            for job_id in later:
                assert (await app.wait_for(job_id, timeout=30)).status is JobStatus.SUCCEEDED
    assert gauge.started == 4


async def test_removing_a_limit_frees_the_waiting_jobs(make_app: AppFactory) -> None:
    gauge = Gauge()
    gauge.release.set()
    app = make_app()

    @app.register("flow.free", queue="freed")
    async def free(payload: Item) -> int:
        await gauge.run()
        return payload.n

    async with app:
        await app.configure_queue("freed", rate_limit="1/h")
        ids = await app.enqueue_many(free, [Item(n=i) for i in range(3)])
        async with running_worker(app, concurrency=5):
            await eventually(lambda: gauge.started == 1)  # one start per hour
            await app.configure_queue("freed")  # no limits any more
            for job_id in ids:
                assert (await app.wait_for(job_id, timeout=30)).status is JobStatus.SUCCEEDED
        assert await app.flow_limits() == []


@pytest.mark.parametrize(
    ("text", "rate"),
    [
        ("100/m", Rate(100, 60)),
        ("5/s", Rate(5, 1)),
        ("10/30s", Rate(10, 30)),
        ("1/h", Rate(1, 3600)),
    ],
)
def test_rates_parse(text: str, rate: Rate) -> None:
    assert parse_rate(text) == rate


@pytest.mark.parametrize("text", ["100", "0/s", "5/fortnight", "-1/m", "/s", "5/0s"])
def test_a_bad_rate_is_refused_naming_it(text: str) -> None:
    with pytest.raises(ConfigurationError, match="rate_limit"):
        parse_rate(text)


def test_bad_limits_are_refused_at_registration(make_app: AppFactory) -> None:
    app = make_app()
    with pytest.raises(ConfigurationError, match="concurrency_limit must be a positive integer"):
        app.register("bad.zero", concurrency_limit=0)
    with pytest.raises(ConfigurationError, match="concurrency_key needs a concurrency_limit"):
        app.register("bad.key", concurrency_key="n")

    with pytest.raises(ConfigurationError, match="'account' is not a field of Item"):

        @app.register("bad.field", concurrency_limit=1, concurrency_key="account")
        async def bad(payload: Item) -> None: ...


async def test_a_bad_queue_limit_is_refused_and_nothing_is_stored(make_app: AppFactory) -> None:
    async with make_app() as app:
        with pytest.raises(ConfigurationError, match="rate_limit"):
            await app.configure_queue("q", concurrency_limit=2, rate_limit="lots")
        assert await app.flow_limits() == []


async def test_a_concurrency_key_that_cannot_be_computed_fails_the_enqueue_and_writes_nothing(
    make_app: AppFactory,
) -> None:
    app = make_app()

    @app.register("flow.badkey", concurrency_limit=1, concurrency_key=lambda p: 1 / p.n)
    async def badkey(payload: Item) -> None: ...

    @app.register("flow.longkey", concurrency_limit=1, concurrency_key=lambda p: "k" * 201)
    async def longkey(payload: Item) -> None: ...

    async with app:
        with pytest.raises(
            InvalidPayloadError, match=r"'flow\.badkey'.*payload 1.*ZeroDivisionError"
        ):
            await app.enqueue_many(badkey, [Item(n=1), Item(n=0)])
        with pytest.raises(InvalidPayloadError, match="longer than 200 characters"):
            await app.enqueue(longkey, Item(n=1))
        assert await app.store.pool.fetchval("SELECT count(*) FROM polyqueue.jobs") == 0
        (job_id,) = await app.enqueue_many(badkey, [Item(n=4)])
        key = await app.store.pool.fetchval(
            "SELECT concurrency_key FROM polyqueue.jobs WHERE id = $1", job_id
        )
        assert key == "0.25"
