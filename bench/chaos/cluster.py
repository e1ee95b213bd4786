"""`Cluster`: three worker processes and a producer on one backend, and what befell them.

Every process reaches PostgreSQL, and its broker when that is a server of its own, through a
`FaultProxy` (`polyqueue.testing.proxy`) of its own, so a fault can black-hole one worker or
all of them. A process that exits
without the runner killing it is recorded as a death and replaced, as a supervisor would, so
the run goes on and every later fault is still measured.
"""

from __future__ import annotations

import asyncio
import itertools
import os
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import asyncpg

from chaos.procs import Process, worker_environment
from polyqueue.testing.proxy import FaultProxy

if TYPE_CHECKING:
    from pathlib import Path

    from chaos.plan import Plan
    from chaos.servers import Moto, Postgres, Redis

__all__ = ["Cluster", "Incident", "WorkerTrouble"]

WORKERS = 3
POLL_SECONDS = 0.1
RATE_WINDOW_SECONDS = 1.0

# Short timings so each fault resolves in seconds (see docs/reliability.md).
SETTINGS = {
    "CONCURRENCY": "4",
    "HEARTBEAT_INTERVAL": "0.5",
    "LEASE_SECONDS": "2",
    "WORKER_STALE_AFTER": "3",
    "MAINTENANCE_INTERVAL": "0.5",
    "REPUBLISH_AFTER": "3",
    "SCHEDULER_INTERVAL": "0.2",
    "RETRY_BACKOFF_BASE": "0.1",
    "RETRY_BACKOFF_MAX": "1",
    "SHUTDOWN_GRACE_SECONDS": "3",
    "CONNECT_TIMEOUT": "2",
    "MAX_RECLAIMS": "5",
    "LOG_LEVEL": "INFO",
}
WORKER_STALE_AFTER = float(SETTINGS["WORKER_STALE_AFTER"])
LEASE_SECONDS = float(SETTINGS["LEASE_SECONDS"])
MAINTENANCE_INTERVAL = float(SETTINGS["MAINTENANCE_INTERVAL"])

_DUMMY_AWS = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
    "AWS_EC2_METADATA_DISABLED": "true",
}


@dataclass
class Incident:
    """One injected fault: when it began and ended, whom it hit, when throughput was back."""

    fault: str
    cause: str  # how an execution it caused is explained, e.g. "SIGKILL mid-job"
    began: float
    ended: float = 0.0
    pids: frozenset[int] = frozenset()  # empty: every process
    recovered: float | None = None
    note: str = ""

    @property
    def recovery_seconds(self) -> float | None:
        return None if self.recovered is None else self.recovered - self.ended


@dataclass
class WorkerTrouble:
    """A worker that died on its own, or stopped consuming after a fault."""

    kind: str  # "died" | "stalled" | "unclean exit"
    name: str
    pid: int
    at: float
    fault: str
    detail: str


@dataclass
class Cluster:
    """The processes of one backend's run."""

    backend: str
    database: str
    plan: Plan
    folder: Path
    postgres: Postgres
    redis: Redis | None = None
    moto: Moto | None = None
    tag: str = ""
    workers: list[Process] = field(default_factory=list)
    producer: Process | None = None
    retired: list[Process] = field(default_factory=list)
    incidents: list[Incident] = field(default_factory=list)
    troubles: list[WorkerTrouble] = field(default_factory=list)
    current_fault: str = "start"
    _numbers: Any = field(default_factory=itertools.count)

    # -- processes ------------------------------------------------------------------------

    async def start(self) -> None:
        for _ in range(WORKERS):
            self.workers.append(await self._spawn("worker"))
        self.producer = await self._spawn("producer")

    async def _spawn(self, role: str) -> Process:
        pg_proxy = FaultProxy(self.postgres.port)
        await pg_proxy.start()
        broker_proxy = None
        upstream = self._broker_port()
        if upstream is not None:
            broker_proxy = FaultProxy(upstream)
            await broker_proxy.start()
        process = Process(role, next(self._numbers), self.folder, pg_proxy, broker_proxy)
        await process.spawn(self._environment(process))
        return process

    def _broker_port(self) -> int | None:
        if self.backend == "redis" and self.redis is not None:
            return self.redis.port
        if self.backend == "sqs" and self.moto is not None:
            return self.moto.port
        return None

    @property
    def database_url(self) -> str:
        """The database, straight to the server (the runner's own checks)."""
        return f"postgresql://postgres@127.0.0.1:{self.postgres.port}/{self.database}"

    def direct_env(self) -> dict[str, str]:
        """The `POLYQUEUE_*` settings of the processes, with no proxy in between."""
        return self._settings(self.postgres.port, self._broker_port() or 0)

    def _environment(self, process: Process) -> dict[str, str]:
        broker = process.broker_proxy.port if process.broker_proxy else 0
        env = worker_environment(os.environ) | self._settings(process.pg_proxy.port, broker)
        env["CHAOS_RATE"] = str(self.plan.rate)
        return env

    def _settings(self, pg_port: int, broker_port: int) -> dict[str, str]:
        env = {f"POLYQUEUE_{k}": v for k, v in SETTINGS.items()}
        url = f"postgresql://postgres@127.0.0.1:{pg_port}/{self.database}"
        env |= {"POLYQUEUE_DATABASE_URL": url, "POLYQUEUE_QUEUE_BACKEND": self.backend}
        if self.backend == "redis":
            env |= {
                "POLYQUEUE_REDIS_URL": f"redis://127.0.0.1:{broker_port}/0",
                "POLYQUEUE_REDIS_KEY_PREFIX": f"chaos-{self.tag}:",
                "POLYQUEUE_REDIS_SOCKET_TIMEOUT": "2",
                "POLYQUEUE_REDIS_CONNECT_TIMEOUT": "2",
            }
        elif self.backend == "sqs":
            env |= _DUMMY_AWS | {
                "POLYQUEUE_SQS_ENDPOINT_URL": f"http://127.0.0.1:{broker_port}",
                "POLYQUEUE_SQS_REGION": "us-east-1",
                "POLYQUEUE_SQS_QUEUE_PREFIX": f"chaos-{self.tag}-",
                "POLYQUEUE_SQS_CREATE_QUEUES": "true",
                "POLYQUEUE_SQS_WAIT_TIME_SECONDS": "1",
                "POLYQUEUE_SQS_CONNECT_TIMEOUT": "2",
            }
        elif self.backend == "pgmq":
            env |= {"POLYQUEUE_PGMQ_INSTALL": "true", "POLYQUEUE_PGMQ_POLL_INTERVAL": "0.2"}
        return env

    async def replace(self, process: Process) -> Process:
        """Retire `process` (already dead or killed) and start a fresh one in its role."""
        await process.wait()
        for proxy in process.proxies:
            await proxy.close()
        self.retired.append(process)
        fresh = await self._spawn(process.role)
        if process.role == "producer":
            self.producer = fresh
        else:
            self.workers[self.workers.index(process)] = fresh
        return fresh

    @property
    def everyone(self) -> list[Process]:
        return [*self.workers, *([self.producer] if self.producer else [])]

    @property
    def every_process(self) -> list[Process]:
        return [*self.retired, *self.everyone]

    def proxies(self, kind: str, processes: list[Process] | None = None) -> list[FaultProxy]:
        """The `pg` or `broker` proxies of `processes` (default: every live one)."""
        chosen = self.everyone if processes is None else processes
        if kind == "pg":
            return [p.pg_proxy for p in chosen]
        return [p.broker_proxy for p in chosen if p.broker_proxy is not None]

    async def supervise(self) -> None:
        """Record and replace every process that exited on its own."""
        for process in list(self.everyone):
            process.poll_events()
            if process.alive or process.killed:
                continue
            code = await process.wait()
            detail = f"exit code {code}; log ends:\n{process.log_tail()}"
            if process.role == "worker":
                self.troubles.append(
                    WorkerTrouble(
                        "died", process.name, process.pid, time.time(), self.current_fault, detail
                    )
                )
            else:
                print(f"[chaos] producer exited on its own: {detail}", flush=True)
            await self.replace(process)

    async def close(self) -> None:
        for process in self.everyone:
            if process.alive:
                await process.kill()
        for process in self.every_process:
            for proxy in process.proxies:
                await proxy.close()

    # -- throughput -------------------------------------------------------------------------

    async def wait_recovered(self, incident: Incident, timeout: float) -> None:
        """Until throughput is back after `incident`: committed outcomes in the last second at
        half the producer's rate, and every worker alive at the end of the fault has started a
        job since. A worker that has not by `timeout` is recorded as stalled and replaced."""
        deadline = time.monotonic() + timeout
        workers = [w for w in self.workers if w.alive]
        while time.monotonic() < deadline:
            await self.supervise()
            workers = [w for w in workers if w in self.workers]
            fresh = [w for w in self.workers if w not in workers and w.started_at >= incident.ended]
            consuming = all(w.started_since(incident.ended) for w in [*workers, *fresh])
            if consuming and await self._rate() >= self.plan.rate / 2:
                incident.recovered = time.time()
                return
            await asyncio.sleep(POLL_SECONDS)
        for worker in workers:
            if worker in self.workers and not worker.started_since(incident.ended):
                detail = f"no job started within {timeout:.0f}s; log ends:\n{worker.log_tail()}"
                self.troubles.append(
                    WorkerTrouble(
                        "stalled", worker.name, worker.pid, time.time(), incident.fault, detail
                    )
                )
                await worker.kill()
                await self.replace(worker)

    async def _rate(self) -> float:
        """Outcomes committed in the last `RATE_WINDOW_SECONDS`, per second (0: unreachable)."""
        try:
            connection = await asyncpg.connect(self.database_url, timeout=2)
        except (OSError, asyncpg.PostgresError, TimeoutError):
            return 0.0
        try:
            count = await connection.fetchval(
                "SELECT count(*) FROM polyqueue.jobs"
                " WHERE finished_at >= clock_timestamp() - make_interval(secs => $1)",
                RATE_WINDOW_SECONDS,
            )
        except (OSError, asyncpg.PostgresError):
            return 0.0
        finally:
            await connection.close()
        return float(count) / RATE_WINDOW_SECONDS
