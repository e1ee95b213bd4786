"""`Maintenance.run_once` against a real, migrated PostgreSQL: each service, and one leader."""

from __future__ import annotations

import asyncio
import os
import socket
from typing import TYPE_CHECKING, Any

import asyncpg
import pytest
from pydantic import BaseModel

from polyqueue import DatabaseUnavailableError, maintenance
from polyqueue.job import Outcome
from polyqueue.maintenance import Maintenance, MaintenanceReport
from polyqueue.notices import decode_notice
from polyqueue.store import WorkerRegistration
from polyqueue.testing.helpers import eventually

if TYPE_CHECKING:
    from polyqueue import Polyqueue

QUEUE = "maint"


class Item(BaseModel):
    n: int


def build_app(make_app, **settings: Any) -> Polyqueue:
    """An app with the handlers these tests enqueue (never run: no worker is started)."""
    app = make_app(**settings)

    @app.register("maint.work", queue=QUEUE, max_attempts=3)
    async def work(payload: Item) -> int:
        return payload.n

    @app.register(
        "maint.limited_retry",
        queue=QUEUE,
        max_attempts=2,
        max_run_seconds=60,
        timeout_strategy="retry",
    )
    async def limited_retry(payload: Item) -> int:
        return payload.n

    @app.register(
        "maint.limited_fail",
        queue=QUEUE,
        max_attempts=3,
        max_run_seconds=60,
        timeout_strategy="fail",
    )
    async def limited_fail(payload: Item) -> int:
        return payload.n

    return app


async def register_worker(app: Polyqueue, name: str) -> str:
    """A worker row, as a worker process writes it when it starts; returns its id."""
    worker_id = f"test-{name}-{os.urandom(4).hex()}"
    registration = WorkerRegistration(worker_id, socket.gethostname(), os.getpid(), [QUEUE], 4)
    await app.store.worker_register(registration)
    return worker_id


async def claim(app: Polyqueue, job_ids: list[int], worker_id: str) -> None:
    """Claim the jobs for `worker_id` through the store, exactly as a worker does."""
    claimed = await app.store.job_claim_many(
        job_ids, worker_id, app.settings.timeout_backstop_seconds
    )
    assert sorted(j.id for j in claimed) == sorted(job_ids)


async def drain_notices(app: Polyqueue) -> list[int]:
    """Receive and ack every notice now available on QUEUE; return their job ids."""
    ids: list[int] = []
    while deliveries := await app.broker.receive([QUEUE], max_messages=100, wait_seconds=0.05):
        ids += [decode_notice(d.body) for d in deliveries]
        await app.broker.ack(deliveries)
    return sorted(ids)


async def silence(db: asyncpg.Connection, worker_id: str, seconds: float = 3600) -> None:
    """Age a worker's last heartbeat, as if its process died `seconds` ago."""
    await db.execute(
        "UPDATE polyqueue.workers SET heartbeat_at = now() - make_interval(secs => $2)"
        " WHERE id = $1",
        worker_id,
        seconds,
    )


async def row(db: asyncpg.Connection, job_id: int) -> dict[str, Any]:
    record = await db.fetchrow(
        "SELECT status::text AS status, attempt, reclaims, worker_id, error_type,"
        " error_message, timeout_at, finished_at, republishes FROM polyqueue.jobs WHERE id = $1",
        job_id,
    )
    assert record is not None
    return dict(record)


async def worker_status(db: asyncpg.Connection, worker_id: str) -> str:
    status: str = await db.fetchval("SELECT status FROM polyqueue.workers WHERE id = $1", worker_id)
    return status


# -- reap and reclaim -------------------------------------------------------------------------


@pytest.mark.parametrize("queue_backend", ["postgres", "none"])
async def test_a_silent_worker_is_reaped_and_its_running_job_reclaimed(
    make_app, db, queue_backend
) -> None:
    app = build_app(make_app, queue_backend=queue_backend, worker_stale_after=30)
    async with app:
        dead = await register_worker(app, "dead")
        alive = await register_worker(app, "alive")
        lost, kept = await app.enqueue_many("maint.work", [Item(n=1), Item(n=2)])
        await drain_notices(app)
        await claim(app, [lost], dead)
        await claim(app, [kept], alive)
        await silence(db, dead)

        report = await Maintenance(app.runtime).run_once()

        assert report.leader
        assert report.dead_workers == [dead]
        assert report.reclaimed == [lost]
        assert report.poisoned == []
        assert await worker_status(db, dead) == "dead"
        assert await worker_status(db, alive) == "running"
        reclaimed = await row(db, lost)
        assert reclaimed["status"] == "queued"
        assert reclaimed["reclaims"] == 1
        assert reclaimed["attempt"] == 1  # the attempt counted; it is not given back
        assert reclaimed["worker_id"] is None
        assert reclaimed["timeout_at"] is None
        untouched = await row(db, kept)
        assert (untouched["status"], untouched["reclaims"]) == ("running", 0)
        assert await drain_notices(app) == [lost]  # a fresh notice for the reclaimed job

        # The dead worker's late outcome is fenced off; the next claim is attempt 2.
        late = Outcome(lost, 1, "succeeded", result="1")
        assert await app.store.job_complete_many([late]) == {}
        assert (await row(db, lost))["status"] == "queued"
        (again,) = await app.store.job_claim_many([lost], alive, 30.0)
        assert again.attempt == 2

        # Nothing left to do: the next round changes nothing.
        quiet = await Maintenance(app.runtime).run_once()
        assert (quiet.dead_workers, quiet.reclaimed, quiet.poisoned) == ([], [], [])


async def test_a_worker_within_stale_after_is_not_reaped(make_app, db) -> None:
    app = build_app(make_app, worker_stale_after=30)
    async with app:
        worker = await register_worker(app, "slow")
        (job_id,) = await app.enqueue_many("maint.work", [Item(n=1)])
        await claim(app, [job_id], worker)
        await silence(db, worker, seconds=20)  # late, but not yet stale

        report = await Maintenance(app.runtime).run_once()

        assert report.dead_workers == []
        assert report.reclaimed == []
        assert await worker_status(db, worker) == "running"
        assert (await row(db, job_id))["status"] == "running"


async def test_a_job_a_live_worker_stopped_heartbeating_is_reclaimed(make_app, db) -> None:
    """A claim committed while its reply was lost: the worker is alive but never ran the job,
    so it never heartbeats it. The job's own heartbeat goes stale and it is reclaimed; the
    jobs the worker does heartbeat stay with it."""
    app = build_app(make_app, worker_stale_after=30)
    async with app:
        worker = await register_worker(app, "alive")
        in_doubt, held = await app.enqueue_many("maint.work", [Item(n=1), Item(n=2)])
        await drain_notices(app)
        await claim(app, [in_doubt, held], worker)
        await db.execute(
            "UPDATE polyqueue.jobs SET heartbeat_at = now() - interval '1 minute'"
            " WHERE id = ANY($1::bigint[])",
            [in_doubt, held],
        )
        assert await app.store.job_heartbeat_many([(held, 1)]) == {held}  # the one it runs

        report = await Maintenance(app.runtime).run_once()

        assert report.dead_workers == []
        assert report.reclaimed == [in_doubt]
        assert await worker_status(db, worker) == "running"
        assert ((await row(db, in_doubt))["status"], (await row(db, held))["status"]) == (
            "queued",
            "running",
        )
        assert await drain_notices(app) == [in_doubt]


async def test_rows_of_long_stopped_and_dead_workers_are_pruned(make_app, db) -> None:
    app = build_app(make_app, retention_workers=3600)
    async with app:
        old_stopped, old_dead, recent, running = [
            await register_worker(app, name) for name in ("old", "dead", "recent", "running")
        ]
        for worker_id in (old_stopped, recent):
            await app.store.worker_stop(worker_id)
        await db.execute(
            "UPDATE polyqueue.workers SET status = 'dead', stopped_at = now() WHERE id = $1",
            old_dead,
        )
        await db.execute(
            "UPDATE polyqueue.workers SET stopped_at = now() - interval '2 hours',"
            " heartbeat_at = now() - interval '2 hours' WHERE id = ANY($1::text[])",
            [old_stopped, old_dead, running],
        )

        report = await Maintenance(app.runtime).run_once()

        assert report.pruned_workers == 2
        left = await db.fetch("SELECT id FROM polyqueue.workers")
        assert {r["id"] for r in left} == {recent, running}


async def test_prune_never_deletes_a_job_requeued_while_it_ran(make_app, db) -> None:
    """The operator's requeue commits between prune picking the job and deleting it."""
    app = build_app(make_app, retention_failed=60)
    async with app:
        (job_id,) = await app.enqueue_many("maint.work", [Item(n=1)])
        await db.execute(
            "UPDATE polyqueue.jobs SET status = 'failed', finished_at = now() - interval '1 hour'"
            " WHERE id = $1",
            job_id,
        )
        operator = await asyncpg.connect(app.database_url)
        try:
            requeue = operator.transaction()
            await requeue.start()
            assert await app.store.job_requeue_many([job_id], operator)
            async with app.store.transaction() as connection:
                pruning = asyncio.create_task(
                    app.store.job_prune(86400, 60, 86400, 100, connection)
                )

                async def done_or_blocked() -> bool:
                    return pruning.done() or await _waits_on_a_lock(db)

                await eventually(done_or_blocked, timeout=30)
                await requeue.commit()
                assert await pruning == 0
        finally:
            await operator.close()
        assert (await row(db, job_id))["status"] == "queued"


async def _waits_on_a_lock(db: asyncpg.Connection) -> bool:
    waiting: int = await db.fetchval(
        "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock'"
        " AND datname = current_database()"
    )
    return waiting > 0


async def test_a_stopped_worker_is_left_stopped_and_not_reaped_again(make_app, db) -> None:
    app = build_app(make_app, worker_stale_after=1)
    async with app:
        worker = await register_worker(app, "stopped")
        await app.store.worker_stop(worker)
        await silence(db, worker)

        report = await Maintenance(app.runtime).run_once()

        assert report.dead_workers == []
        assert await worker_status(db, worker) == "stopped"


async def test_a_job_at_max_reclaims_minus_one_fails_as_a_poison_job(make_app, db) -> None:
    app = build_app(make_app, max_reclaims=3)
    async with app:
        dead = await register_worker(app, "dead")
        poison, young = await app.enqueue_many("maint.work", [Item(n=1), Item(n=2)])
        await drain_notices(app)
        await claim(app, [poison, young], dead)
        await db.execute("UPDATE polyqueue.jobs SET reclaims = 2 WHERE id = $1", poison)
        await db.execute("UPDATE polyqueue.jobs SET reclaims = 1 WHERE id = $1", young)
        await silence(db, dead)

        report = await Maintenance(app.runtime).run_once()

        assert report.poisoned == [poison]
        assert report.reclaimed == [young]
        failed = await row(db, poison)
        assert failed["status"] == "failed"
        assert failed["error_type"] == "PoisonJobError"
        assert "killed its worker 3 times" in failed["error_message"]
        assert "max_reclaims" in failed["error_message"]
        assert failed["reclaims"] == 3
        assert failed["finished_at"] is not None
        assert failed["timeout_at"] is None
        survivor = await row(db, young)
        assert (survivor["status"], survivor["reclaims"]) == ("queued", 2)
        assert await drain_notices(app) == [young]  # no notice for the failed poison job
        job = await app.get_job(poison)
        assert job.error is not None
        assert job.error.type == "PoisonJobError"


async def test_max_reclaims_one_fails_on_the_first_death(make_app, db) -> None:
    app = build_app(make_app, max_reclaims=1)
    async with app:
        dead = await register_worker(app, "dead")
        (job_id,) = await app.enqueue_many("maint.work", [Item(n=1)])
        await claim(app, [job_id], dead)
        await silence(db, dead)

        report = await Maintenance(app.runtime).run_once()

        assert report.poisoned == [job_id]
        failed = await row(db, job_id)
        assert (failed["status"], failed["error_type"]) == ("failed", "PoisonJobError")
        assert "1 times" in failed["error_message"]


# -- timeout backstop -------------------------------------------------------------------------


async def expire(db: asyncpg.Connection, job_id: int) -> None:
    """Move a running job's backstop into the past, as if its worker wedged long ago."""
    await db.execute(
        "UPDATE polyqueue.jobs SET timeout_at = now() - interval '1 second' WHERE id = $1",
        job_id,
    )


async def test_timeout_retry_with_attempts_left_schedules_the_job(make_app, db) -> None:
    app = build_app(make_app, retry_backoff_base=0.01, retry_backoff_max=0.05)
    async with app:
        worker = await register_worker(app, "wedged")
        (job_id,) = await app.enqueue_many("maint.limited_retry", [Item(n=1)])
        await claim(app, [job_id], worker)
        assert (await row(db, job_id))["timeout_at"] is not None
        await expire(db, job_id)

        report = await Maintenance(app.runtime).run_once()

        assert report.timed_out == [job_id]
        assert report.reclaimed == []  # its worker is alive: not a reclaim
        timed_out = await row(db, job_id)
        assert timed_out["status"] == "scheduled"
        assert timed_out["error_type"] == "TimeoutError"
        assert "time limit of 60s" in timed_out["error_message"]
        assert "backstop" in timed_out["error_message"]
        assert timed_out["worker_id"] is None
        assert timed_out["finished_at"] is None
        # The wedged attempt's late outcome is fenced off.
        late = Outcome(job_id, 1, "succeeded", result="1")
        assert await app.store.job_complete_many([late]) == {}
        assert (await row(db, job_id))["status"] == "scheduled"


async def test_timeout_retry_without_attempts_left_fails_the_job(make_app, db) -> None:
    app = build_app(make_app)
    async with app:
        worker = await register_worker(app, "wedged")
        (job_id,) = await app.enqueue_many("maint.limited_retry", [Item(n=1)])
        await claim(app, [job_id], worker)
        await db.execute("UPDATE polyqueue.jobs SET attempt = max_attempts WHERE id = $1", job_id)
        await expire(db, job_id)

        report = await Maintenance(app.runtime).run_once()

        assert report.timed_out == [job_id]
        failed = await row(db, job_id)
        assert failed["status"] == "failed"
        assert failed["error_type"] == "TimeoutError"
        assert failed["finished_at"] is not None


async def test_timeout_fail_strategy_fails_at_once(make_app, db) -> None:
    app = build_app(make_app)
    async with app:
        worker = await register_worker(app, "wedged")
        (job_id,) = await app.enqueue_many("maint.limited_fail", [Item(n=1)])
        await claim(app, [job_id], worker)
        await expire(db, job_id)

        report = await Maintenance(app.runtime).run_once()

        assert report.timed_out == [job_id]
        failed = await row(db, job_id)
        assert failed["status"] == "failed"
        assert failed["attempt"] == 1  # attempts were left: the strategy says fail anyway
        assert failed["error_type"] == "TimeoutError"
        assert "backstop" in failed["error_message"]


async def test_a_running_job_before_its_backstop_is_left_alone(make_app, db) -> None:
    app = build_app(make_app)
    async with app:
        worker = await register_worker(app, "busy")
        ids = await app.enqueue_many("maint.limited_fail", [Item(n=1)])
        ids += await app.enqueue_many("maint.work", [Item(n=2)])  # no limit: no backstop
        await claim(app, ids, worker)

        report = await Maintenance(app.runtime).run_once()

        assert report.timed_out == []
        assert [(await row(db, i))["status"] for i in ids] == ["running", "running"]


# -- republish --------------------------------------------------------------------------------


@pytest.mark.parametrize("queue_backend", ["postgres", "none"])
async def test_a_queued_job_waiting_too_long_gets_its_notice_again_once(
    make_app, db, queue_backend
) -> None:
    app = build_app(make_app, queue_backend=queue_backend, republish_after=60)
    async with app:
        stale, fresh = await app.enqueue_many("maint.work", [Item(n=1), Item(n=2)])
        assert await drain_notices(app) == [stale, fresh]  # the original notices, then lost
        await db.execute(
            "UPDATE polyqueue.jobs SET run_at = now() - interval '5 minutes' WHERE id = $1", stale
        )

        report = await Maintenance(app.runtime).run_once()

        assert report.republished == [stale]
        assert await drain_notices(app) == [stale]
        assert (await row(db, stale))["status"] == "queued"

        again = await Maintenance(app.runtime).run_once()

        assert again.republished == []  # notified_at moved on: not every round
        assert await drain_notices(app) == []


async def notified_ago(db: asyncpg.Connection, job_id: int, seconds: float) -> None:
    await db.execute(
        "UPDATE polyqueue.jobs SET notified_at = now() - make_interval(secs => $2) WHERE id = $1",
        job_id,
        seconds,
    )


async def test_republishing_a_job_backs_off_each_time(make_app, db) -> None:
    app = build_app(make_app, republish_after=60)
    async with app:
        (job_id,) = await app.enqueue_many("maint.work", [Item(n=1)])
        await drain_notices(app)
        await db.execute(
            "UPDATE polyqueue.jobs SET run_at = now() - interval '5 minutes' WHERE id = $1", job_id
        )
        assert (await Maintenance(app.runtime).run_once()).republished == [job_id]
        assert await drain_notices(app) == [job_id]  # lost again

        await notified_ago(db, job_id, 100)  # past republish_after, not past twice that
        assert (await Maintenance(app.runtime).run_once()).republished == []
        await notified_ago(db, job_id, 130)
        assert (await Maintenance(app.runtime).run_once()).republished == [job_id]
        assert await drain_notices(app) == [job_id]
        await notified_ago(db, job_id, 200)  # the third wait is four times as long
        assert (await Maintenance(app.runtime).run_once()).republished == []
        await notified_ago(db, job_id, 250)
        assert (await Maintenance(app.runtime).run_once()).republished == [job_id]
        assert (await row(db, job_id))["republishes"] == 3


async def test_a_notice_still_in_the_broker_is_not_published_twice(make_app, db) -> None:
    """A backlog older than `republish_after` whose notices are all still waiting in the
    built-in broker's table: no duplicates, however many rounds pass."""
    app = build_app(make_app, queue_backend="postgres", republish_after=60)
    async with app:
        ids = await app.enqueue_many("maint.work", [Item(n=n) for n in range(5)])
        await db.execute("UPDATE polyqueue.jobs SET run_at = now() - interval '1 hour'")
        for _ in range(3):
            assert (await Maintenance(app.runtime).run_once()).republished == []
            await db.execute("UPDATE polyqueue.jobs SET notified_at = now() - interval '1 hour'")
        assert await db.fetchval("SELECT count(*) FROM polyqueue.broker_messages") == len(ids)
        assert await drain_notices(app) == sorted(ids)  # one notice each


async def test_a_claimed_job_starts_its_republish_backoff_afresh(make_app, db) -> None:
    app = build_app(make_app, republish_after=60)
    async with app:
        (job_id,) = await app.enqueue_many("maint.work", [Item(n=1)])
        await db.execute("UPDATE polyqueue.jobs SET republishes = 4 WHERE id = $1", job_id)
        claimed = await app.store.job_claim_many([job_id], "w", 0)
        assert [job.id for job in claimed] == [job_id]
        assert (await row(db, job_id))["republishes"] == 0


async def test_running_and_scheduled_jobs_are_not_republished(make_app, db) -> None:
    app = build_app(make_app, republish_after=60)
    async with app:
        worker = await register_worker(app, "busy")
        running, scheduled = await app.enqueue_many("maint.work", [Item(n=1), Item(n=2)])
        await claim(app, [running], worker)
        await db.execute("UPDATE polyqueue.jobs SET status = 'scheduled' WHERE id = $1", scheduled)
        await db.execute("UPDATE polyqueue.jobs SET run_at = now() - interval '5 minutes'")
        await drain_notices(app)

        report = await Maintenance(app.runtime).run_once()

        assert report.republished == []


# -- prune ------------------------------------------------------------------------------------


async def test_prune_deletes_finished_jobs_past_retention_only(make_app, db) -> None:
    app = build_app(
        make_app, retention_succeeded=600, retention_failed=3600, retention_cancelled=600
    )
    async with app:
        ids = await app.enqueue_many("maint.work", [Item(n=n) for n in range(8)])
        ages = {  # job -> (status, seconds since it finished)
            ids[0]: ("succeeded", 700),  # past 600: pruned
            ids[1]: ("succeeded", 500),  # kept
            ids[2]: ("failed", 700),  # failed keeps 3600: kept
            ids[3]: ("failed", 4000),  # pruned
            ids[4]: ("cancelled", 700),  # pruned
            ids[5]: ("cancelled", 100),  # kept
        }
        for job_id, (status, age) in ages.items():
            await db.execute(
                "UPDATE polyqueue.jobs SET status = $2::text::polyqueue.job_status,"
                " finished_at = now() - make_interval(secs => $3) WHERE id = $1",
                job_id,
                status,
                age,
            )
        # Unfinished jobs are never pruned, however old.
        await db.execute(
            "UPDATE polyqueue.jobs SET run_at = now() - interval '30 days',"
            " created_at = now() - interval '30 days' WHERE id = ANY($1::bigint[])",
            ids[6:],
        )

        report = await Maintenance(app.runtime).run_once()

        assert report.pruned == 3
        left = await db.fetch("SELECT id FROM polyqueue.jobs ORDER BY id")
        assert [r["id"] for r in left] == [ids[1], ids[2], ids[5], ids[6], ids[7]]
        assert (await Maintenance(app.runtime).run_once()).pruned == 0


async def test_a_prune_backlog_goes_in_batches_of_their_own_after_the_round(
    make_app, db, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(maintenance, "PRUNE_SECONDS", 600.0)  # a bound, never reached here
    app = build_app(make_app, retention_succeeded=600)
    async with app:
        await db.execute(
            "INSERT INTO polyqueue.jobs (name, queue, status, payload, max_attempts, finished_at)"
            " SELECT 'maint.work', 'q', 'succeeded', '{}', 3, now() - interval '1 hour'"
            " FROM generate_series(1, $1)",
            maintenance.BATCH * 2 + 500,
        )
        kept = await app.enqueue("maint.work", Item(n=1))

        report = await Maintenance(app.runtime).run_once()

        assert report.pruned == maintenance.BATCH * 2 + 500
        left = await db.fetch("SELECT id FROM polyqueue.jobs")
        assert [r["id"] for r in left] == [kept]


# -- one leader -------------------------------------------------------------------------------


async def test_a_round_is_skipped_while_another_leader_holds_the_lock(make_app, db) -> None:
    leader_app = build_app(make_app, worker_stale_after=1)
    other_app = build_app(make_app, worker_stale_after=1)
    async with leader_app, other_app:
        dead = await register_worker(leader_app, "dead")
        (job_id,) = await leader_app.enqueue_many("maint.work", [Item(n=1)])
        await claim(leader_app, [job_id], dead)
        await silence(db, dead)

        async with leader_app.store.transaction() as connection:
            schema = leader_app.settings.schema_name
            assert await leader_app.store.maintenance_lock(schema, connection)
            skipped = await Maintenance(other_app.runtime).run_once()
            assert not skipped.leader
            assert (skipped.dead_workers, skipped.reclaimed) == ([], [])
            assert await worker_status(db, dead) == "running"  # nothing was done

        led = await Maintenance(other_app.runtime).run_once()  # the lock is free again
        assert led.leader
        assert led.dead_workers == [dead]
        assert led.reclaimed == [job_id]


async def test_concurrent_rounds_on_two_apps_never_double_apply(make_app, db) -> None:
    apps = [build_app(make_app, worker_stale_after=1, republish_after=60) for _ in range(2)]
    async with apps[0], apps[1]:
        for round_number in range(5):
            dead = await register_worker(apps[0], f"dead{round_number}")
            ids = await apps[0].enqueue_many("maint.work", [Item(n=n) for n in range(3)])
            await claim(apps[0], ids, dead)
            await silence(db, dead)
            stale = (await apps[0].enqueue_many("maint.work", [Item(n=9)]))[0]
            await db.execute(
                "UPDATE polyqueue.jobs SET run_at = now() - interval '5 minutes' WHERE id = $1",
                stale,
            )
            await drain_notices(apps[0])

            reports = await asyncio.gather(*(Maintenance(app.runtime).run_once() for app in apps))

            leaders = [r for r in reports if r.leader]
            assert 1 <= len(leaders) <= len(apps)
            assert all(r == MaintenanceReport() for r in reports if not r.leader)
            # Whether the rounds overlapped (one skipped) or ran back to back, each service
            # applied once: one reap, one reclaim per job, one republish.
            assert [w for r in reports for w in r.dead_workers] == [dead]
            assert sorted(j for r in reports for j in r.reclaimed) == sorted(ids)
            assert [j for r in reports for j in r.republished] == [stale]
            reclaims = await db.fetch(
                "SELECT reclaims FROM polyqueue.jobs WHERE id = ANY($1::bigint[])", ids
            )
            assert [r["reclaims"] for r in reclaims] == [1, 1, 1]
            assert await drain_notices(apps[0]) == sorted([*ids, stale])


async def test_after_its_own_outage_maintenance_waits_before_reaping(
    make_app, db, monkeypatch
) -> None:
    """A round that failed means the database was out of reach: the other workers could
    not heartbeat either. Reaping waits `worker_stale_after` so they can, instead of all
    being declared dead at once; a worker that stays silent is reaped after that."""
    app = build_app(make_app, worker_stale_after=1, maintenance_interval=0.05)
    calls: list[bool] = []
    run_once = Maintenance.run_once

    async def spy(self: Maintenance, now: Any = None, *, recover: bool = True) -> Any:
        calls.append(recover)
        if len(calls) == 1:
            raise DatabaseUnavailableError("the database is away")
        return await run_once(self, now, recover=recover)

    monkeypatch.setattr(Maintenance, "run_once", spy)
    async with app:
        silent = await register_worker(app, "silent")
        await silence(db, silent)
        rounds = asyncio.create_task(Maintenance(app.runtime).run())
        try:

            async def reaped() -> bool:
                return await worker_status(db, silent) == "dead"

            await eventually(reaped, timeout=30)
        finally:
            rounds.cancel()
    assert calls[1] is False  # the first round after the failure left the workers alone
    assert calls[-1] is True
