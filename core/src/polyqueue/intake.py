"""`Intake`: how a worker turns free slots into claimed jobs.

It receives notices and claims their jobs (with a broker in the jobs database, both in one
statement: `Broker.receive_claiming`), and settles every notice it cannot use: a duplicate
or a notice of a finished job is acked, a notice of a job locked elsewhere or held by this
worker is given back to look at again, a message that is not a notice is dropped. A notice
of a job held back by flow control is acked too, and the job is left to `flow_claim`, which
starts held-back jobs (without a notice) when their limits have room (`polyqueue.flow`).
"""

from __future__ import annotations

import contextlib
import logging
from typing import TYPE_CHECKING

from polyqueue.broker import ClaimTerms, present
from polyqueue.exceptions import PolyqueueError
from polyqueue.flow import FlowSignal, flow_channel
from polyqueue.notices import InvalidNoticeError, decode_notice, notice_message

if TYPE_CHECKING:
    from collections.abc import Callable, Collection, Sequence

    from polyqueue.broker import Delivery
    from polyqueue.job import ClaimedJob
    from polyqueue.runtime import Runtime

__all__ = ["Intake"]

log = logging.getLogger("polyqueue.worker")  # the worker's lines, under its logger as before

LOOK_AGAIN_SECONDS = 0.1
"""Delay before a notice whose job could not be claimed yet is delivered again."""

Claimed = list[tuple["ClaimedJob", "Delivery | None"]]
"""Claimed jobs with their deliveries; None for a held-back job started by `flow_claim`."""


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
        channel = flow_channel(runtime.settings)
        self.flow = FlowSignal(
            runtime.broker.interrupt, lambda: store.notify(channel, "", store.pool)
        )

    async def take(
        self,
        limit: int,
        worker_id: str,
        held: Collection[int],
        *,
        held_back_limit: int | None = None,
    ) -> Claimed:
        """Up to `limit` jobs claimed for `worker_id`, with their deliveries; `held` are the
        jobs the worker still holds an attempt of (never claimed twice). Jobs held back by
        flow control are claimed only up to `held_back_limit` (default `limit`): the worker
        passes its free slots, so a limited job is never claimed ahead to wait for a slot
        while another worker could run it."""
        flow_limit = limit if held_back_limit is None else min(limit, held_back_limit)
        if (
            flow_limit > 0
            and self.flow.take()
            and (flowing := await self._claim_held_back(flow_limit, worker_id))
        ):
            return flowing
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

    async def _claim_held_back(self, limit: int, worker_id: str) -> Claimed:
        """Start held-back jobs whose limits have room (one statement under the flow lock);
        look again soon if some still wait and none could start."""
        runtime = self._runtime
        jobs = await runtime.store.flow_claim(
            self._queues, limit, worker_id, runtime.settings.timeout_backstop_seconds
        )
        self.flow.binding = len(jobs) < limit
        if len(jobs) == limit:
            self.flow.poke()  # there may be more: look again before the next receive
        elif not jobs and await runtime.store.flow_waiting(self._queues):
            self.flow.poke_later()  # waiting for a rate limit's window or a slot elsewhere
        return [(job, None) for job in jobs]

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

    async def give_back(
        self, stopped: Sequence[tuple[ClaimedJob, Delivery | None]], worker_id: str
    ) -> None:
        """Queue jobs a stopping worker claimed but did not finish again, with fresh notices
        (their deliveries may have expired): one statement, one publish and one ack for all.
        A failure is left to maintenance, which reclaims what was not given back."""
        runtime = self._runtime
        with contextlib.suppress(PolyqueueError):
            jobs = [job for job, _ in stopped]
            released = await runtime.store.job_release_many(
                [(j.id, j.attempt) for j in jobs], worker_id
            )
            notices = [notice_message(j.id, j.queue, j.priority) for j in jobs if j.id in released]
            await runtime.publisher.publish(notices)
            await runtime.broker.ack(present([delivery for _, delivery in stopped]))

    async def _settle_unclaimed(self, unclaimed: dict[int, Delivery], drop: list[Delivery]) -> None:
        """Drop notices of jobs that are not claimable; keep those of jobs still queued."""
        runtime = self._runtime
        retry: list[Delivery] = []
        if unclaimed:
            statuses = await runtime.store.job_status_many(list(unclaimed))
            queued = [job_id for job_id in unclaimed if statuses.get(job_id) == "queued"]
            held_back = await runtime.store.flow_held_back(queued) if queued else set()
            if held_back:
                self.flow.poke()  # flow_claim starts them when their limits have room
            for job_id, delivery in unclaimed.items():
                status = statuses.get(job_id)
                if job_id in held_back:
                    drop.append(delivery)  # waits in PostgreSQL, not in the broker
                elif status == "queued":
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
