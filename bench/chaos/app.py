"""The processes of a chaos run: `python bench/chaos/app.py worker|producer`.

Settings come from `POLYQUEUE_*` variables; `CHAOS_EVENTS` names this process's event log,
one line per event, `<unix time> <kind> <fields...>`, appended with one `write` each so a
SIGKILL loses nothing already written:

- worker: `start JOB ATTEMPT PID MS` when the handler begins (to run MS milliseconds), then
  `return JOB ATTEMPT PID` (the outcome it produced: a result `{"n", "attempt", "pid"}`),
  `raise JOB ATTEMPT PID` (a planned transient failure) or `cancel JOB ATTEMPT PID` (the
  worker cancelled it);
- producer: `enq JOB PID` for every id `enqueue`/`enqueue_many` returned, `enqfail COUNT TYPE`
  for a call that raised, `armed` on SIGUSR1 and `dying` just before it SIGKILLs itself.

The producer enqueues `CHAOS_RATE` jobs a second: singles and `enqueue_many` batches, some
delayed, some failing their first attempts. On SIGUSR1 it SIGKILLs itself at its next publish,
after the jobs committed and before their notices reach the broker.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import os
import random
import signal
import sys
import time
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel

import polyqueue
from polyqueue import JobContext, Polyqueue

if TYPE_CHECKING:
    from collections.abc import Sequence

HANDLER = "chaos.work"
QUEUE = "chaos"
MAX_ATTEMPTS = 12
FAILED_ENQUEUE_PAUSE = 0.2


class Work(BaseModel):
    """A job: run for `ms` milliseconds; raise while the attempt is at most `fail_times`."""

    n: int
    ms: int
    fail_times: int = 0


class TransientError(Exception):
    """A planned failure: the job is retried."""


class Events:
    """This process's event log (O_APPEND, one write per line)."""

    def __init__(self, path: str) -> None:
        self._fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)

    def write(self, kind: str, *fields: object) -> None:
        line = " ".join([f"{time.time():.6f}", kind, *map(str, fields)]) + "\n"
        os.write(self._fd, line.encode())


def register(app: Polyqueue, events: Events) -> None:
    """The one handler of the run, on `app`."""
    pid = os.getpid()

    @app.register(HANDLER, queue=QUEUE, max_attempts=MAX_ATTEMPTS)
    async def work(payload: Work, ctx: JobContext) -> dict[str, int]:
        events.write("start", ctx.job_id, ctx.attempt, pid, payload.ms)
        try:
            await asyncio.sleep(payload.ms / 1000)
        except asyncio.CancelledError:  # the worker lost the job (or is shutting down)
            events.write("cancel", ctx.job_id, ctx.attempt, pid)
            raise
        if ctx.attempt <= payload.fail_times:
            events.write("raise", ctx.job_id, ctx.attempt, pid)
            raise TransientError(f"planned failure of attempt {ctx.attempt}")
        events.write("return", ctx.job_id, ctx.attempt, pid)
        return {"n": payload.n, "attempt": ctx.attempt, "pid": pid}


def worker() -> None:
    """A worker process until SIGTERM."""
    app = Polyqueue()
    register(app, Events(os.environ["CHAOS_EVENTS"]))
    polyqueue.main(app)


class Producer:
    """Enqueues a steady mix of jobs until SIGTERM."""

    def __init__(self, app: Polyqueue, events: Events, rate: float) -> None:
        self.app = app
        self.events = events
        self.rate = rate
        self.stopping = asyncio.Event()
        self.armed = False
        self._random = random.Random(os.getpid())
        self._numbers = itertools.count(os.getpid() * 1_000_000)

    def arm(self) -> None:
        """SIGUSR1: die at the next publish."""
        self.armed = True
        self.events.write("armed")

    def trap_publish(self) -> None:
        """Wrap the broker's `publish`: once armed, the process dies on entering it."""
        broker: Any = self.app.broker
        publish = broker.publish

        async def trapped(messages: Sequence[Any]) -> None:
            if self.armed:
                self.events.write("dying")
                os.kill(os.getpid(), signal.SIGKILL)
            await publish(messages)

        broker.publish = trapped

    async def run(self) -> None:
        while not self.stopping.is_set():
            started = time.monotonic()
            count = await self._enqueue_some()
            pause = count / self.rate - (time.monotonic() - started)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.stopping.wait(), max(pause, 0.0))

    async def _enqueue_some(self) -> int:
        draw = self._random.random()
        size = 1 if draw < 0.6 else self._random.randint(2, 10)
        payloads = [self._payload() for _ in range(size)]
        delay = self._random.uniform(0.2, 1.5) if self._random.random() < 0.1 else None
        try:
            if size == 1:
                ids = [await self.app.enqueue(HANDLER, payloads[0], delay=delay)]
            else:
                ids = await self.app.enqueue_many(HANDLER, payloads, delay=delay)
        except Exception as exc:
            self.events.write("enqfail", size, type(exc).__name__)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.stopping.wait(), FAILED_ENQUEUE_PAUSE)
            return 0
        for job_id in ids:
            self.events.write("enq", job_id, os.getpid())
        return size

    def _payload(self) -> Work:
        draw = self._random.random()
        ms = self._random.randint(500, 1500) if draw < 0.05 else self._random.randint(5, 60)
        fail_times = self._random.choice((1, 2)) if self._random.random() < 0.1 else 0
        return Work(n=next(self._numbers), ms=ms, fail_times=fail_times)


async def produce() -> None:
    """The producer process: open the app, enqueue until SIGTERM, close."""
    app = Polyqueue()
    events = Events(os.environ["CHAOS_EVENTS"])
    register(app, events)  # enqueue validates payloads against the handler's model
    producer = Producer(app, events, float(os.environ.get("CHAOS_RATE", "20")))
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, producer.stopping.set)
    loop.add_signal_handler(signal.SIGUSR1, producer.arm)
    async with app:
        producer.trap_publish()
        print("ready", flush=True)
        await producer.run()


if __name__ == "__main__":
    if sys.argv[1:] == ["worker"]:
        worker()
    elif sys.argv[1:] == ["producer"]:
        asyncio.run(produce())
    else:
        sys.exit(f"usage: {sys.argv[0]} worker|producer")
