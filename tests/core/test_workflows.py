"""Workflows in one process against real PostgreSQL: depends_on, chains, groups, chords,
DAGs, failure policies, cancelling, bad input refused with nothing written. Fan-in across
worker processes, a SIGKILLed worker and a PostgreSQL restart:
tests/e2e/test_workflow_processes.py."""

from __future__ import annotations

import uuid
from typing import TYPE_CHECKING

import asyncpg
import pytest
from pydantic import BaseModel

from polyqueue import (
    DependencyCycleError,
    DependencyFailedError,
    DependencyNotFoundError,
    HandlerNotFoundError,
    InvalidPayloadError,
    JobContext,
    Polyqueue,
    TerminalError,
    WorkflowNotFoundError,
)
from polyqueue.status import JobStatus
from polyqueue.testing.helpers import running_worker

if TYPE_CHECKING:
    from tests.conftest import AppFactory


class Num(BaseModel):
    n: int


class Empty(BaseModel):
    pass


class Total(BaseModel):
    total: int


def workflow_app(make_app: AppFactory, **overrides: object) -> tuple[Polyqueue, list[str]]:
    """An app whose handlers log what ran, in order."""
    app = make_app(**overrides)
    ran: list[str] = []

    @app.register("wf.double")
    async def double(payload: Num) -> Num:
        ran.append(f"double {payload.n}")
        return Num(n=payload.n * 2)

    @app.register("wf.add_one")
    async def add_one(payload: Num) -> Num:
        ran.append(f"add_one {payload.n}")
        return Num(n=payload.n + 1)

    @app.register("wf.fail", max_attempts=1)
    async def fail(payload: Num) -> Num:
        ran.append(f"fail {payload.n}")
        raise TerminalError(f"failing {payload.n}")

    @app.register("wf.sum")
    async def sum_up(payload: Empty, ctx: JobContext) -> Total:
        numbers = await ctx.results_of(Num)
        ran.append(f"sum {[x.n for x in numbers]}")
        return Total(total=sum(x.n for x in numbers))

    @app.register("wf.report")
    async def report(payload: Empty, ctx: JobContext) -> list[str]:
        outcomes = await ctx.dependencies()
        ran.append("report")
        return [f"{o.job_id}:{o.status}" for o in outcomes]

    return app, ran


async def status_of(app: Polyqueue, job_id: int) -> JobStatus:
    return (await app.get_job(job_id)).status


async def test_a_job_waits_for_its_dependencies_and_then_runs(make_app: AppFactory) -> None:
    app, ran = workflow_app(make_app)
    async with app:
        first = await app.enqueue("wf.double", Num(n=1))
        second = await app.enqueue("wf.double", Num(n=2))
        last = await app.enqueue("wf.sum", {}, depends_on=[first, second])
        assert await status_of(app, last) is JobStatus.WAITING
        await app.run_until_idle()
        assert await app.get_job_result(last) == {"total": 6}
    assert ran[-1] == "sum [2, 4]"


async def test_a_chain_passes_each_result_on_as_the_next_payload(make_app: AppFactory) -> None:
    app, ran = workflow_app(make_app)
    async with app:
        done = await app.chain("wf.double", Num(n=3), "wf.add_one", "wf.double")
        await app.run_until_idle()
        assert await app.get_job_result(done.job_ids[-1]) == {"n": 14}
        workflow = await app.get_workflow(done.id or 0)
    assert ran == ["double 3", "add_one 6", "double 7"]
    assert workflow.status == "succeeded"
    assert [node.depends_on for node in workflow.nodes] == [
        [],
        [done.job_ids[0]],
        [done.job_ids[1]],
    ]


async def test_a_chord_callback_reads_every_result_in_order(make_app: AppFactory) -> None:
    app, ran = workflow_app(make_app)
    async with app:
        done = await app.chord("wf.double", [Num(n=i) for i in range(5)], "wf.sum")
        await app.run_until_idle()
        assert await app.get_job_result(done.job_ids[-1]) == {"total": 20}
    assert ran.count("sum [0, 2, 4, 6, 8]") == 1


async def test_a_dag_built_node_by_node(make_app: AppFactory) -> None:
    app, ran = workflow_app(make_app)
    async with app:
        wf = app.workflow("diamond")
        top = wf.add("wf.double", Num(n=1))
        left = wf.add("wf.add_one", payload_from=top)
        right = wf.add("wf.double", payload_from=top)
        bottom = wf.add("wf.sum", after=[left, right])
        done = await wf.enqueue()
        info = await app.get_workflow(done.id or 0)
        assert [n.status for n in info.nodes] == [
            JobStatus.QUEUED,
            JobStatus.WAITING,
            JobStatus.WAITING,
            JobStatus.WAITING,
        ]
        await app.run_until_idle()
        assert await app.get_job_result(done[bottom]) == {"total": 3 + 4}
        info = await app.get_workflow(done.id or 0)
    assert info.finished
    assert info.name == "diamond"
    assert info.node(done[bottom]).depends_on == [done[left], done[right]]
    assert ran[0] == "double 1"


async def test_a_failure_cancels_its_dependents_transitively(make_app: AppFactory) -> None:
    app, ran = workflow_app(make_app)
    async with app:
        wf = app.workflow()
        bad = wf.add("wf.fail", Num(n=1))
        middle = wf.add("wf.double", Num(n=2), after=[bad])
        end = wf.add("wf.double", Num(n=3), after=[middle])
        done = await wf.enqueue()
        await app.run_until_idle()
        middle_job = await app.get_job(done[middle])
        info = await app.get_workflow(done.id or 0)
    assert middle_job.status is JobStatus.CANCELLED
    assert middle_job.error is not None
    assert middle_job.error.type == "DependencyFailedError"
    assert f"job {done[bad]}" in middle_job.error.message
    assert info.node(done[end]).status is JobStatus.CANCELLED
    assert info.status == "failed"
    assert ran == ["fail 1"]


async def test_run_and_ignore_policies_let_the_dependent_run(make_app: AppFactory) -> None:
    app, _ran = workflow_app(make_app)
    async with app:
        wf = app.workflow()
        bad = wf.add("wf.fail", Num(n=1))
        good = wf.add("wf.double", Num(n=2))
        summed = wf.add("wf.sum", after=[(bad, "ignore"), good])
        reported = wf.add("wf.report", after=[bad, good], on_failure="run")
        strict = wf.add("wf.sum", after=[(bad, "run"), good])
        done = await wf.enqueue()
        await app.run_until_idle()
        assert await app.get_job_result(done[summed]) == {"total": 4}
        assert await app.get_job_result(done[reported]) == [
            f"{done[bad]}:failed",
            f"{done[good]}:succeeded",
        ]
        failed = await app.get_job(done[strict])
    assert failed.status is JobStatus.FAILED  # results_of under `run` raises for the failure
    assert failed.error is not None
    assert failed.error.type == DependencyFailedError.__name__
    assert f"job {done[bad]}" in failed.error.message


async def test_a_dependency_that_already_failed_follows_the_policy_at_once(
    make_app: AppFactory,
) -> None:
    app, _ = workflow_app(make_app)
    async with app:
        bad = await app.enqueue("wf.fail", Num(n=1))
        good = await app.enqueue("wf.double", Num(n=2))
        await app.run_until_idle()
        cancelled = await app.enqueue("wf.double", Num(n=3), depends_on=[bad])
        runs = await app.enqueue("wf.report", {}, depends_on=[bad, good], on_failure="run")
        assert await status_of(app, cancelled) is JobStatus.CANCELLED
        assert await status_of(app, runs) is JobStatus.QUEUED
        await app.run_until_idle()
        assert await status_of(app, runs) is JobStatus.SUCCEEDED


async def test_enqueue_many_with_depends_on(make_app: AppFactory) -> None:
    app, _ = workflow_app(make_app)
    async with app:
        setup = await app.enqueue("wf.double", Num(n=1))
        ids = await app.enqueue_many("wf.add_one", [Num(n=i) for i in range(3)], depends_on=[setup])
        assert {await status_of(app, i) for i in ids} == {JobStatus.WAITING}
        await app.run_until_idle()
        assert [await app.get_job_result(i) for i in ids] == [{"n": 1}, {"n": 2}, {"n": 3}]


async def test_cancelling_a_workflow_cancels_what_has_not_finished(make_app: AppFactory) -> None:
    app, _ = workflow_app(make_app)
    async with app:
        wf = app.workflow()
        first = wf.add("wf.double", Num(n=1))
        nodes = wf.chain("wf.double", Num(n=2), "wf.add_one", after=[first])
        done = await wf.enqueue()
        await app.run_until_idle(concurrency=1)  # runs the whole workflow
        wf2 = app.workflow()
        wf2.chain("wf.double", Num(n=2), "wf.add_one")
        second = await wf2.enqueue()
        cancelled = await app.cancel_workflow(second.id or 0)
        assert cancelled == list(second.job_ids)
        info = await app.get_workflow(second.id or 0)
        assert info.status == "cancelled"
        assert await status_of(app, done[nodes[-1]]) is JobStatus.SUCCEEDED


async def test_a_retried_step_does_not_rerun_finished_steps(make_app: AppFactory) -> None:
    app = make_app()
    runs: list[str] = []

    @app.register("wf.once")
    async def once(payload: Num) -> Num:
        runs.append("once")
        return payload

    @app.register("wf.flaky", max_attempts=3)
    async def flaky(payload: Num, ctx: JobContext) -> Num:
        runs.append(f"flaky {ctx.attempt}")
        if ctx.attempt < 2:
            raise RuntimeError("not yet")
        return payload

    async with app:
        done = await app.chain("wf.once", Num(n=1), "wf.flaky")
        await app.run_until_idle()
        assert await status_of(app, done.job_ids[-1]) is JobStatus.SUCCEEDED
    assert runs == ["once", "flaky 1", "flaky 2"]


# -- bad input: refused, nothing written ---------------------------------------------------


async def count_jobs(app: Polyqueue) -> tuple[int, int, int]:
    pool = app.store.pool
    return (
        await pool.fetchval("SELECT count(*) FROM polyqueue.jobs"),
        await pool.fetchval("SELECT count(*) FROM polyqueue.job_dependencies"),
        await pool.fetchval("SELECT count(*) FROM polyqueue.workflows"),
    )


async def test_a_cycle_is_refused_naming_its_nodes(make_app: AppFactory) -> None:
    app, _ = workflow_app(make_app)
    async with app:
        wf = app.workflow()
        a = wf.add("wf.double", Num(n=1))
        b = wf.add("wf.double", Num(n=2), after=[a])
        c = wf.add("wf.double", Num(n=3), after=[b])
        wf.add("wf.double", Num(n=4), after=[c])  # downstream of the cycle, not on it
        wf.link(c, a)
        with pytest.raises(DependencyCycleError) as caught:
            await wf.enqueue()
        assert caught.value.nodes == [
            "node 0 (wf.double)",
            "node 1 (wf.double)",
            "node 2 (wf.double)",
        ]
        assert await count_jobs(app) == (0, 0, 0)


async def test_dangling_ids_are_refused_with_nothing_written(make_app: AppFactory) -> None:
    app, _ = workflow_app(make_app)
    async with app:
        real = await app.enqueue("wf.double", Num(n=1))
        wf = app.workflow()
        wf.add("wf.double", Num(n=1), after=[real, 999_999_998])
        wf.add("wf.double", Num(n=1), after=[999_999_999])
        with pytest.raises(DependencyNotFoundError, match="999999998, 999999999") as caught:
            await wf.enqueue()
        assert caught.value.job_ids == [999_999_998, 999_999_999]
        with pytest.raises(DependencyNotFoundError):
            await app.enqueue("wf.double", Num(n=1), depends_on=[999_999_997])
        assert await count_jobs(app) == (1, 0, 0)
        assert (await app.get_job(real)).status is not JobStatus.WAITING


async def test_an_unknown_handler_or_invalid_payload_in_a_node_writes_nothing(
    make_app: AppFactory,
) -> None:
    app, _ = workflow_app(make_app)
    async with app:
        wf = app.workflow()
        a = wf.add("wf.double", Num(n=1))
        wf.add("wf.nope", {}, after=[a])
        with pytest.raises(HandlerNotFoundError, match=r"wf\.nope"):
            await wf.enqueue()
        wf = app.workflow()
        a = wf.add("wf.double", Num(n=1))
        wf.add("wf.double", {"n": "not a number"}, after=[a])
        with pytest.raises(InvalidPayloadError, match="n"):
            await wf.enqueue()
        with pytest.raises(InvalidPayloadError, match="on_failure"):
            app.workflow(on_failure="explode")  # type: ignore[arg-type]
        with pytest.raises(InvalidPayloadError, match="unique"):
            await app.enqueue("wf.double", Num(n=1), depends_on=[1], unique=True)
        assert await count_jobs(app) == (0, 0, 0)


async def test_a_workflow_in_a_rolled_back_transaction_leaves_nothing(
    make_app: AppFactory,
) -> None:
    app, _ = workflow_app(make_app)
    async with app:
        async with app.store.pool.acquire() as connection:
            transaction = connection.transaction()
            await transaction.start()
            done = await app.chord("wf.double", [Num(n=1)], "wf.sum", connection=connection)
            assert len(done) == 2
            await transaction.rollback()
        assert await count_jobs(app) == (0, 0, 0)
        async with app.store.pool.acquire() as connection, connection.transaction():
            done = await app.chord("wf.double", [Num(n=1)], "wf.sum", connection=connection)
        await app.run_until_idle()
        assert await app.get_job_result(done.job_ids[-1]) == {"total": 2}


async def test_a_ten_thousand_node_dag_in_one_call(make_app: AppFactory) -> None:
    app, _ = workflow_app(make_app)
    async with app:
        wf = app.workflow("big")
        layer = wf.group("wf.double", [Num(n=i) for i in range(100)])
        for _ in range(98):
            layer = [wf.add("wf.add_one", payload_from=node) for node in layer]
        wf.add("wf.sum", after=layer)
        assert len(wf) == 100 * 99 + 1
        done = await wf.enqueue()
        assert len(done) == 9_901
        await app.run_until_idle(concurrency=50)
        total = sum(2 * i + 98 for i in range(100))
        assert await app.get_job_result(done.job_ids[-1]) == {"total": total}


# -- operator actions, maintenance, pruning -----------------------------------------------


async def test_cancelling_a_dependency_settles_its_dependents(make_app: AppFactory) -> None:
    app, ran = workflow_app(make_app)
    async with app:
        slow = await app.enqueue("wf.double", Num(n=1), delay=3600)
        other = await app.enqueue("wf.double", Num(n=2))
        doomed = await app.enqueue("wf.double", Num(n=3), depends_on=[slow])
        anyway = await app.enqueue("wf.report", {}, depends_on=[slow, other], on_failure="run")
        assert await app.cancel(slow)
        assert await status_of(app, doomed) is JobStatus.CANCELLED
        assert await status_of(app, anyway) is JobStatus.WAITING  # `other` has not run yet
        await app.run_until_idle()
        assert await app.get_job_result(anyway) == [f"{slow}:cancelled", f"{other}:succeeded"]
    assert "double 3" not in ran


async def test_a_released_job_with_a_delay_still_ahead_is_scheduled(make_app: AppFactory) -> None:
    app, _ = workflow_app(make_app)
    async with app:
        first = await app.enqueue("wf.double", Num(n=1))
        later = await app.enqueue("wf.double", Num(n=2), depends_on=[first], delay=3600)
        await app.run_until_idle()
        assert await status_of(app, later) is JobStatus.SCHEDULED


async def test_maintenance_settles_edges_an_outcome_left_behind(make_app: AppFactory) -> None:
    """A dependency finished without settling its edges (failed by maintenance itself, or a
    crash): the next maintenance round releases what it held."""
    from polyqueue.maintenance import Maintenance  # noqa: PLC0415

    app, _ = workflow_app(make_app)
    async with app:
        first = await app.enqueue("wf.double", Num(n=1), delay=3600)
        second = await app.enqueue("wf.double", Num(n=2), depends_on=[first])
        await app.store.pool.execute(
            "UPDATE polyqueue.jobs SET status = 'succeeded', result = '{\"n\": 7}',"
            " finished_at = now() WHERE id = $1",
            first,
        )
        assert await status_of(app, second) is JobStatus.WAITING
        report = await Maintenance(app.runtime).run_once()
        assert report.released == [second]
        assert await status_of(app, second) is JobStatus.QUEUED
        assert (await Maintenance(app.runtime).run_once()).released == []  # settled once


async def test_pruning_takes_edges_and_emptied_workflows_along(make_app: AppFactory) -> None:
    app, _ = workflow_app(make_app)
    async with app:
        done = await app.chain("wf.double", Num(n=1), "wf.double")
        await app.run_until_idle()
        pruned = await app.store.job_prune(0.0, 0.0, 0.0, 100, app.store.pool)
        assert pruned == 2
        assert await count_jobs(app) == (0, 0, 0)
        with pytest.raises(WorkflowNotFoundError, match=f"no workflow with id {done.id}"):
            await app.get_workflow(done.id or 0)


async def test_a_released_job_under_a_limit_starts_through_flow_control(
    make_app: AppFactory,
) -> None:
    app, _ = workflow_app(make_app)

    @app.register("wf.limited_sum", concurrency_limit=1)
    async def limited_sum(payload: Empty, ctx: JobContext) -> int:
        return sum(n.n for n in await ctx.results_of(Num))

    async with app:
        done = await app.chord("wf.double", [Num(n=1), Num(n=2)], "wf.limited_sum")
        await app.run_until_idle()
        assert await app.get_job_result(done.job_ids[-1]) == 6


@pytest.fixture(params=["none", "redis", "pgmq"])
async def other_broker(
    request: pytest.FixtureRequest, clean_database: str, monkeypatch: pytest.MonkeyPatch
) -> dict[str, object]:
    """Settings of a broker whose notices are not rows beside the jobs: released jobs are
    announced by the publisher after the commit (redis, none) or in the transaction (pgmq)."""
    name: str = request.param
    settings: dict[str, object] = {"queue_backend": name}
    if name == "redis":
        settings |= {
            "redis_url": request.getfixturevalue("redis_url"),
            "redis_key_prefix": f"pqwf:{uuid.uuid4().hex}:",
        }
    elif name == "pgmq":
        from polyqueue_pgmq import install  # noqa: PLC0415  (only this parameter needs it)

        connection = await asyncpg.connect(clean_database)
        try:
            await install(connection)
        finally:
            await connection.close()
        settings |= {"pgmq_queue_prefix": f"w{uuid.uuid4().hex[:8]}_", "pgmq_poll_interval": 0.2}
    for key, value in settings.items():  # a plugin's settings come from the environment
        if key != "queue_backend":
            monkeypatch.setenv(f"POLYQUEUE_{key.upper()}", str(value))
    return {"queue_backend": name}


async def test_workflows_on_brokers_beside_or_apart_from_the_jobs(
    make_app: AppFactory, other_broker: dict[str, object]
) -> None:
    app, ran = workflow_app(make_app, **other_broker)
    async with app:
        done = await app.chord("wf.double", [Num(n=i) for i in range(4)], "wf.sum")
        chain = await app.chain("wf.double", Num(n=1), "wf.add_one")
        async with running_worker(app, concurrency=4):
            callback = await app.wait_for(done.job_ids[-1], timeout=30)
            last = await app.wait_for(chain.job_ids[-1], timeout=30)
            later = await app.enqueue("wf.add_one", Num(n=5), depends_on=[chain.job_ids[-1]])
            assert (await app.wait_for(later, timeout=30)).status is JobStatus.SUCCEEDED
    assert callback.result == {"total": 12}
    assert last.result == {"n": 3}
    assert ran.count("sum [0, 2, 4, 6]") == 1
