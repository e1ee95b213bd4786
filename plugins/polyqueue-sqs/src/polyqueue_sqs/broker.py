"""`SqsBroker`: notices in SQS queues, owned by receipt handle and visibility timeout."""

from __future__ import annotations

import asyncio
import functools
import logging
import time
from collections import defaultdict, deque
from dataclasses import replace
from typing import TYPE_CHECKING, Any, ClassVar, Self

from polyqueue.broker import Broker, BrokerEnvironment, Capabilities, Delivery, Message
from polyqueue.exceptions import BrokerError, BrokerUnavailableError, PolyqueueError
from polyqueue.wakeup import Wakeup
from polyqueue_sqs.entries import (
    BATCH,
    MAX_DELAY_SECONDS,
    MAX_VISIBILITY_SECONDS,
    batches,
    long_poll_seconds,
    received_body,
    send_entry,
    sqs_queue_name,
    whole_seconds,
)
from polyqueue_sqs.receipts import DeleteBuffer, Receipt
from polyqueue_sqs.settings import SqsBrokerSettings, load_sqs_settings

if TYPE_CHECKING:
    from collections.abc import Coroutine, Iterable, Sequence

    from polyqueue_sqs.client import SqsClient

__all__ = ["SqsBroker"]

log = logging.getLogger(__name__)

SHORT_POLL_PAUSE = 0.1
"""Pause after an empty short poll (a receive with less than a second left)."""
HOLD_SECONDS = 1.0
"""Longest a received message waits in the broker for a `receive` to take it (at most a
quarter of the visibility timeout), then it is released for other consumers."""
RECEIVE_SLACK = 0.25
"""SQS starts a message's visibility between sending ReceiveMessage and its reply (for a long
poll, when the message is handed out): counted from `RECEIVE_SLACK` before the reply, or from
the send if that is later."""


class SqsBroker(Broker):
    """One SQS queue per Polyqueue queue; a delivery's handle is a `Receipt`.

    Ownership is SQS's visibility timeout: `extend` and `nack` change it, `ack` deletes the
    message. A stale receipt (the message became visible and was received again) is ignored.

    Each queue has at most one `ReceiveMessage` in flight, and it outlives the `receive` that
    started it: a `receive` over several queues returns as soon as one has messages, and what
    the others bring (or anything beyond `max_messages`) waits for the next `receive`, at most
    `HOLD_SECONDS`, instead of being released and received again. Acks are deleted ten per
    call across `ack` calls (`DeleteBuffer`).
    """

    name: ClassVar[str] = "sqs"
    capabilities: Capabilities = Capabilities(
        max_batch=BATCH,
        native_delay=True,
        max_delay_seconds=float(MAX_DELAY_SECONDS),
        priority=False,
    )

    def __init__(
        self, settings: SqsBrokerSettings | None = None, *, lease_seconds: float = 30.0
    ) -> None:
        super().__init__(lease_seconds=lease_seconds)
        self.settings = settings if settings is not None else load_sqs_settings()
        if self.settings.fifo:  # FIFO queues take no per-message delay
            self.capabilities = replace(self.capabilities, native_delay=False, max_delay_seconds=0)
        self.visibility_timeout = self.settings.visibility_timeout or lease_seconds
        self._visibility = whole_seconds(self.visibility_timeout, MAX_VISIBILITY_SECONDS)
        self._hold = min(HOLD_SECONDS, self._visibility / 4)
        self._client: SqsClient | None = None
        self._deletes: DeleteBuffer | None = None
        self._closing = False
        self._polls: dict[str, asyncio.Task[list[Delivery]]] = {}
        self._failures: dict[str, BaseException] = {}
        self._held: list[tuple[float, Delivery]] = []
        self._intake: deque[tuple[float, int]] = deque()
        self._release_timer: asyncio.TimerHandle | None = None
        self._wakeup = Wakeup()
        self._background: set[asyncio.Task[None]] = set()

    @classmethod
    def from_environment(cls, environment: BrokerEnvironment) -> Self:
        """Read `POLYQUEUE_SQS_*`; the lease comes from `POLYQUEUE_LEASE_SECONDS`."""
        return cls(load_sqs_settings(), lease_seconds=environment.settings.lease_seconds)

    @property
    def client(self) -> SqsClient:
        """The started client (`BrokerUnavailableError` once closed)."""
        return self._require()

    async def start(self) -> None:
        """Create the one aiobotocore client of this broker (no call is made yet)."""
        from polyqueue_sqs.client import SqsClient  # noqa: PLC0415  (lazy SDK import)

        client = SqsClient(self.settings, self._visibility)
        await client.open()
        self._client = client
        self._deletes = DeleteBuffer(client.delete_batch)
        self._closing = False

    async def close(self) -> None:
        """Return waiting receives, cancel polls, release held messages, send pending acks,
        close the client. Idempotent."""
        self._closing = True
        self.interrupt()
        polls = list(self._polls.values())
        for poll in polls:
            poll.cancel()
        if polls:
            await asyncio.wait(polls)
        self._failures.clear()
        if self._release_timer is not None:
            self._release_timer.cancel()
            self._release_timer = None
        held, self._held = [delivery for _, delivery in self._held], []
        client, self._client = self._client, None
        deletes, self._deletes = self._deletes, None
        if client is not None:
            if held:
                await self._release(client, held)
            if deletes is not None:
                await deletes.flush()
            while self._background:
                await asyncio.wait(set(self._background))
            await client.close()

    def interrupt(self) -> None:
        """Receives waiting now return `[]`; their polls go on, what they bring is held."""
        self._wakeup.interrupt()

    # -- publishing ---------------------------------------------------------------------------

    async def prepare_queue(self, queue: str) -> None:
        """Refuse a queue whose SQS name SQS would refuse (`BrokerError`), before its first
        job is inserted. No call to SQS: an enqueue still succeeds while SQS is down."""
        sqs_queue_name(self.settings, queue)

    async def publish(self, messages: Sequence[Message]) -> None:
        """SendMessageBatch per queue in tens; the batches of a call run concurrently."""
        client = self._require()
        by_queue: defaultdict[str, list[Message]] = defaultdict(list)
        for message in messages:
            by_queue[message.queue].append(message)
        await _all(
            client.send_batch(queue, [send_entry(i, m, self.settings) for i, m in enumerate(chunk)])
            for queue, queued in by_queue.items()
            for chunk in batches(queued)
        )

    async def unheld(self, messages: Sequence[Message]) -> list[Message]:
        """SQS cannot tell which messages it holds, only how many: a queue that holds at
        least as many messages as are asked about is taken to hold them, and none of its
        messages is returned; otherwise all of them are. The republisher then rings only for
        queues that cannot hold every missing notice, instead of piling duplicates behind a
        backlog that workers are still draining (each duplicate costs them a receive, a
        lookup and a delete, and delays the notices behind it). A count that cannot be read
        returns every message, as a broker that cannot tell does."""
        by_queue: defaultdict[str, list[Message]] = defaultdict(list)
        for message in messages:
            by_queue[message.queue].append(message)
        client = self._require()
        unheld: list[Message] = []
        for queue, asked in by_queue.items():
            try:
                held = await client.depth(queue)
            except BrokerError:
                held = 0
            if held < len(asked):
                unheld += asked
        return unheld

    # -- receiving ----------------------------------------------------------------------------

    async def receive(
        self, queues: Sequence[str], *, max_messages: int, wait_seconds: float
    ) -> list[Delivery]:
        """Held messages of `queues` first, else long-poll them until one brings messages or
        `wait_seconds` pass (`wait_seconds=0`: one round trip)."""
        self._require()
        if not queues or max_messages <= 0:
            return []
        deadline = time.monotonic() + wait_seconds
        waiter = self._wakeup.waiter()
        polled = False
        while True:
            self._raise_failure(queues)
            if waiter.interrupted:  # interrupted, or closing: what came stays held
                return []
            got = self._take(queues, max_messages)
            now = time.monotonic()
            if got:
                self._intake.append((now, len(got)))
                return got
            remaining = deadline - now
            if polled and remaining <= 0:
                return []
            fresh, polls = self._poll(queues, max_messages, deadline)
            waiting, timeout = (polls, remaining) if remaining > 0 else (fresh, None)
            if waiting:  # until a poll ends; an interrupt leaves the polls going
                ended = asyncio.wait(waiting, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
                await waiter.run_unless_interrupted(ended)
            polled = True

    def _poll(
        self, queues: Sequence[str], max_messages: int, deadline: float
    ) -> tuple[list[asyncio.Task[list[Delivery]]], list[asyncio.Task[list[Delivery]]]]:
        """The poll in flight of each queue, started where there is none: (started, all).

        A poll asks for `max_messages`, or for as many as receives took in the last hold
        period if that is more (up to ten): that surplus is likely taken while it is held.
        """
        now = time.monotonic()
        asked = min(max(max_messages, self._recent_intake(now)), BATCH)
        wait = long_poll_seconds(deadline - now, self.settings.wait_time_seconds)
        fresh = []
        for queue in queues:
            if queue not in self._polls:
                fetch = self._fetch(queue, asked, wait, deadline)
                poll = asyncio.get_running_loop().create_task(fetch)
                poll.add_done_callback(functools.partial(self._polled, queue))
                self._polls[queue] = poll
                fresh.append(poll)
        return fresh, [self._polls[queue] for queue in queues]

    async def _fetch(self, queue: str, asked: int, wait: int, deadline: float) -> list[Delivery]:
        """One ReceiveMessage."""
        sent = time.monotonic()
        messages = await self._require().receive(queue, asked, wait)
        replied = time.monotonic()
        if not messages and wait == 0:
            await asyncio.sleep(min(SHORT_POLL_PAUSE, max(deadline - replied, 0.0)))
        since = max(sent, replied - RECEIVE_SLACK)
        deliveries = (self._delivery(queue, message, since) for message in messages)
        return [delivery for delivery in deliveries if delivery is not None]

    def _delivery(self, queue: str, message: dict[str, Any], since: float) -> Delivery | None:
        """A received message as a delivery, invisible from `since`; `None` without a receipt
        handle (nothing could settle it). Its body is never checked here: the core drops
        (acks) what is no notice. Message attributes are never asked for, so none can break
        a receive."""
        handle = message.get("ReceiptHandle")
        if not isinstance(handle, str) or not handle:
            log.warning("skipping a message of SQS queue %r without a receipt handle", queue)
            return None
        receipt = Receipt(handle, since + self._visibility, since)
        return Delivery(self, queue, received_body(message), receipt)

    def _recent_intake(self, now: float) -> int:
        """Deliveries that receives returned during the last hold period."""
        while self._intake and now - self._intake[0][0] > self._hold:
            self._intake.popleft()
        return sum(count for _, count in self._intake)

    def _polled(self, queue: str, poll: asyncio.Task[list[Delivery]]) -> None:
        """A poll ended: hold what it brought, or keep its error for the next receive."""
        if self._polls.get(queue) is poll:
            del self._polls[queue]
        if poll.cancelled():
            return
        error = poll.exception()
        if error is not None:
            self._failures[queue] = error
            return
        now = time.monotonic()
        self._held.extend((now, delivery) for delivery in poll.result())
        self._arm_release()

    def _raise_failure(self, queues: Sequence[str]) -> None:
        for queue in queues:
            error = self._failures.pop(queue, None)
            if error is not None:
                raise error

    def _take(self, queues: Sequence[str], max_messages: int) -> list[Delivery]:
        """Up to `max_messages` held deliveries of `queues`, oldest first."""
        taken: list[Delivery] = []
        kept: list[tuple[float, Delivery]] = []
        for held in self._held:
            if len(taken) < max_messages and held[1].queue in queues:
                taken.append(held[1])
            else:
                kept.append(held)
        self._held = kept
        return taken

    def _arm_release(self) -> None:
        if self._release_timer is None and self._held:
            delay = max(self._held[0][0] + self._hold - time.monotonic(), 0.0)
            self._release_timer = asyncio.get_running_loop().call_later(delay, self._release_stale)

    def _release_stale(self) -> None:
        """Release held messages no receive took in time, so other consumers get them."""
        self._release_timer = None
        now = time.monotonic()
        stale = [delivery for held_at, delivery in self._held if now - held_at >= self._hold]
        self._held = [held for held in self._held if now - held[0] < self._hold]
        if stale and self._client is not None:
            self._spawn(self._release(self._client, stale))
        self._arm_release()

    async def _release(self, client: SqsClient, deliveries: Sequence[Delivery]) -> None:
        try:
            await self._change_visibility(client, deliveries, 0)
        except PolyqueueError as exc:  # they come back once their visibility ends
            log.warning("releasing %d held SQS messages failed: %s", len(deliveries), exc)

    def _spawn(self, work: Coroutine[Any, Any, None]) -> None:
        task = asyncio.get_running_loop().create_task(work)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    # -- settling -----------------------------------------------------------------------------

    async def ack(self, deliveries: Sequence[Delivery]) -> None:
        """Queue for DeleteMessageBatch: ten go at once, fewer within `ACK_LINGER` seconds
        (before their visibility ends); `close` sends the rest. Stale receipts are ignored,
        a failed delete is logged (the message comes back and is dropped)."""
        self._require()
        deletes = self._deletes
        if deletes is not None:  # set with the client
            for queue, receipts in _by_queue(deliveries).items():
                deletes.add(queue, receipts)

    async def nack(self, deliveries: Sequence[Delivery], delay: float = 0.0) -> None:
        """Visible again after `delay` seconds (rounded up, at most SQS's 12 hours)."""
        client = self._require()
        seconds = whole_seconds(delay, MAX_VISIBILITY_SECONDS)
        await self._change_visibility(client, deliveries, seconds)

    async def extend(self, deliveries: Sequence[Delivery], seconds: float) -> None:
        """Invisible for `seconds` more from now (rounded up, at most 12 hours); skipped for
        a delivery that stays invisible long enough until the next call (`needs_extending`)."""
        client = self._require()
        now = time.monotonic()
        due = [d for d in deliveries if _receipt(d).needs_extending(seconds, now)]
        await self._change_visibility(client, due, whole_seconds(seconds, MAX_VISIBILITY_SECONDS))

    async def _change_visibility(
        self, client: SqsClient, deliveries: Sequence[Delivery], seconds: int
    ) -> None:
        sent = time.monotonic()
        await _all(
            client.change_visibility_batch(queue, [r.handle for r in chunk], seconds)
            for queue, receipts in _by_queue(deliveries).items()
            for chunk in batches(receipts)
        )
        for delivery in deliveries:
            _receipt(delivery).invisible_until = sent + seconds

    def _require(self) -> SqsClient:
        if self._client is None or self._closing:
            raise BrokerUnavailableError("the sqs broker is not started", broker=self.name)
        return self._client


async def _all(calls: Iterable[Coroutine[Any, Any, None]]) -> None:
    """Await `calls` concurrently; the first error is raised once all have ended."""
    results = await asyncio.gather(*calls, return_exceptions=True)
    for result in results:
        if isinstance(result, BaseException):
            raise result


def _receipt(delivery: Delivery) -> Receipt:
    receipt: Receipt = delivery.handle
    return receipt


def _by_queue(deliveries: Sequence[Delivery]) -> dict[str, list[Receipt]]:
    groups: defaultdict[str, list[Receipt]] = defaultdict(list)
    for delivery in deliveries:
        groups[delivery.queue].append(_receipt(delivery))
    return dict(groups)
