"""Claims sized by what the worker can start soon (`polyqueue.pace`): with short handlers a
worker claims jobs ahead of its free slots. They wait in the worker for a slot, never run
beyond its concurrency, and are given back at shutdown without using an attempt."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

import pytest
from pydantic import BaseModel

from polyqueue import worker as worker_module
from polyqueue.pace import MOST_AHEAD_PER_SLOT, Pace
from polyqueue.status import JobStatus
from polyqueue.testing.helpers import eventually, running_worker

if TYPE_CHECKING:
    from tests.conftest import AppFactory

    from polyqueue import Polyqueue
    from polyqueue.worker import Worker


class Item(BaseModel):
    n: int


def test_no_job_is_claimed_ahead_until_claims_and_handlers_are_measured() -> None:
    pace = Pace()
    assert pace.ahead(10) == 0
    pace.claimed(0.002)
    assert pace.ahead(10) == 0
    pace.ran(0.0001)
    assert pace.ahead(10) == 10 * MOST_AHEAD_PER_SLOT  # handlers far shorter than a claim


def test_handlers_longer_than_a_claim_get_nothing_ahead() -> None:
    pace = Pace()
    pace.claimed(0.002)
    pace.ran(1.0)
    assert pace.ahead(10) == 0


def test_what_is_claimed_ahead_follows_what_a_slot_frees_during_a_claim() -> None:
    pace = Pace()
    pace.claimed(0.002)
    pace.ran(0.005)  # a slot frees 0.4 times during one claim
    assert pace.ahead(10) == 4


async def learn_to_claim_ahead(app: Polyqueue) -> None:
    """Run quick jobs on the app's running worker: its `Pace` learns to claim ahead."""
    quick = app.register("ahead.quick")(_quick)
    for job_id in await app.enqueue_many(quick, [Item(n=i) for i in range(60)]):
        assert (await app.wait_for(job_id, timeout=30)).status is JobStatus.SUCCEEDED


async def _quick(payload: Item) -> int:
    return payload.n


async def test_jobs_claimed_ahead_wait_for_a_slot_and_are_given_back_at_shutdown(
    make_app: AppFactory,
) -> None:
    app = make_app()
    hold = asyncio.Event()
    executing: list[int] = []
    most = 0

    @app.register("ahead.slow")
    async def slow(payload: Item) -> int:
        nonlocal most
        executing.append(payload.n)
        most = max(most, len(executing))
        try:
            await hold.wait()
        finally:
            executing.remove(payload.n)
        return payload.n

    running = "SELECT id, attempt FROM polyqueue.jobs WHERE status = 'running' ORDER BY id"
    async with app:
        async with running_worker(app, concurrency=2) as worker:
            await learn_to_claim_ahead(app)
            slow_ids = await app.enqueue_many(slow, [Item(n=i) for i in range(6)])
            await eventually(lambda: len(executing) == 2)

            async def claimed_ahead() -> bool:  # two run; more wait (Pace)
                return len(await app.store.pool.fetch(running)) > 2

            await eventually(claimed_ahead)
            assert len(executing) == 2
            held = {row["id"] for row in await app.store.pool.fetch(running)}
            assert 2 < len(held) <= 2 + 2 * MOST_AHEAD_PER_SLOT
            assert worker.running_jobs > 2  # the worker holds what it claimed ahead
            waiting_ids = held - {slow_ids[n] for n in executing}
            worker.stop()
            hold.set()
            await worker.wait_stopped()
        given_back = await app.store.pool.fetch(
            "SELECT status::text, attempt - attempt_base AS used FROM polyqueue.jobs"
            " WHERE id = ANY($1::bigint[])",
            list(waiting_ids),
        )
        assert [tuple(row) for row in given_back] == [("queued", 0)] * len(waiting_ids)
        await app.run_until_idle(concurrency=2)
        for job_id in slow_ids:
            assert (await app.wait_for(job_id, timeout=30)).status is JobStatus.SUCCEEDED
    assert most == 2


async def test_a_job_claimed_ahead_and_cancelled_never_starts(make_app: AppFactory) -> None:
    app = make_app()
    hold = asyncio.Event()
    started: list[int] = []

    @app.register("ahead.slow")
    async def slow(payload: Item) -> int:
        started.append(payload.n)
        await hold.wait()
        return payload.n

    running = "SELECT id FROM polyqueue.jobs WHERE status = 'running'"
    async with app:
        async with running_worker(app, concurrency=2) as worker:
            await learn_to_claim_ahead(app)
            slow_ids = await app.enqueue_many(slow, [Item(n=i) for i in range(6)])

            async def claimed_ahead() -> bool:
                return len(started) == 2 and len(await app.store.pool.fetch(running)) > 2

            await eventually(claimed_ahead)
            held = {row["id"] for row in await app.store.pool.fetch(running)}
            waiting = sorted(held - {slow_ids[n] for n in started})
            assert await app.cancel(waiting[0])

            async def dropped() -> bool:
                return worker.running_jobs == len(held) - 1

            await eventually(dropped)
            hold.set()
            for job_id in set(slow_ids) - {waiting[0]}:
                assert (await app.wait_for(job_id, timeout=30)).status is JobStatus.SUCCEEDED
        cancelled = await app.get_job(waiting[0])
    assert cancelled.status is JobStatus.CANCELLED
    assert slow_ids.index(waiting[0]) not in started  # its handler never ran


async def test_a_job_claimed_ahead_starts_as_a_slot_frees_while_the_next_claim_waits(
    make_app: AppFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The claim loop may be waiting in a receive (here for an hour: no notice comes) when a
    slot frees; the job claimed ahead starts then, not when that receive returns."""
    monkeypatch.setattr(worker_module, "RECEIVE_WAIT_SECONDS", 3600.0)
    app = make_app()
    gates = {0: asyncio.Event(), 1: asyncio.Event()}
    started: list[int] = []

    @app.register("ahead.gated")
    async def gated(payload: Item) -> int:
        started.append(payload.n)
        await gates[payload.n].wait()
        return payload.n

    async with app, running_worker(app, concurrency=1) as worker:
        await learn_to_claim_ahead(app)
        gated_ids = await app.enqueue_many(gated, [Item(n=0), Item(n=1)])
        await eventually(lambda: len(started) == 1 and worker.running_jobs == 2)
        gates[started[0]].set()
        await eventually(lambda: len(started) == 2)
        gates[started[1]].set()
        for job_id in gated_ids:
            assert (await app.wait_for(job_id, timeout=30)).status is JobStatus.SUCCEEDED


async def test_a_job_whose_worker_was_lost_runs_alone(make_app: AppFactory) -> None:
    """A job reclaimed from a lost worker may be what killed it: the worker holds nothing
    else while it runs (no job beside it, none claimed ahead, no outcome waiting), so that
    a second death charges no other job a reclaim."""
    app = make_app()
    worker: Worker | None = None
    held_at_start: dict[int, int] = {}

    @app.register("alone.job")
    async def job(payload: Item) -> int:
        assert worker is not None
        held_at_start[payload.n] = worker.running_jobs
        await asyncio.sleep(0)
        return payload.n

    async with app:
        ids = await app.enqueue_many(job, [Item(n=n) for n in range(12)])
        suspect = ids[4]
        await app.store.pool.execute(
            "UPDATE polyqueue.jobs SET reclaims = 1 WHERE id = $1", suspect
        )
        async with running_worker(app, concurrency=4) as worker:
            for job_id in ids:
                assert (await app.wait_for(job_id, timeout=30)).status is JobStatus.SUCCEEDED
    assert held_at_start[4] == 1  # the suspect ran alone
    assert max(held_at_start.values()) > 1  # the others did not
