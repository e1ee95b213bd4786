"""The faults, in the order they run, and how each is injected.

Each `inject` returns the `Incident` it caused: when it began and ended (the moment the
servers were back, the link restored, the process continued or replaced), whom it hit, and
the cause an execution it provoked is explained by.
"""

from __future__ import annotations

import asyncio
import random
import signal
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

from chaos.cluster import LEASE_SECONDS, MAINTENANCE_INTERVAL, WORKER_STALE_AFTER, Incident
from chaos.garbage import push_garbage

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

    from chaos.cluster import Cluster
    from chaos.plan import Plan
    from chaos.procs import Process

__all__ = ["FAULTS", "Fault", "faults_for"]

ALL = frozenset({"postgres", "redis", "sqs", "pgmq"})
SERVER_BROKERS = frozenset({"redis", "sqs"})  # a broker server apart from PostgreSQL
NON_TRANSACTIONAL = frozenset({"redis", "sqs"})  # notices published after the commit
VICTIM_WAIT_SECONDS = 10.0
MID_JOB_MARGIN = 0.2  # a victim's job still has this long to run when it is hit
STALL_SECONDS = WORKER_STALE_AFTER * 1.5 + 4 * MAINTENANCE_INTERVAL  # well past stale_after
BLACKHOLE_SECONDS = LEASE_SECONDS * 2  # longer than the lease
PRODUCER_DEATH_TIMEOUT = 15.0


@dataclass(frozen=True)
class Fault:
    name: str
    cause: str
    backends: frozenset[str]
    inject: Callable[[Cluster, Plan], Awaitable[Incident]]
    how: str


async def pg_stop_fast(cluster: Cluster, plan: Plan) -> Incident:
    incident = Incident("pg-stop-fast", "PostgreSQL stopped", time.time())
    await cluster.postgres.stop_fast()
    await asyncio.sleep(plan.down_seconds)
    await cluster.postgres.start()
    incident.ended = time.time()
    return incident


async def pg_crash(cluster: Cluster, plan: Plan) -> Incident:
    incident = Incident("pg-crash", "PostgreSQL crashed", time.time())
    await cluster.postgres.crash()
    await asyncio.sleep(plan.down_seconds)
    await cluster.postgres.start()
    incident.ended = time.time()
    return incident


async def worker_sigkill(cluster: Cluster, plan: Plan) -> Incident:  # noqa: ARG001
    victim, held = await _busy_worker(cluster)
    incident = Incident(
        "worker-sigkill", "SIGKILL mid-job", time.time(), pids=frozenset({victim.pid})
    )
    incident.note = f"{len(held)} jobs in flight"
    await victim.kill()
    await cluster.replace(victim)
    incident.ended = time.time()
    return incident


async def worker_sigstop(cluster: Cluster, plan: Plan) -> Incident:  # noqa: ARG001
    victim, held = await _busy_worker(cluster)
    incident = Incident("worker-sigstop", "SIGSTOP past stale_after", time.time())
    incident.pids = frozenset({victim.pid})
    incident.note = f"{len(held)} jobs in flight, stopped {STALL_SECONDS:.1f}s"
    victim.signal(signal.SIGSTOP)
    await asyncio.sleep(STALL_SECONDS)
    victim.signal(signal.SIGCONT)
    incident.ended = time.time()
    return incident


async def broker_restart(cluster: Cluster, plan: Plan) -> Incident:
    incident = Incident("broker-restart", "broker restarted", time.time())
    server = cluster.redis if cluster.backend == "redis" else cluster.moto
    assert server is not None  # noqa: S101
    await server.kill()
    for proxy in cluster.proxies("broker"):
        proxy.reset()  # moto's handler threads would go on serving open connections
    await asyncio.sleep(plan.down_seconds)
    await server.start()
    incident.ended = time.time()
    return incident


async def redis_flushall(cluster: Cluster, plan: Plan) -> Incident:  # noqa: ARG001
    from redis.asyncio import Redis  # noqa: PLC0415  (only for redis)

    assert cluster.redis is not None  # noqa: S101
    incident = Incident("redis-flushall", "Redis FLUSHALL", time.time())
    client = Redis.from_url(cluster.redis.url)
    try:
        await client.flushall()
    finally:
        await client.aclose()
    incident.ended = time.time()
    return incident


async def garbage(cluster: Cluster, plan: Plan) -> Incident:  # noqa: ARG001
    incident = Incident("broker-garbage", "garbage messages", time.time())
    incident.note = await push_garbage(cluster)
    incident.ended = time.time()
    return incident


async def pg_blackhole_one(cluster: Cluster, plan: Plan) -> Incident:  # noqa: ARG001
    victim, held = await _busy_worker(cluster)
    incident = Incident("pg-blackhole-one", "one worker cut from PostgreSQL", time.time())
    incident.pids = frozenset({victim.pid})
    incident.note = f"{len(held)} jobs in flight, cut {STALL_SECONDS:.1f}s"
    await _black_hole(cluster.proxies("pg", [victim]), STALL_SECONDS)
    incident.ended = time.time()
    return incident


async def pg_blackhole_all(cluster: Cluster, plan: Plan) -> Incident:  # noqa: ARG001
    incident = Incident("pg-blackhole-all", "everyone cut from PostgreSQL", time.time())
    await _black_hole(cluster.proxies("pg"), BLACKHOLE_SECONDS)
    incident.ended = time.time()
    return incident


async def pg_reset(cluster: Cluster, plan: Plan) -> Incident:  # noqa: ARG001
    incident = Incident("pg-reset", "PostgreSQL connections reset", time.time())
    for proxy in cluster.proxies("pg"):
        proxy.reset()
    incident.ended = time.time()
    return incident


async def broker_blackhole(cluster: Cluster, plan: Plan) -> Incident:  # noqa: ARG001
    incident = Incident("broker-blackhole", "everyone cut from the broker", time.time())
    await _black_hole(cluster.proxies("broker"), BLACKHOLE_SECONDS)
    incident.ended = time.time()
    return incident


async def producer_kill(cluster: Cluster, plan: Plan) -> Incident:  # noqa: ARG001
    producer = cluster.producer
    assert producer is not None  # noqa: S101
    incident = Incident("producer-kill", "producer killed before publish", time.time())
    incident.pids = frozenset({producer.pid})
    producer.signal(signal.SIGUSR1)
    code = await producer.wait(PRODUCER_DEATH_TIMEOUT)
    producer.poll_events()
    died_trapped = any(e.kind == "dying" for e in producer.events)
    incident.note = "killed between commit and publish" if died_trapped else "did not publish"
    if code is None:
        await producer.kill()
    producer.killed = True
    await cluster.replace(producer)
    incident.ended = time.time()
    return incident


async def _black_hole(proxies: list, seconds: float) -> None:  # type: ignore[type-arg]
    for proxy in proxies:
        proxy.set_mode("pause")
    try:
        await asyncio.sleep(seconds)
    finally:
        for proxy in proxies:
            proxy.set_mode("pass")


async def _busy_worker(cluster: Cluster) -> tuple[Process, dict[int, float]]:
    """A live worker in the middle of a job that will run a while yet (a long one, if one
    comes within `VICTIM_WAIT_SECONDS`; else the busiest)."""
    deadline = time.monotonic() + VICTIM_WAIT_SECONDS
    while True:
        await cluster.supervise()
        soon = time.time() + MID_JOB_MARGIN
        candidates = [
            (
                max(w.in_flight().values(), default=0.0) > soon,  # still running a while
                len(w.in_flight()),
                random.random(),
                w,
            )
            for w in cluster.workers
            if w.alive
        ]
        mid_job = [c for c in candidates if c[0]]
        if mid_job or time.monotonic() > deadline:
            victim = max(mid_job or candidates, key=lambda c: c[:3])[3]
            return victim, victim.in_flight()
        await asyncio.sleep(0.02)


FAULTS = [
    Fault("pg-stop-fast", "PostgreSQL stopped", ALL, pg_stop_fast,
          "`pg_ctl stop -m fast`, down for 2 seconds, started again on the same port"),
    Fault("pg-crash", "PostgreSQL crashed", ALL, pg_crash,
          "SIGQUIT to the postmaster (`pg_ctl stop -m immediate`): WAL replayed at start"),
    Fault("worker-sigkill", "SIGKILL mid-job", ALL, worker_sigkill,
          "SIGKILL to a worker process with jobs in its handlers; a new process replaces it"),
    Fault("worker-sigstop", "SIGSTOP past stale_after", ALL, worker_sigstop,
          "SIGSTOP to a busy worker for 1.5 x worker_stale_after + 2 s, then SIGCONT"),
    Fault("broker-restart", "broker restarted", SERVER_BROKERS, broker_restart,
          "redis-server SIGKILLed (no persistence: all messages lost) / moto stopped; restarted"),
    Fault("redis-flushall", "Redis FLUSHALL", frozenset({"redis"}), redis_flushall,
          "`FLUSHALL` under load"),
    Fault("broker-garbage", "garbage messages", ALL, garbage,
          "bodies that are not notices, through the broker's publish and written natively"),
    Fault("pg-blackhole-one", "one worker cut from PostgreSQL", ALL, pg_blackhole_one,
          "one busy worker's proxy to PostgreSQL holds every byte for 1.5 x stale_after + 2 s"),
    Fault("pg-blackhole-all", "everyone cut from PostgreSQL", ALL, pg_blackhole_all,
          "every process's proxy to PostgreSQL holds every byte for 2 x lease_seconds"),
    Fault("pg-reset", "PostgreSQL connections reset", ALL, pg_reset,
          "every connection to PostgreSQL reset (RST) at once"),
    Fault("broker-blackhole", "everyone cut from the broker", SERVER_BROKERS, broker_blackhole,
          "every process's proxy to the broker holds every byte for 2 x lease_seconds"),
    Fault("producer-kill", "producer killed before publish", NON_TRANSACTIONAL, producer_kill,
          "the producer SIGKILLs itself entering the broker's publish, after its commit"),
]  # fmt: skip


def faults_for(backend: str, only: tuple[str, ...] = ()) -> list[Fault]:
    return [f for f in FAULTS if backend in f.backends and (not only or f.name in only)]
