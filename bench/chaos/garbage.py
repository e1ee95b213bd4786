"""Garbage pushed straight into a broker: bodies that are not notices, and native oddities."""

from __future__ import annotations

import asyncio
import contextlib
from typing import TYPE_CHECKING

import asyncpg

from backends import scoped_env  # bench/backends.py
from polyqueue import Polyqueue
from polyqueue.broker import Message

if TYPE_CHECKING:
    from chaos.cluster import Cluster

__all__ = ["GARBAGE", "push_garbage"]

QUEUE = "chaos"
MISSING_JOB = 2_000_000_000
GARBAGE = [
    b"not json",
    b"\xff\xfe\x00\x01",
    b"{}",
    b"[]",
    b"null",
    b'"a string"',
    b'{"job_id": -5}',
    b'{"job_id": "12"}',
    b'{"job_id": 1.5}',
    b'{"job_id": true}',
    b'{"job_id": %d}' % MISSING_JOB,
    b'{"job_id": 1' + b"0" * 40 + b"}",
    b"x" * 60_000,
]


async def push_garbage(cluster: Cluster) -> str:
    """Publish every `GARBAGE` body through the broker, then the backend's native oddities.
    Returns what was pushed (and what the broker refused)."""
    refused: list[str] = []
    with scoped_env(cluster.direct_env()):
        app = Polyqueue()
        async with app:
            for body in GARBAGE:
                try:
                    await app.broker.publish([Message(queue=QUEUE, body=body)])
                except Exception as exc:
                    refused.append(f"{body[:12]!r}: {type(exc).__name__}")
    native = await _native(cluster)
    note = f"{len(GARBAGE) - len(refused)} bodies published, {native}"
    return note + (f"; refused: {', '.join(refused)}" if refused else "")


async def _native(cluster: Cluster) -> str:
    if cluster.backend == "redis":
        return await _redis(cluster)
    if cluster.backend == "sqs":
        return await asyncio.to_thread(_sqs, cluster)
    connection = await asyncpg.connect(cluster.database_url)
    try:
        if cluster.backend == "pgmq":
            return await _pgmq(connection)
        await connection.execute(
            "INSERT INTO polyqueue.broker_messages (queue, body) VALUES ($1, $2), ($1, $3)",
            QUEUE,
            b"\x00\x01garbage",
            b'{"job_id": %d}' % MISSING_JOB,
        )
        return "2 raw broker_messages rows"
    finally:
        await connection.close()


async def _redis(cluster: Cluster) -> str:
    """A ready message id with no body, and a body hash entry that is not bytes of a notice."""
    from redis.asyncio import Redis  # noqa: PLC0415  (only for redis)

    assert cluster.redis is not None  # noqa: S101
    base = f"chaos-{cluster.tag}:{QUEUE}:"
    client = Redis.from_url(cluster.redis.url)
    try:
        await client.zadd(base + "ready", {"987654321": 0})
        await client.hset(base + "bodies", "987654322", "\x00garbage")
        await client.zadd(base + "ready", {"987654322": 0})
    finally:
        await client.aclose()
    return "2 raw ready ids (one without a body)"


def _sqs(cluster: Cluster) -> str:
    """Raw SendMessage bodies, without anything the plugin adds."""
    import boto3  # noqa: PLC0415  (moto's dependency; only for sqs)

    assert cluster.moto is not None  # noqa: S101
    client = boto3.client(
        "sqs",
        endpoint_url=cluster.moto.url,
        region_name="us-east-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",  # noqa: S106  (moto's)
    )
    url = client.get_queue_url(QueueName=f"chaos-{cluster.tag}-{QUEUE}")["QueueUrl"]
    bodies = ["raw garbage", '{"job_id": 0}', "\u2603" * 10]
    for body in bodies:
        client.send_message(QueueUrl=url, MessageBody=body)
    return f"{len(bodies)} raw SendMessage bodies"


async def _pgmq(connection: asyncpg.Connection) -> str:
    """Messages sent with pgmq.send by hand: a JSON array, and a lying encoding header."""
    queue = "pq_" + QUEUE
    await connection.execute("SELECT pgmq.send($1, '[1, 2]'::jsonb)", queue)
    with contextlib.suppress(asyncpg.PostgresError):  # pgmq without headers: skip that one
        await connection.execute(
            'SELECT pgmq.send($1, \'"%%%"\'::jsonb, \'{"polyqueue_encoding": "base64"}\'::jsonb)',
            queue,
        )
    return "raw pgmq.send messages"
