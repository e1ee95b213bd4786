"""Cron schedules: validation, ticks, and firing through `Maintenance.run_once(now=...)`."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

import pytest
from pydantic import BaseModel

from polyqueue import ConfigurationError, CronTick, Polyqueue
from polyqueue.cron import CronSchedule
from polyqueue.maintenance import Maintenance

if TYPE_CHECKING:
    import asyncpg

T0 = datetime(2030, 1, 1, 0, 0, 30, tzinfo=UTC)  # a fixed clock, far from the real one


class Other(BaseModel):
    n: int


def at(hours: int = 0, minutes: int = 0, seconds: int = 0) -> datetime:
    """A time on 2030-01-01 (UTC)."""
    return datetime(2030, 1, 1, hours, minutes, seconds, tzinfo=UTC)


@pytest.fixture(autouse=True)
async def no_cron_ledger(db: asyncpg.Connection) -> None:
    """`clean_database` leaves `cron_schedules` alone: start each test without last ticks."""
    await db.execute("TRUNCATE polyqueue.cron_schedules")


def cron_app(make_app, expression: str, name: str, misfire: str = "skip") -> Polyqueue:
    app = make_app()

    @app.cron(expression, name=name, misfire=misfire)  # type: ignore[arg-type]
    async def fire(tick: CronTick) -> str:
        return tick.tick.isoformat()

    return app


async def cron_jobs(db: asyncpg.Connection, name: str) -> list[tuple[str, str]]:
    """(idempotency key, status) of every job of schedule `name`, oldest first."""
    rows = await db.fetch(
        "SELECT idempotency_key, status::text AS status FROM polyqueue.jobs"
        " WHERE name = $1 ORDER BY id",
        name,
    )
    return [(r["idempotency_key"], r["status"]) for r in rows]


async def last_tick(db: asyncpg.Connection, name: str) -> datetime | None:
    tick: datetime | None = await db.fetchval(
        "SELECT last_tick FROM polyqueue.cron_schedules WHERE name = $1", name
    )
    return tick


def key(name: str, tick: datetime) -> str:
    return f"cron:{name}:{tick.isoformat()}"


# -- validation -------------------------------------------------------------------------------


def test_a_bad_expression_is_a_configuration_error_naming_the_schedule() -> None:
    with pytest.raises(ConfigurationError, match=r"'reports\.digest'.*'not a cron'"):
        CronSchedule("reports.digest", "not a cron", "reports.digest")
    with pytest.raises(ConfigurationError, match="'minute61'"):
        CronSchedule("minute61", "61 * * * *", "h")


def test_the_decorator_rejects_a_bad_expression_and_registers_nothing() -> None:
    app = Polyqueue(database_url="postgresql://unused/db")

    with pytest.raises(ConfigurationError, match="'nightly'"):

        @app.cron("0 25 * * *", name="nightly")
        async def nightly(tick: CronTick) -> None: ...

    assert "nightly" not in app.handlers
    assert "nightly" not in app.cron_schedules


def test_an_unknown_misfire_policy_is_a_configuration_error() -> None:
    with pytest.raises(ConfigurationError, match=r"'s'.*misfire"):
        CronSchedule("s", "* * * * *", "h", misfire="always")  # type: ignore[arg-type]


def test_a_cron_handler_must_take_a_cron_tick() -> None:
    app = Polyqueue(database_url="postgresql://unused/db")

    with pytest.raises(ConfigurationError, match=r"'wrong'.*CronTick"):

        @app.cron("* * * * *", name="wrong")
        async def wrong(payload: Other) -> None: ...

    assert "wrong" not in app.handlers  # not left half-registered
    assert "wrong" not in app.cron_schedules

    @app.cron("* * * * *", name="wrong")  # the name is free again
    async def right(tick: CronTick) -> None: ...

    assert app.cron_schedules["wrong"].handler == "wrong"


def test_two_schedules_cannot_share_a_name() -> None:
    app = Polyqueue(database_url="postgresql://unused/db")

    @app.cron("* * * * *", name="twice")
    async def first(tick: CronTick) -> None: ...

    with pytest.raises(ConfigurationError, match="'twice'"):

        @app.cron("*/5 * * * *", name="twice")
        async def second(tick: CronTick) -> None: ...


def test_a_seconds_field_is_accepted() -> None:
    schedule = CronSchedule("every_second", "* * * * * *", "h")
    assert schedule.due_ticks(at(0, 0, 0), at(0, 0, 3)) == (at(0, 0, 1), at(0, 0, 3))


# -- ticks ------------------------------------------------------------------------------------


def test_due_ticks_excludes_the_start_and_includes_the_end() -> None:
    schedule = CronSchedule("quarterly", "*/15 * * * *", "h")

    assert schedule.due_ticks(at(0, 0), at(1, 0)) == (at(0, 15), at(1, 0))
    assert schedule.due_ticks(at(0, 0), at(0, 15)) == (at(0, 15), at(0, 15))
    assert schedule.due_ticks(at(0, 0, 30), at(0, 14, 59)) is None
    assert schedule.due_ticks(at(0, 15), at(0, 15)) is None


def test_latest_tick_is_at_or_before_now() -> None:
    schedule = CronSchedule("quarterly", "*/15 * * * *", "h")

    assert schedule.latest_tick(at(0, 30)) == at(0, 30)
    assert schedule.latest_tick(at(0, 29, 59)) == at(0, 15)
    assert schedule.latest_tick(at(0, 30) + timedelta(microseconds=1)) == at(0, 30)


def test_the_idempotency_key_is_name_and_iso_tick() -> None:
    schedule = CronSchedule("reports.digest", "0 * * * *", "reports.digest")
    assert schedule.idempotency_key(at(5)) == "cron:reports.digest:2030-01-01T05:00:00+00:00"


def test_a_schedule_far_behind_jumps_to_its_latest_tick() -> None:
    schedule = CronSchedule("every_second", "* * * * * *", "h")
    # 172,800 missed ticks: only the first and the latest matter for firing.
    assert schedule.due_ticks(at(0) - timedelta(days=2), at(0)) == (
        at(0) - timedelta(days=2) + timedelta(seconds=1),
        at(0),
    )


# -- firing -----------------------------------------------------------------------------------


async def test_first_sight_records_the_latest_tick_without_firing(make_app, db) -> None:
    app = cron_app(make_app, "* * * * *", "first_sight")
    async with app:
        report = await Maintenance(app.runtime).run_once(now=T0)

    assert report.leader
    assert report.cron_jobs == []
    assert await cron_jobs(db, "first_sight") == []
    assert await last_tick(db, "first_sight") == at(0, 0)


async def test_a_due_tick_fires_exactly_one_job_with_its_key(make_app, db) -> None:
    app = cron_app(make_app, "* * * * *", "minutely")
    async with app:
        await Maintenance(app.runtime).run_once(now=T0)

        not_yet = await Maintenance(app.runtime).run_once(now=at(0, 0, 59))
        due = await Maintenance(app.runtime).run_once(now=at(0, 1, 5))
        again = await Maintenance(app.runtime).run_once(now=at(0, 1, 30))

        assert not_yet.cron_jobs == []
        assert len(due.cron_jobs) == 1
        assert again.cron_jobs == []
        job = await app.get_job(due.cron_jobs[0])

    assert job.name == "minutely"
    assert (
        job.idempotency_key
        == key("minutely", at(0, 1))
        == "cron:minutely:2030-01-01T00:01:00+00:00"
    )
    assert CronTick.model_validate(job.payload) == CronTick(schedule="minutely", tick=at(0, 1))
    assert await cron_jobs(db, "minutely") == [(key("minutely", at(0, 1)), "queued")]
    assert await last_tick(db, "minutely") == at(0, 1)


async def test_consecutive_rounds_fire_consecutive_ticks(make_app, db) -> None:
    app = cron_app(make_app, "* * * * * *", "secondly")
    async with app:
        await Maintenance(app.runtime).run_once(now=at(0, 0, 0))
        for second in range(1, 6):
            await Maintenance(app.runtime).run_once(
                now=at(0, 0, second) + timedelta(milliseconds=300)
            )

    assert [k for k, _ in await cron_jobs(db, "secondly")] == [
        key("secondly", at(0, 0, s)) for s in range(1, 6)
    ]


async def test_skip_fires_nothing_for_ticks_missed_long_ago(make_app, db) -> None:
    app = cron_app(make_app, "0 * * * *", "hourly_skip", misfire="skip")
    async with app:
        await Maintenance(app.runtime).run_once(now=at(0, 10))

        report = await Maintenance(app.runtime).run_once(now=at(5, 30))  # 01:00..05:00 missed

    assert report.cron_jobs == []
    assert await cron_jobs(db, "hourly_skip") == []
    assert await last_tick(db, "hourly_skip") == at(5)  # advanced: they will not fire later


async def test_skip_still_fires_the_latest_tick_when_it_is_recent(make_app, db) -> None:
    app = cron_app(make_app, "0 * * * *", "hourly_recent", misfire="skip")
    async with app:
        await Maintenance(app.runtime).run_once(now=at(0, 10))

        report = await Maintenance(app.runtime).run_once(now=at(5, 0, 20))

    assert len(report.cron_jobs) == 1
    assert await cron_jobs(db, "hourly_recent") == [(key("hourly_recent", at(5)), "queued")]


async def test_run_once_fires_one_job_for_the_latest_missed_tick(make_app, db) -> None:
    app = cron_app(make_app, "0 * * * *", "hourly_once", misfire="run_once")
    async with app:
        await Maintenance(app.runtime).run_once(now=at(0, 10))

        report = await Maintenance(app.runtime).run_once(now=at(5, 30))
        later = await Maintenance(app.runtime).run_once(now=at(5, 45))

    assert len(report.cron_jobs) == 1
    assert later.cron_jobs == []
    assert await cron_jobs(db, "hourly_once") == [(key("hourly_once", at(5)), "queued")]
    assert await last_tick(db, "hourly_once") == at(5)


async def test_two_apps_firing_the_same_tick_create_one_job(make_app, db) -> None:
    apps = [cron_app(make_app, "* * * * *", "shared") for _ in range(2)]
    async with apps[0], apps[1]:
        await Maintenance(apps[0].runtime).run_once(now=T0)

        await asyncio.gather(*(Maintenance(app.runtime).run_once(now=at(0, 1, 5)) for app in apps))

        assert await cron_jobs(db, "shared") == [(key("shared", at(0, 1)), "queued")]

        # A scheduler that read the older last tick (the ledger moved back under it) fires
        # the same tick again: the idempotency key keeps it to one job.
        await db.execute(
            "UPDATE polyqueue.cron_schedules SET last_tick = $1 WHERE name = 'shared'", at(0)
        )
        report = await Maintenance(apps[1].runtime).run_once(now=at(0, 1, 10))

    jobs = await cron_jobs(db, "shared")
    assert jobs == [(key("shared", at(0, 1)), "queued")]
    (existing,) = await db.fetch("SELECT id FROM polyqueue.jobs WHERE name = 'shared'")
    assert report.cron_jobs in ([], [existing["id"]])
