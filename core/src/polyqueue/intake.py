"""`Intake`: how a worker turns free slots into claimed jobs.

It receives notices and claims their jobs (with a broker in the jobs database, both in one
statement: `Broker.receive_claiming`), and settles every notice it cannot use: a duplicate
or a notice of a finished job is acked, a notice of a job locked elsewhere or held by this
worker is given back to look at again, a message that is not a notice is dropped.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from polyqueue.broker import ClaimTerms
from polyqueue.notices import InvalidNoticeError, decode_notice

if TYPE_CHECKING:
    from collections.abc import Callable, Collection, Sequence

    from polyqueue.broker import Delivery
    from polyqueue.job import ClaimedJob
    from polyqueue.runtime import Runtime

__all__ = ["Intake"]

log = logging.getLogger("polyqueue.worker")  # the worker's lines, under its logger as before

LOOK_AGAIN_SECONDS = 0.1
"""Delay before a notice whose job could not be claimed yet is delivered again."""

Claimed = list[tuple["ClaimedJob", "Delivery"]]


class Intake:
    """Receives and claims for one worker on `queues`."""

    def __init__(
        self,
        runtime: Runtime,
        queues: Sequence[str],
        *,
        receive_wait: float,
        stopping: Callable[[], bool],
    ) -> None:
        self._runtime = runtime
        self._queues = list(queues)
        self._receive_wait = receive_wait
        self._stopping = stopping
        store = runtime.store
        self._colocated = runtime.broker.colocation(store.url, store.schema) is not None

    async def take(self, limit: int, worker_id: str, held: Collection[int]) -> Claimed:
        """Up to `limit` jobs claimed for `worker_id`, with their deliveries; `held` are the
        jobs the worker still holds an attempt of (never claimed twice)."""
        broker = self._runtime.broker
        if not self._colocated:
            deliveries = await broker.receive(
                self._queues, max_messages=limit, wait_seconds=self._receive_wait
            )
            return await self._claim(deliveries, worker_id, held)
        terms = ClaimTerms(worker_id, self._runtime.settings.timeout_backstop_seconds, list(held))
        received = await broker.receive_claiming(
            self._queues, max_messages=limit, wait_seconds=self._receive_wait, terms=terms
        )
        claimed: Claimed = []
        started: set[int] = set()
        duplicates: list[Delivery] = []
        unclaimed: list[Delivery] = []
        for item in received:
            job = item.job
            if job is not None and job.id in started:
                duplicates.append(item.delivery)  # two notices of one job in this batch
            elif job is not None and job.id not in held:
                claimed.append((job, item.delivery))
                started.add(job.id)
            else:  # not a notice, a job this worker holds, or one locked elsewhere
                unclaimed.append(item.delivery)
        await broker.ack(duplicates)
        if unclaimed:
            claimed += await self._claim(unclaimed, worker_id, held)
        return claimed

    async def _claim(
        self, deliveries: list[Delivery], worker_id: str, held: Collection[int]
    ) -> Claimed:
        """Claim the jobs of `deliveries` (one statement) and settle the other deliveries."""
        runtime = self._runtime
        if self._stopping():
            await runtime.broker.nack(deliveries)
            return []
        wanted, drop, mine = _sort(deliveries, held)
        claimed: Claimed = []
        if wanted:
            jobs = await runtime.store.job_claim_many(
                list(wanted), worker_id, runtime.settings.timeout_backstop_seconds
            )
            claimed = [(job, wanted.pop(job.id)) for job in jobs]
        await self._settle_unclaimed(wanted, drop)
        if mine:
            # The worker still holds an attempt of these jobs (recording its outcome before a
            # retry, or stale after a requeue): look again once it lets go, never drop them.
            await runtime.broker.nack(mine, delay=LOOK_AGAIN_SECONDS)
        return claimed

    async def _settle_unclaimed(self, unclaimed: dict[int, Delivery], drop: list[Delivery]) -> None:
        """Drop notices of jobs that are not claimable; keep those of jobs still queued."""
        runtime = self._runtime
        retry: list[Delivery] = []
        if unclaimed:
            statuses = await runtime.store.job_status_many(list(unclaimed))
            for job_id, delivery in unclaimed.items():
                status = statuses.get(job_id)
                if status == "queued":
                    retry.append(delivery)  # locked by a concurrent transaction: look again
                else:
                    log.info("dropping notice of job %s (%s)", job_id, status or "unknown job id")
                    drop.append(delivery)
        await runtime.broker.ack(drop)
        if retry:
            await runtime.broker.nack(retry, delay=LOOK_AGAIN_SECONDS)


def _sort(
    deliveries: list[Delivery], held: Collection[int]
) -> tuple[dict[int, Delivery], list[Delivery], list[Delivery]]:
    """Split deliveries into notices of jobs to claim (by job id), deliveries to drop (not
    notices, duplicates within the batch) and notices of jobs in `held`."""
    wanted: dict[int, Delivery] = {}
    drop: list[Delivery] = []
    mine: list[Delivery] = []
    for delivery in deliveries:
        try:
            job_id = decode_notice(delivery.body)
        except InvalidNoticeError as exc:
            log.warning(
                "dropping a message on queue %r that is not a notice: %s", delivery.queue, exc
            )
            drop.append(delivery)
            continue
        if job_id in wanted:
            drop.append(delivery)
        elif job_id in held:
            mine.append(delivery)
        else:
            wanted[job_id] = delivery
    return wanted, drop, mine
