"""Browser-test fixtures: Debian's Chromium (installed when missing), one browser per
session, and a live stack per test: a Polyqueue app, its dashboard served by uvicorn on a
free loopback port, and workers started and stopped on demand, all on one event loop in a
background thread (the tests themselves are synchronous: Playwright's sync API)."""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import threading
from collections.abc import Coroutine, Iterator
from concurrent.futures import Future
from pathlib import Path
from typing import Any, TypeVar

import pytest
import uvicorn
from playwright.sync_api import expect, sync_playwright
from pydantic import BaseModel

from polyqueue import JobContext, Polyqueue, TerminalError
from polyqueue.dashboard import create_app
from polyqueue.testing.processes import free_port
from polyqueue.worker import Worker

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
T = TypeVar("T")
TABLES = [
    f"polyqueue.{table}"
    for table in (
        "jobs",
        "workers",
        "broker_messages",
        "cron_schedules",
        "flow_limits",
        "paused_queues",
        "flow_starts",
    )
]
"""Emptied when a stack starts: each test begins with nothing."""


def ensure_chromium() -> None:
    """Install Debian's Chromium when it is missing (tests run as root, as CI does);
    Playwright's own browser download is never used."""
    if CHROMIUM.exists():
        return
    if shutil.which("apt-get") is None:
        pytest.fail(f"{CHROMIUM} is missing and there is no apt-get to install it")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    wait = ["-o", "DPkg::Lock::Timeout=600"]  # another test process may be installing it
    subprocess.run(["apt-get", *wait, "update", "-q"], check=True, env=env, timeout=600)
    install = ["apt-get", *wait, "install", "-y", "-q", "chromium"]
    subprocess.run(install, check=True, env=env, timeout=900)


@pytest.fixture(scope="module")
def browser(polyqueue_database_url: str) -> Iterator[Any]:
    """One Chromium for the browser tests (they live in one module, so one per session).

    Playwright's sync API marks the main thread's loop as running while it is started, so
    the module's database, which `asyncio.run` creates, is made first (hence the fixture)."""
    ensure_chromium()
    expect.set_options(timeout=15_000)  # a deadline for each condition, not a pause
    playwright = sync_playwright().start()
    chromium = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
    yield chromium
    chromium.close()
    playwright.stop()


class Order(BaseModel):
    order: int
    note: str = ""


class Mail(BaseModel):
    to: str


class LiveStack:
    """An app with three handlers, its dashboard on `url`, on a loop in a thread."""

    def __init__(self, database_url: str, **dashboard_options: Any) -> None:
        self.database_url = database_url
        self.declining = True
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.app = self._build()
        self.dashboard_options = dashboard_options
        self.server: uvicorn.Server | None = None
        self.serving: asyncio.Task[None] | None = None
        self.workers: dict[Worker, asyncio.Task[None]] = {}

    def _build(self) -> Polyqueue:
        app = Polyqueue(
            database_url=self.database_url,
            heartbeat_interval=0.2,
            scheduler_interval=0.1,
            retry_backoff_base=0.0,
            retry_backoff_max=0.0,
            shutdown_grace_seconds=2.0,
        )

        @app.register("shop.charge", queue="payments", max_attempts=1)
        async def charge(payload: Order) -> dict[str, Any]:
            if self.declining:
                raise TerminalError(f"card declined for order {payload.order}")
            return {"charged": payload.order}

        @app.register("shop.pack", queue="payments")
        async def pack(payload: Order, ctx: JobContext) -> None:
            await ctx.progress(0.3, "packing boxes")
            await asyncio.Event().wait()  # runs until cancelled

        @app.register("mail.send", queue="mail")
        async def send(payload: Mail) -> dict[str, str]:
            return {"sent": payload.to}

        return app

    def run(self, coroutine: Coroutine[Any, Any, T], timeout: float = 30) -> T:
        """Run `coroutine` on the stack's loop and return its result."""
        future: Future[T] = asyncio.run_coroutine_threadsafe(coroutine, self.loop)
        return future.result(timeout)

    def start(self) -> None:
        self.thread.start()
        self.run(self._start())

    async def _start(self) -> None:
        await self.app.start()
        await self.app.store.pool.execute(f"TRUNCATE {', '.join(TABLES)}")
        site = create_app(self.app, **self.dashboard_options)
        config = uvicorn.Config(site, host="127.0.0.1", port=self.port, log_level="warning")
        self.server = uvicorn.Server(config)
        self.serving = asyncio.create_task(self.server.serve())
        while not self.server.started:
            await asyncio.sleep(0.01)

    def start_worker(self, queues: list[str] | None = None) -> Worker:
        """A worker of the app, running until `stop_worker`."""

        async def start() -> Worker:
            worker = self.app.worker(queues=queues, concurrency=4)
            self.workers[worker] = asyncio.create_task(worker.run())
            return worker

        return self.run(start())

    def stop_worker(self, worker: Worker) -> None:
        async def stop() -> None:
            worker.stop()
            await self.workers.pop(worker)

        self.run(stop())

    def enqueue(self, handler: str, payload: dict[str, Any]) -> int:
        return self.run(self.app.enqueue(handler, payload))

    def status(self, job_id: int) -> str:
        return str(self.run(self.app.get_job(job_id)).status.value)

    def close(self) -> None:
        async def stop() -> None:
            for worker in list(self.workers):
                worker.stop()
                worker.stop()  # skip the grace period: a test's jobs may never finish
                await self.workers.pop(worker)
            if self.server is not None and self.serving is not None:
                self.server.should_exit = True
                await self.serving
            await self.app.close()

        self.run(stop(), timeout=60)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(timeout=10)
        self.loop.close()


@pytest.fixture
def stack_factory(browser: Any, polyqueue_database_url: str) -> Iterator[Any]:
    """Start `LiveStack`s on the module's database (emptied); each is closed after the test."""
    stacks: list[LiveStack] = []

    def start(**dashboard_options: Any) -> LiveStack:
        stack = LiveStack(polyqueue_database_url, **dashboard_options)
        stack.start()
        stacks.append(stack)
        return stack

    yield start
    for stack in stacks:
        stack.close()


@pytest.fixture
def stack(stack_factory: Any) -> LiveStack:
    return stack_factory()


@pytest.fixture
def page(browser: Any) -> Iterator[Any]:
    """A fresh browser context (its own cookies) and page."""
    context = browser.new_context(viewport={"width": 1280, "height": 860})
    context.set_default_timeout(15_000)
    yield context.new_page()
    context.close()
