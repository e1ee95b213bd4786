"""The republisher and an SQS backlog: SQS can count the messages a queue holds, not name
them, so notices are rung again only for a queue that cannot hold every missing one.

Found by the fault-injection runner (bench/chaos.py): after repeated PostgreSQL crashes under
load, every job left queued behind a backlog was republished again and again, the duplicates
piled up faster than workers could drop them, and throughput never came back."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest
from pydantic import BaseModel

from polyqueue.broker import Message
from polyqueue.exceptions import BrokerError
from polyqueue.maintenance import Maintenance
from polyqueue.notices import notice_message
from polyqueue_sqs import SqsBroker

if TYPE_CHECKING:
    import asyncpg

    from polyqueue_sqs import SqsBrokerSettings


class Item(BaseModel):
    n: int


def notices(queue: str, *job_ids: int) -> list[Message]:
    return [notice_message(job_id, queue, 0) for job_id in job_ids]


async def test_unheld_is_every_message_of_a_queue_holding_fewer(
    sqs_settings: SqsBrokerSettings,
) -> None:
    async with SqsBroker(sqs_settings, lease_seconds=5) as broker:
        await broker.publish(notices("deep", *range(1, 6)))

        assert await broker.unheld(notices("deep", 1, 2, 3)) == []  # 5 held >= 3 asked
        assert await broker.unheld(notices("deep", *range(10, 18))) == notices(
            "deep", *range(10, 18)
        )  # 5 held < 8 asked: they cannot all be there
        assert await broker.unheld(notices("empty", 7, 8)) == notices("empty", 7, 8)
        mixed = notices("deep", 1) + notices("empty", 9)
        assert await broker.unheld(mixed) == notices("empty", 9)


async def test_jobs_behind_a_backlog_are_not_republished_until_it_is_gone(
    make_app, sqs_env: str, db: asyncpg.Connection
) -> None:
    app = make_app(queue_backend="sqs", republish_after=60)

    @app.register("sqs.republish", queue="backlog")
    async def work(payload: Item) -> int:
        return payload.n

    async with app:
        ids = await app.enqueue_many(work, [Item(n=i) for i in range(4)])
        await db.execute(
            "UPDATE polyqueue.jobs SET run_at = now() - interval '5 minutes' WHERE id = ANY($1)",
            ids,
        )

        behind = await Maintenance(app.runtime).run_once()

        assert behind.republished == []  # their four notices are still in the queue

        client = app.broker.client.raw
        url = (await client.get_queue_url(QueueName=f"{app.broker.settings.queue_prefix}backlog"))[
            "QueueUrl"
        ]
        await client.purge_queue(QueueUrl=url)  # the notices are lost
        await db.execute(
            "UPDATE polyqueue.jobs SET notified_at = now() - interval '10 minutes'"
            " WHERE id = ANY($1)",
            ids,
        )

        lost = await Maintenance(app.runtime).run_once()

        assert sorted(lost.republished) == sorted(ids)


async def test_a_queue_sqs_cannot_name_fails_the_enqueue_before_any_row(
    make_app, sqs_env: str, db: asyncpg.Connection
) -> None:
    """`SqsBroker.prepare_queue` refuses the name before the insert: no job without a notice."""
    app = make_app(queue_backend="sqs")

    @app.register("sqs.dotted", queue="images.resize")
    async def work(payload: Item) -> int:
        return payload.n

    async with app:
        with pytest.raises(BrokerError, match="SQS allows letters"):
            await app.enqueue(work, Item(n=1))
    assert await db.fetchval("SELECT count(*) FROM polyqueue.jobs") == 0
