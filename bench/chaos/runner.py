"""One backend's chaos run: a fresh database, the cluster, every fault in turn, the drain."""

from __future__ import annotations

import asyncio
import time
import traceback
import uuid
from typing import TYPE_CHECKING

import asyncpg

from backends import scoped_env  # bench/backends.py
from chaos.check import OUTCOME_LOG_SQL, FaultFigures, verdict
from chaos.cluster import Cluster, Incident, WorkerTrouble
from chaos.faults import faults_for
from polyqueue import Polyqueue

if TYPE_CHECKING:
    from pathlib import Path

    from chaos.plan import Plan
    from chaos.servers import Moto, Postgres, Redis

__all__ = ["run_backend"]

DRAIN_POLL_SECONDS = 0.5


async def run_backend(  # noqa: PLR0917  (the servers, each its own)
    backend: str,
    plan: Plan,
    folder: Path,
    postgres: Postgres,
    redis: Redis | None,
    moto: Moto | None,
) -> tuple[dict[str, FaultFigures], Cluster]:
    """Run every fault that applies to `backend` under load; the figures per fault."""
    faults = faults_for(backend, plan.faults)
    await asyncio.to_thread(folder.mkdir, parents=True, exist_ok=True)
    database = f"chaos_{backend}_{uuid.uuid4().hex[:6]}"
    cluster = Cluster(
        backend, database, plan, folder, postgres, redis, moto, tag=uuid.uuid4().hex[:8]
    )
    await _create_database(cluster)
    try:
        await cluster.start()
        await _steady(cluster, plan.warmup_seconds)
        for fault in faults:
            cluster.current_fault = fault.name
            for cycle in range(1, plan.cycles + 1):
                await cluster.supervise()
                incident = await _inject(cluster, fault, plan)
                cluster.incidents.append(incident)
                await cluster.wait_recovered(incident, plan.recovery_timeout)
                _progress(backend, fault.name, cycle, incident)
        cluster.current_fault = "drain"
        await _drain(cluster, plan.drain_timeout)
        for process in cluster.every_process:  # what each wrote since its last poll
            process.poll_events()
        figures = await verdict(cluster, [f.name for f in faults])
    finally:
        await cluster.close()
        await _drop_database(cluster)
    return figures, cluster


async def _inject(cluster: Cluster, fault: object, plan: Plan) -> Incident:
    """Inject `fault`; a failed injection is an incident that says so (and PostgreSQL is
    started again if it was left down)."""
    began = time.time()
    try:
        return await fault.inject(cluster, plan)  # type: ignore[attr-defined]
    except Exception as exc:
        traceback.print_exc()
        if not await _reachable(cluster.database_url):
            await cluster.postgres.start()
        name = fault.name  # type: ignore[attr-defined]
        incident = Incident(name, fault.cause, began, time.time())  # type: ignore[attr-defined]
        incident.note = f"injection failed: {type(exc).__name__}: {exc}"
        return incident


async def _steady(cluster: Cluster, seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        await cluster.supervise()
        await asyncio.sleep(0.2)


async def _drain(cluster: Cluster, timeout: float) -> None:
    """Stop the producer, wait for every job to finish (bounded), stop the workers cleanly."""
    if cluster.producer is not None:
        await cluster.producer.stop()
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and await _unfinished(cluster.database_url) != 0:
        await cluster.supervise()
        await asyncio.sleep(DRAIN_POLL_SECONDS)
    await cluster.supervise()
    for worker in cluster.workers:
        code = await worker.stop()
        if code != 0:
            detail = f"exit code {code} after SIGTERM; log ends:\n{worker.log_tail()}"
            cluster.troubles.append(
                WorkerTrouble("unclean exit", worker.name, worker.pid, time.time(), "drain", detail)
            )
        worker.poll_events()


async def _unfinished(url: str) -> int | None:
    try:
        connection = await asyncpg.connect(url, timeout=5)
    except (OSError, asyncpg.PostgresError, TimeoutError):
        return None
    try:
        return int(
            await connection.fetchval(
                "SELECT count(*) FROM polyqueue.jobs"
                " WHERE status::text NOT IN ('succeeded', 'failed', 'cancelled')"
            )
        )
    finally:
        await connection.close()


async def _reachable(url: str) -> bool:
    return await _unfinished(url) is not None


async def _create_database(cluster: Cluster) -> None:
    """The database, migrated (and PGMQ installed) by an app of the runner, with the outcome
    log's trigger on the jobs table."""
    admin = await asyncpg.connect(cluster.postgres.admin_url)
    try:
        await admin.execute(f'CREATE DATABASE "{cluster.database}"')
    finally:
        await admin.close()
    with scoped_env(cluster.direct_env()):
        async with Polyqueue():
            pass
    connection = await asyncpg.connect(cluster.database_url)
    try:
        await connection.execute(OUTCOME_LOG_SQL)
    finally:
        await connection.close()


async def _drop_database(cluster: Cluster) -> None:
    try:
        admin = await asyncpg.connect(cluster.postgres.admin_url, timeout=5)
    except (OSError, asyncpg.PostgresError, TimeoutError):
        return
    try:
        await admin.execute(f'DROP DATABASE IF EXISTS "{cluster.database}" WITH (FORCE)')
    finally:
        await admin.close()


def _progress(backend: str, fault: str, cycle: int, incident: Incident) -> None:
    seconds = incident.recovery_seconds
    back = "NOT recovered" if seconds is None else f"throughput back in {seconds:.1f}s"
    note = f" ({incident.note})" if incident.note else ""
    print(f"[chaos] {backend:>8} {fault:<17} cycle {cycle}: {back}{note}", flush=True)
