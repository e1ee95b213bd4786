"""Cron with two scheduler processes: each tick of a per-second schedule fires exactly once."""

from __future__ import annotations

import collections
import signal
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

import pytest
from cron_app import SCHEDULE
from recovery_support import require_alive, worker_processes

from polyqueue.testing.helpers import eventually

if TYPE_CHECKING:
    from pathlib import Path

pytestmark = pytest.mark.slow

TICKS = 6


async def test_two_scheduler_processes_fire_each_tick_exactly_once(
    db, clean_database, tmp_path: Path
) -> None:
    await db.execute("DELETE FROM polyqueue.cron_schedules WHERE name = $1", SCHEDULE)
    settings = {"maintenance_interval": 0.2, "heartbeat_interval": 0.2, "scheduler_interval": 0.1}
    with worker_processes("cron_app.py", clean_database, tmp_path) as processes:
        workers = [processes.spawn(**settings) for _ in range(2)]

        async def fired_enough() -> bool:
            require_alive(*workers)
            count = await db.fetchval(
                "SELECT count(*) FROM polyqueue.jobs WHERE name = $1", SCHEDULE
            )
            return count >= TICKS

        await eventually(fired_enough, timeout=30)
        competing = await db.fetchval(
            "SELECT count(DISTINCT pid) FROM polyqueue.workers WHERE status = 'running'"
        )
        for worker in workers:
            worker.process.send_signal(signal.SIGTERM)
        for worker in workers:
            assert await worker.exited() == 0

    rows = await db.fetch(
        "SELECT idempotency_key, payload->>'tick' AS tick, status::text AS status,"
        " result #>> '{}' AS result FROM polyqueue.jobs WHERE name = $1 ORDER BY id",
        SCHEDULE,
    )
    assert competing == 2  # both processes were up and competing for every round
    ticks = [datetime.fromisoformat(r["tick"]) for r in rows]
    per_tick = collections.Counter(ticks)
    assert [t for t, n in per_tick.items() if n > 1] == []  # no tick fired twice
    for row, tick in zip(rows, ticks, strict=True):
        assert row["idempotency_key"] == f"cron:{SCHEDULE}:{tick.isoformat()}"
        assert tick.microsecond == 0
    ordered = sorted(per_tick)
    expected = [ordered[0] + timedelta(seconds=s) for s in range(len(ordered))]
    assert ordered == expected  # contiguous seconds from the first to the last: no gap
    ran = [r for r in rows if r["status"] == "succeeded"]
    assert ran, "no cron job ran"
    for row in ran:  # the handler got its tick
        assert datetime.fromisoformat(row["result"]) == datetime.fromisoformat(row["tick"])
