"""Garbage in SQS queues, written by foreign producers or by hand: bodies that are no notice,
text that is not what a notice encodes to, message attributes of any type and value. Each
such message is logged and deleted; none ends a worker or holds up the notices behind it."""

from __future__ import annotations

import asyncio
import collections
import logging
from typing import TYPE_CHECKING, Any

import pytest
from pydantic import BaseModel
from sqs_support import queue_counts, send_raw

from polyqueue.notices import InvalidNoticeError, decode_notice, encode_notice
from polyqueue.testing.helpers import eventually, running_worker
from polyqueue_sqs.entries import received_body

if TYPE_CHECKING:
    from collections.abc import Callable

    from polyqueue import Polyqueue

GARBAGE = (
    "not json",
    "\ufffd\ufffdnot a notice",  # bytes that were not UTF-8, as SQS keeps them
    " ",
    "null",
    "\x09\x0a\x0d",
    '{"job_id": "seven"}',
    '{"job_id": -3}',
    '{"job_id": 99999999999999999999999}',
    '{"job_id": 987654321}',  # no such job
    "[" * 100_000,
    "x" * 262_144,
)
"""Bodies SQS accepts that are no notice of a job there is."""
ODD_ATTRIBUTES: tuple[dict[str, Any], ...] = (
    {},
    {"blob": {"DataType": "Binary", "BinaryValue": b"\xff\x00\xfe"}},
    {"count": {"DataType": "Number", "StringValue": "not a number"}},
    {"job_id": {"DataType": "String", "StringValue": "seven"}},
    {"job_id": {"DataType": "Binary.custom", "BinaryValue": b"\x80"}},
    {"text": {"DataType": "String.custom", "StringValue": "\ufffd"}},
    {f"key{i}": {"DataType": "String", "StringValue": "v"} for i in range(10)},  # SQS's most
)
"""Message attributes of the wrong type, with garbage values, or none: the broker never asks
for them, so they change nothing."""
QUIET = {"republish_after": 300.0}  # no republished notice: only the raw ones announce jobs


class Item(BaseModel):
    n: int


def counting_app(
    make_app: Callable[..., Polyqueue], **settings: Any
) -> tuple[Polyqueue, collections.Counter[int]]:
    app = make_app(queue_backend="sqs", **settings)
    runs: collections.Counter[int] = collections.Counter()

    @app.register("count")
    async def count(payload: Item) -> None:
        runs[payload.n] += 1

    return app, runs


async def queue_empty(app: Polyqueue, queue: str) -> bool:
    client = app.broker.client  # type: ignore[attr-defined]
    return await queue_counts(client.raw, await client.queue_url(queue)) == (0, 0)


async def inject(app: Polyqueue, queue: str, bodies: list[str], group: str | None = None) -> None:
    """Send `bodies` raw, each with the next odd set of message attributes."""
    client = app.broker.client  # type: ignore[attr-defined]
    url = await client.queue_url(queue)
    for i, body in enumerate(bodies):
        attributes = ODD_ATTRIBUTES[i % len(ODD_ATTRIBUTES)]
        await send_raw(client.raw, url, body, group=group, attributes=attributes)


def test_received_bodies_are_bytes_whatever_the_message_holds() -> None:
    assert received_body({"Body": '{"job_id":7}'}) == b'{"job_id":7}'
    assert received_body({"Body": "caf\u00e9"}) == "caf\u00e9".encode()
    assert received_body({}) == b""
    assert received_body({"Body": None}) == b""
    lone = received_body({"Body": '{"job_id": 7}\ud800'})  # what UTF-8 cannot encode
    with pytest.raises(InvalidNoticeError):
        decode_notice(lone)


async def test_garbage_and_odd_attributes_are_deleted_and_the_worker_lives(
    make_app, sqs_env: str, caplog
) -> None:
    app, runs = counting_app(make_app, **QUIET)
    caplog.set_level(logging.INFO, logger="polyqueue.worker")
    async with app:
        queue = app.settings.default_queue
        client = app.broker.client  # type: ignore[attr-defined]
        ids = [await app.enqueue("count", Item(n=n)) for n in range(3)]
        await app.publisher.flush()  # their notices were handed off: now they are in SQS
        await client.raw.purge_queue(QueueUrl=await client.queue_url(queue))
        notices = [encode_notice(job_id).decode() for job_id in ids]
        await inject(app, queue, [*GARBAGE[:5], *notices, *GARBAGE[5:]])  # odd attributes too
        async with running_worker(app, concurrency=4):
            for job_id in ids:
                assert (await app.wait_for(job_id, timeout=30)).status == "succeeded"
            await eventually(lambda: queue_empty(app, queue), timeout=30)
            later = await app.enqueue("count", Item(n=3))  # the worker still consumes
            assert (await app.wait_for(later, timeout=30)).status == "succeeded"
    assert runs == {0: 1, 1: 1, 2: 1, 3: 1}
    assert "that is not a notice" in caplog.text
    assert "dropping notice of job 987654321 (unknown job id)" in caplog.text


async def test_garbage_ahead_in_a_fifo_group_never_holds_up_the_notices_behind_it(
    make_app, sqs_env: str, monkeypatch
) -> None:
    monkeypatch.setenv("POLYQUEUE_SQS_FIFO", "true")
    monkeypatch.setenv("POLYQUEUE_SQS_FIFO_GROUP", "queue")  # one group: strict order
    app, runs = counting_app(make_app)
    async with app:
        queue = app.settings.default_queue
        await inject(app, queue, list(GARBAGE), group=queue)  # the group the notices join
        ids = await app.enqueue_many("count", [Item(n=n) for n in range(5)])
        async with running_worker(app, concurrency=2):
            done = [app.wait_for(job_id, timeout=60) for job_id in ids]
            assert {job.status for job in await asyncio.gather(*done)} == {"succeeded"}
            await eventually(lambda: queue_empty(app, queue), timeout=30)
    assert runs == dict.fromkeys(range(5), 1)
