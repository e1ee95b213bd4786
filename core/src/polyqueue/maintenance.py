"""`Maintenance`: the cluster-wide housekeeping round, led by one worker at a time.

Each round, in one transaction under an advisory lock (the other workers skip the round):
reap silent workers to `dead`; fail poison jobs and reclaim the other running jobs of workers
that are gone; apply the timeout strategy to jobs past `timeout_at`; republish notices of jobs
`queued` for too long; prune finished jobs past retention; fire due cron ticks. A prune
backlog larger than one batch is worked off after the round's transaction, batch by batch,
each its own short commit, for at most `PRUNE_SECONDS` per round.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from polyqueue.cron import fire_due
from polyqueue.events import QueueDepth
from polyqueue.flow import flow_channel
from polyqueue.notices import notice_message
from polyqueue.plugins import emit
from polyqueue.status import FINISHED, JobStatus
from polyqueue.supervision import supervise

if TYPE_CHECKING:
    from polyqueue.broker import Message
    from polyqueue.runtime import Runtime
    from polyqueue.store import SqlExecutor

__all__ = ["Maintenance", "MaintenanceReport"]

log = logging.getLogger(__name__)

BATCH = 1000  # rows per service per round; a backlog is worked off over several rounds
PRUNE_SECONDS = 2.0
"""Time a leader spends per round pruning a backlog beyond the round's own batch: finished
rows come in as fast as jobs finish, so one batch per round could never keep up."""
UNFINISHED = [status.value for status in JobStatus if status not in FINISHED]


@dataclass(slots=True)
class MaintenanceReport:
    """What one round did (empty when another worker led it)."""

    leader: bool = False
    dead_workers: list[str] = field(default_factory=list)
    reclaimed: list[int] = field(default_factory=list)
    poisoned: list[int] = field(default_factory=list)
    timed_out: list[int] = field(default_factory=list)
    republished: list[int] = field(default_factory=list)
    released: list[int] = field(default_factory=list)
    """Dependents released by settling edges no outcome had settled."""
    pruned: int = 0
    pruned_workers: int = 0
    cron_jobs: list[int] = field(default_factory=list)


class Maintenance:
    """Runs rounds every `maintenance_interval` seconds for as long as its worker runs."""

    def __init__(self, runtime: Runtime) -> None:
        self._runtime = runtime
        self._last_failure = -math.inf  # monotonic time of the last round that failed

    async def run(self) -> None:
        """Lead or skip a round, then wait for the next, forever (supervised: a failed
        round is logged and the next one comes after a backoff).

        After a round failed (the database was out of reach from here, so most likely from
        the other workers too), reaping and reclaiming wait `worker_stale_after` seconds:
        the workers get the time to heartbeat again instead of all being declared dead at
        once and their jobs run twice.
        """
        settings = self._runtime.settings

        async def step() -> None:
            recover = time.monotonic() - self._last_failure >= settings.worker_stale_after
            try:
                report = await self.run_once(recover=recover)
            except Exception:
                self._last_failure = time.monotonic()
                raise
            _log_report(report)
            await asyncio.sleep(settings.maintenance_interval)

        await supervise("maintenance", step)

    async def run_once(
        self, now: datetime | None = None, *, recover: bool = True
    ) -> MaintenanceReport:
        """One round; `now` overrides the clock for cron (tests). Without `recover`, silent
        workers are not reaped nor their jobs reclaimed in this round."""
        runtime, store = self._runtime, self._runtime.store
        report = MaintenanceReport()
        messages: list[Message] = []
        async with store.transaction() as connection:
            if not await store.maintenance_lock(runtime.settings.schema_name, connection):
                return report
            report.leader = True
            idle_timeout = max(5.0, 2 * runtime.settings.maintenance_interval)
            await store.maintenance_guard(idle_timeout, connection)
            if recover:
                messages += await self._recover(connection, report)
            messages += await self._settle_dependencies(connection, report)
            messages += await self._republish(connection, report)
            report.pruned = await self._prune(connection)
            report.pruned_workers = await runtime.store.worker_prune(
                runtime.settings.retention_workers, connection
            )
            await runtime.store.flow_starts_prune(connection)
            report.cron_jobs = await self._fire_cron(connection, now or datetime.now(UTC))
            if messages and runtime.broker.capabilities.transactional_publish:
                await runtime.broker.publish_in(connection, messages)
                messages = []
        await runtime.publisher.publish(messages)
        if report.pruned == BATCH:
            report.pruned += await self._prune_backlog()
        await self._sample_depth()
        return report

    async def _prune_backlog(self) -> int:
        """Prune batch after batch, each its own statement and commit (no lock held between
        them: workers are never kept waiting), until a batch comes back short or
        `PRUNE_SECONDS` have passed; the rows deleted."""
        deadline = time.monotonic() + PRUNE_SECONDS
        pruned = 0
        while time.monotonic() < deadline:
            deleted = await self._prune(self._runtime.store.pool)
            pruned += deleted
            if deleted < BATCH:
                break
        return pruned

    async def _sample_depth(self) -> None:
        """Emit the queue-depth event per queue and unfinished status, zeros included (so a
        drained queue reads 0); skipped when no plugin implements the hook."""
        manager = self._runtime.plugin_manager
        if not manager.hook.polyqueue_queue_depth.get_hookimpls():
            return
        rows = await self._runtime.store.job_stats(60.0)
        counts = {(row["queue"], row["status"]): row["jobs"] for row in rows}
        for queue in sorted({row["queue"] for row in rows}):
            for status in UNFINISHED:
                event = QueueDepth(queue, status, counts.get((queue, status), 0))
                emit(manager, "polyqueue_queue_depth", event)

    async def _recover(self, connection: SqlExecutor, report: MaintenanceReport) -> list[Message]:
        settings, store = self._runtime.settings, self._runtime.store
        report.dead_workers = await store.worker_reap(settings.worker_stale_after, connection)
        stale_after = settings.worker_stale_after
        report.poisoned = await store.job_fail_poison(
            settings.max_reclaims, stale_after, connection
        )
        reclaimed = await store.job_reclaim(settings.max_reclaims, stale_after, connection)
        report.reclaimed = [row["id"] for row in reclaimed]
        expired = await store.job_expire_timeouts(
            settings.retry_backoff_base, settings.retry_backoff_max, BATCH, connection
        )
        report.timed_out = [row["id"] for row in expired]
        return [notice_message(r["id"], r["queue"], r["priority"]) for r in reclaimed]

    async def _settle_dependencies(
        self, connection: SqlExecutor, report: MaintenanceReport
    ) -> list[Message]:
        """Settle the edges of finished jobs that no outcome settled: failed here (poison,
        time-out backstop), or left by a crash between an outcome and its settle."""
        store = self._runtime.store
        finished = await store.dependency_settle_stale(BATCH, connection)
        if not finished:
            return []
        channel = self._runtime.producer.announce_channel
        flow = flow_channel(self._runtime.settings)
        released = await store.dependency_settle(finished, connection, channel, flow)
        report.released = [r.id for r in released]
        if channel is not None:  # the statement wrote their notices
            return []
        return [
            notice_message(r.id, r.queue, r.priority)
            for r in released
            if r.status == "queued" and not r.held_back
        ]

    async def _republish(self, connection: SqlExecutor, report: MaintenanceReport) -> list[Message]:
        if self._runtime.publisher.pending:
            return []  # the broker is down here: republishing would only grow the backlog
        after = self._runtime.settings.republish_after
        rows = await self._runtime.store.job_republish_stale(after, BATCH, connection)
        jobs = {notice_message(r["id"], r["queue"], r["priority"]): r["id"] for r in rows}
        messages = await self._runtime.broker.unheld(list(jobs))
        report.republished = [jobs[message] for message in messages]
        return messages

    async def _prune(self, connection: SqlExecutor) -> int:
        settings = self._runtime.settings
        return await self._runtime.store.job_prune(
            settings.retention_succeeded,
            settings.retention_failed,
            settings.retention_cancelled,
            BATCH,
            connection,
        )

    async def _fire_cron(self, connection: SqlExecutor, now: datetime) -> list[int]:
        if not self._runtime.parts.cron_schedules:
            return []
        grace = max(60.0, 2 * self._runtime.settings.maintenance_interval)
        return await fire_due(
            list(self._runtime.parts.cron_schedules.values()),
            store=self._runtime.store,
            producer=self._runtime.producer,
            connection=connection,
            now=now,
            grace=grace,
        )


def _log_report(report: MaintenanceReport) -> None:
    if report.dead_workers:
        log.warning("maintenance: workers %s are dead", ", ".join(report.dead_workers))
    if report.reclaimed:
        log.warning("maintenance: reclaimed jobs %s from dead workers", report.reclaimed)
    if report.poisoned:
        log.error("maintenance: failed poison jobs %s (they kept killing workers)", report.poisoned)
    if report.timed_out:
        log.warning("maintenance: jobs %s passed their time limit backstop", report.timed_out)
    if report.republished:
        log.info("maintenance: republished %d notices", len(report.republished))
    if report.pruned:
        log.info("maintenance: pruned %d finished jobs", report.pruned)
    if report.pruned_workers:
        log.info("maintenance: pruned %d rows of stopped workers", report.pruned_workers)
