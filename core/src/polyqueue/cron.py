"""Cron: schedules that enqueue a job per tick, exactly once across any number of schedulers."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Literal

from pydantic import BaseModel, ConfigDict

from polyqueue.exceptions import ConfigurationError
from polyqueue.producer import EnqueueOptions

if TYPE_CHECKING:
    from collections.abc import Sequence

    from croniter import croniter

    from polyqueue.producer import Producer
    from polyqueue.store import JobStore, SqlExecutor

__all__ = ["CronSchedule", "CronTick", "Misfire", "fire_due"]

log = logging.getLogger(__name__)

Misfire = Literal["skip", "run_once"]


class CronTick(BaseModel):
    """The payload of a cron job: which schedule fired, for which tick."""

    model_config = ConfigDict(frozen=True)

    schedule: str
    tick: datetime


@dataclass(frozen=True, slots=True)
class CronSchedule:
    """A cron expression bound to a handler, with its misfire policy."""

    name: str
    expression: str
    handler: str
    misfire: Misfire = "skip"

    def __post_init__(self) -> None:
        if not _croniter().is_valid(self.expression):
            raise ConfigurationError(
                f"cron schedule {self.name!r}: invalid cron expression {self.expression!r}"
            )
        if self.misfire not in {"skip", "run_once"}:
            raise ConfigurationError(
                f"cron schedule {self.name!r}: misfire must be 'skip' or 'run_once'"
            )

    def due_ticks(self, after: datetime, until: datetime) -> tuple[datetime, datetime] | None:
        """The first and the latest tick in `(after, until]`, or None if there is none.

        Constant time however far behind the schedule is (a per-second schedule two days
        behind has 172,800 ticks): firing only needs the latest, and whether it is the first.
        """
        first: datetime = _croniter()(self.expression, after).get_next(datetime)
        if first > until:
            return None
        return first, self.latest_tick(until)

    def latest_tick(self, now: datetime) -> datetime:
        """The most recent tick at or before `now`."""
        tick: datetime = _croniter()(self.expression, now + timedelta(microseconds=1)).get_prev(
            datetime
        )
        return tick

    def idempotency_key(self, tick: datetime) -> str:
        """The key that makes a tick fire once, whoever fires it."""
        return f"cron:{self.name}:{tick.isoformat()}"


async def fire_due(
    schedules: Sequence[CronSchedule],
    *,
    store: JobStore,
    producer: Producer,
    connection: SqlExecutor,
    now: datetime,
    grace: float,
) -> list[int]:
    """Enqueue each schedule's due tick inside `connection`'s transaction; return job ids.

    A schedule seen for the first time starts from its latest tick without firing it. Ticks
    missed while nothing ran are skipped (`skip`: only a tick younger than `grace` seconds
    fires) or collapsed into one run of the latest (`run_once`).
    """
    last_ticks = await store.cron_last_ticks([s.name for s in schedules], connection)
    fired: list[int] = []
    for schedule in schedules:
        last = last_ticks.get(schedule.name)
        if last is None:
            await store.cron_advance(
                schedule.name, schedule.expression, schedule.latest_tick(now), connection
            )
            continue
        due = schedule.due_ticks(last, now)
        if due is None:
            continue
        first, tick = due
        if schedule.misfire == "run_once" or (now - tick).total_seconds() <= grace:
            fired += await _enqueue_tick(schedule, tick, producer, connection)
        if first != tick:
            log.info(
                "cron %s: ticks from %s were missed (%s)", schedule.name, first, schedule.misfire
            )
        await store.cron_advance(schedule.name, schedule.expression, tick, connection)
    return fired


async def _enqueue_tick(
    schedule: CronSchedule, tick: datetime, producer: Producer, connection: SqlExecutor
) -> list[int]:

    options = EnqueueOptions(idempotency_key=schedule.idempotency_key(tick))
    jobs = producer.build(schedule.handler, [CronTick(schedule=schedule.name, tick=tick)], options)
    return [row.id for row in await producer.insert(jobs, connection)]


def _croniter() -> type[croniter]:
    """croniter and dateutil, imported by the first schedule: an app without cron does not
    pay their import at start (about 60 ms when bytecode is not cached)."""
    from croniter import croniter  # noqa: PLC0415

    return croniter
