"""Colocation is a broker capability, not a privilege of the built-in broker: a third-party
broker that lives in the jobs database declares it (`Broker.colocation`) and gets the same
one-statement claim (`Broker.receive_claiming`), with no special case in the core."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, ClassVar, Self

from pydantic import BaseModel

from polyqueue import hookimpl
from polyqueue.broker import (
    Broker,
    BrokerEnvironment,
    ClaimedDelivery,
    ClaimTerms,
    Colocation,
    Delivery,
    Message,
)
from polyqueue.brokers.postgres import PostgresBroker
from polyqueue.status import JobStatus

if TYPE_CHECKING:
    from collections.abc import Sequence

    from tests.conftest import AppFactory


class SideDoor(Broker):
    """A third-party broker keeping its notices in the jobs database: it delegates to the
    built-in broker's SQL, but is its own class, so the core cannot tell them apart by type."""

    name: ClassVar[str] = "sidedoor"
    capabilities = PostgresBroker.capabilities
    claims: ClassVar[list[int]] = []  # deliveries per receive_claiming call
    plain_receives: ClassVar[int] = 0

    def __init__(self, inner: PostgresBroker) -> None:
        super().__init__(lease_seconds=inner.lease_seconds)
        self._inner = inner

    @classmethod
    def from_environment(cls, environment: BrokerEnvironment) -> Self:
        return cls(PostgresBroker.from_environment(environment))

    async def start(self) -> None:
        await self._inner.start()

    async def close(self) -> None:
        await self._inner.close()

    async def publish(self, messages: Sequence[Message]) -> None:
        await self._inner.publish(messages)

    async def publish_in(self, connection: Any, messages: Sequence[Message]) -> None:
        await self._inner.publish_in(connection, messages)

    async def ack_in(self, connection: Any, deliveries: Sequence[Delivery]) -> None:
        await self._inner.ack_in(connection, deliveries)

    async def receive(
        self, queues: Sequence[str], *, max_messages: int, wait_seconds: float
    ) -> list[Delivery]:
        SideDoor.plain_receives += 1
        return await self._inner.receive(
            queues, max_messages=max_messages, wait_seconds=wait_seconds
        )

    def colocation(self, database_url: str, schema: str) -> Colocation | None:
        return self._inner.colocation(database_url, schema)

    async def receive_claiming(
        self,
        queues: Sequence[str],
        *,
        max_messages: int,
        wait_seconds: float,
        terms: ClaimTerms,
    ) -> list[ClaimedDelivery]:
        received = await self._inner.receive_claiming(
            queues, max_messages=max_messages, wait_seconds=wait_seconds, terms=terms
        )
        SideDoor.claims.append(len(received))
        return received

    def interrupt(self) -> None:
        self._inner.interrupt()

    async def ack(self, deliveries: Sequence[Delivery]) -> None:
        await self._inner.ack(deliveries)

    async def nack(self, deliveries: Sequence[Delivery], delay: float = 0.0) -> None:
        await self._inner.nack(deliveries, delay)

    async def extend(self, deliveries: Sequence[Delivery], seconds: float) -> None:
        await self._inner.extend(deliveries, seconds)


class SideDoorPlugin:
    @hookimpl
    def polyqueue_register_brokers(self) -> list[type[Broker]]:
        return [SideDoor]


class Number(BaseModel):
    n: int


async def test_a_third_party_broker_in_the_jobs_database_claims_as_it_receives(
    make_app: AppFactory,
) -> None:
    SideDoor.claims.clear()
    SideDoor.plain_receives = 0
    app = make_app(queue_backend="sidedoor", plugins=[SideDoorPlugin()])

    @app.register("double")
    async def double(payload: Number) -> int:
        return payload.n * 2

    async with app:
        assert app.broker.colocation(app.store.url, app.store.schema) is not None
        ids = await app.enqueue_many(double, [Number(n=i) for i in range(25)])
        await app.run_until_idle()
        jobs = [await app.get_job(job_id) for job_id in ids]
        notices_left = await app.store.pool.fetchval(
            "SELECT count(*) FROM polyqueue.broker_messages"
        )
    assert [job.status for job in jobs] == [JobStatus.SUCCEEDED] * 25
    assert [job.result for job in jobs] == [2 * i for i in range(25)]
    assert sum(SideDoor.claims) == 25  # every job came through the one-statement claim
    assert SideDoor.plain_receives == 0
    assert notices_left == 0  # acked in the statement that recorded each outcome


async def test_a_broker_elsewhere_is_not_colocated(make_app: AppFactory) -> None:
    async with make_app(queue_backend="postgres") as app:
        built_in = app.broker
        assert built_in.colocation(app.store.url, app.store.schema) is not None
        assert built_in.colocation(app.store.url, "another_schema") is None
        assert built_in.colocation("postgresql://elsewhere/jobs", app.store.schema) is None
