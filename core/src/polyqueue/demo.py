"""`polyqueue demo`: typed jobs that succeed, retry and fail, run by a worker in this process."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
import time
from collections import Counter
from dataclasses import dataclass
from typing import TYPE_CHECKING

from pydantic import BaseModel, Field
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from polyqueue.app import Polyqueue
from polyqueue.context import JobContext  # noqa: TC001  (handlers' annotations, read at runtime)
from polyqueue.exceptions import (
    InvalidPayloadError,
    JobTimeoutError,
    ResultUnavailableError,
    TerminalError,
)
from polyqueue.loading import database_url
from polyqueue.pgconnect import ConnectionOptions
from polyqueue.settings import load_settings
from polyqueue.sql import load_queries
from polyqueue.status import FINISHED, JobStatus
from polyqueue.store import JobStore

if TYPE_CHECKING:
    from collections.abc import Iterator

    from polyqueue.job import Job
    from polyqueue.settings import PolyqueueSettings
    from polyqueue.worker import Worker

__all__ = ["DEMO_SCHEMA", "DemoReport", "HandlerOutcome", "build_app", "run_demo"]

DEMO_SCHEMA = "polyqueue_demo"
DEMO_TIMEOUT_SECONDS = 120.0
SHARES = {"images.resize": 40, "reports.render": 20, "email.send": 25, "billing.charge": 15}
"""Percent of the demo's jobs given to each handler."""


# -- payload and result models ------------------------------------------------------------------


class ResizeRequest(BaseModel):
    image_id: int
    url: str
    width: int = Field(gt=0)


class ResizeResult(BaseModel):
    path: str
    width: int
    height: int


class ReportRequest(BaseModel):
    report_id: int
    rows: int = Field(ge=0)


class ReportResult(BaseModel):
    report_id: int
    pages: int
    checksum: str


class EmailRequest(BaseModel):
    to: str
    subject: str
    flaky: bool = False
    """The demo's SMTP server turns this message away on the first attempt."""


class EmailResult(BaseModel):
    message_id: str
    attempts: int


class ChargeRequest(BaseModel):
    invoice: int
    amount_cents: int = Field(gt=0)
    card: str


class ChargeResult(BaseModel):
    invoice: int
    receipt: str


# -- handlers -----------------------------------------------------------------------------------


async def resize_image(payload: ResizeRequest, ctx: JobContext) -> ResizeResult:
    """An async handler that reports progress half way."""
    await asyncio.sleep(0.002)
    await ctx.progress(0.5, "decoded")
    height = payload.width * 3 // 4
    return ResizeResult(
        path=f"thumbs/{payload.image_id}-{payload.width}.webp", width=payload.width, height=height
    )


def render_report(payload: ReportRequest) -> ReportResult:
    """A sync handler: blocking work, run in the worker's thread pool."""
    time.sleep(0.002)
    checksum = hashlib.sha256(f"report-{payload.report_id}".encode()).hexdigest()[:12]
    return ReportResult(
        report_id=payload.report_id, pages=1 + payload.rows // 50, checksum=checksum
    )


async def send_email(payload: EmailRequest, ctx: JobContext) -> EmailResult:
    """Fails transiently on a flaky message's first attempt: retried after a backoff."""
    if payload.flaky and ctx.attempt == 1:
        raise ConnectionError("SMTP server busy (421), try again later")
    return EmailResult(message_id=f"<{ctx.job_id}@demo.polyqueue>", attempts=ctx.attempt)


async def charge_card(payload: ChargeRequest) -> ChargeResult:
    """Raises `TerminalError` for a declined card: failed at once, never retried."""
    if payload.card == "declined":
        raise TerminalError(f"card declined for invoice {payload.invoice}")
    return ChargeResult(invoice=payload.invoice, receipt=f"rcpt-{payload.invoice:06d}")


def build_app(settings: PolyqueueSettings) -> Polyqueue:
    """The demo's app with its four handlers registered."""
    app = Polyqueue(settings)
    app.register("images.resize", queue="images")(resize_image)
    app.register("reports.render", queue="reports")(render_report)
    app.register("email.send", queue="email", max_attempts=3)(send_email)
    app.register("billing.charge", queue="billing")(charge_card)
    return app


# -- the report ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class HandlerOutcome:
    """How the jobs of one handler ended."""

    jobs: int
    succeeded: int
    failed: int
    retried: int
    attempts: int


@dataclass(frozen=True, slots=True)
class DemoReport:
    """What `run_demo` did: outcomes per handler and how long it took."""

    outcomes: dict[str, HandlerOutcome]
    elapsed: float

    @property
    def jobs(self) -> int:
        """How many jobs ran."""
        return sum(o.jobs for o in self.outcomes.values())

    @property
    def jobs_per_second(self) -> float:
        """Throughput from the first enqueue to the last finished job."""
        return self.jobs / self.elapsed if self.elapsed > 0 else 0.0


# -- running ------------------------------------------------------------------------------------


async def run_demo(
    jobs: int, concurrency: int, backend: str, *, console: Console | None = None
) -> DemoReport:
    """Run the demo on a fresh `polyqueue_demo` schema and print what happened.

    Brokers that can create their queues are told to (`POLYQUEUE_SQS_CREATE_QUEUES`): off by
    default in production, on in the demo.
    """
    console = console or Console()
    settings = load_settings(
        schema_name=DEMO_SCHEMA,
        queue_backend=backend,
        concurrency=concurrency,
        retry_backoff_base=0.05,
        retry_backoff_max=0.2,
        scheduler_interval=0.1,
    )
    with _brokers_create_their_queues():
        async with database_url(settings) as url:
            settings = settings.model_copy(update={"database_url": url})
            await _reset_schema(settings)
            async with build_app(settings) as app:
                return await _run(app, jobs, console)


@contextlib.contextmanager
def _brokers_create_their_queues() -> Iterator[None]:
    """`POLYQUEUE_SQS_CREATE_QUEUES=true` for the demo's duration, unless the user set it."""
    variable = "POLYQUEUE_SQS_CREATE_QUEUES"
    if variable in os.environ:
        yield
        return
    os.environ[variable] = "true"
    try:
        yield
    finally:
        os.environ.pop(variable, None)


async def _reset_schema(settings: PolyqueueSettings) -> None:
    sql = load_queries("demo.sql", settings.schema_name)["demo_reset"].sql
    store = JobStore(
        settings.database_url or "",
        settings.schema_name,
        pool_size=2,
        options=ConnectionOptions.from_settings(settings),
    )
    await store.open()
    try:
        async with store.transaction() as connection:
            await connection.execute(sql)
    finally:
        await store.close()


async def _run(app: Polyqueue, jobs: int, console: Console) -> DemoReport:
    console.print(
        f"[bold]Polyqueue demo[/]: {jobs} jobs, broker [cyan]{app.settings.queue_backend}[/], "
        f"concurrency {app.settings.concurrency}, schema [cyan]{app.settings.schema_name}[/]"
    )
    await _show_refusal(app, console)
    worker = app.worker()
    running = asyncio.create_task(worker.run(), name="polyqueue-demo-worker")
    try:
        started = time.perf_counter()
        ids = await _enqueue(app, jobs)
        await _track(app, [i for group in ids.values() for i in group], running, console)
        elapsed = time.perf_counter() - started
    finally:
        await _stop(worker, running)
    report = DemoReport(await _outcomes(app, ids), elapsed)
    console.print(_table(report))
    await _show_results(app, ids, console)
    console.print(f"{report.jobs} jobs in {elapsed:.2f}s: {report.jobs_per_second:.0f} jobs/s")
    return report


async def _stop(worker: Worker, running: asyncio.Task[None]) -> None:
    worker.stop()
    await running


async def _show_refusal(app: Polyqueue, console: Console) -> None:
    """Enqueue validates payloads against the handler's model: a bad one is refused."""
    try:
        await app.enqueue("images.resize", {"image_id": 1, "url": "cat.png", "width": "wide"})
    except InvalidPayloadError as exc:
        console.print(f"enqueue refused a bad payload: [yellow]{escape(str(exc))}[/]")


def _split(jobs: int) -> dict[str, int]:
    counts = {name: jobs * share // 100 for name, share in SHARES.items()}
    counts["images.resize"] += jobs - sum(counts.values())
    return counts


async def _enqueue(app: Polyqueue, jobs: int) -> dict[str, list[int]]:
    counts = _split(jobs)
    images = [
        ResizeRequest(image_id=n, url=f"https://example.com/{n}.png", width=64 * (1 + n % 4))
        for n in range(counts["images.resize"])
    ]
    reports = [
        ReportRequest(report_id=n, rows=n * 37 % 500) for n in range(counts["reports.render"])
    ]
    emails = [
        EmailRequest(to=f"user{n}@example.com", subject="Welcome", flaky=n % 3 == 0)
        for n in range(counts["email.send"])
    ]
    ids: dict[str, list[int]] = {
        "images.resize": await app.enqueue_many("images.resize", images),
        "reports.render": await app.enqueue_many(render_report, reports),
        "email.send": await app.enqueue_many("email.send", emails),
    }
    ids["billing.charge"] = [
        await app.enqueue(
            "billing.charge",
            ChargeRequest(
                invoice=n, amount_cents=100 + n, card="declined" if n % 4 == 0 else "visa"
            ),
            idempotency_key=f"invoice-{n}",
        )
        for n in range(counts["billing.charge"])
    ]
    return ids


async def _track(
    app: Polyqueue, ids: list[int], running: asyncio.Task[None], console: Console
) -> None:
    """A progress bar of finished jobs, from their statuses in the database."""
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn())
    with Progress(*columns, TimeElapsedColumn(), console=console) as progress:
        task = progress.add_task("running", total=len(ids))
        deadline = time.monotonic() + DEMO_TIMEOUT_SECONDS
        while True:
            counts = Counter((await app.store.job_status_many(ids)).values())
            finished = sum(counts[status] for status in FINISHED)
            progress.update(task, completed=finished, description=_describe(counts))
            if finished == len(ids):
                return
            if running.done():
                running.result()  # the worker stopped early: raise its error
            if time.monotonic() > deadline:
                raise JobTimeoutError(f"the demo's jobs did not finish in {DEMO_TIMEOUT_SECONDS}s")
            await asyncio.sleep(0.05)


def _describe(counts: Counter[str]) -> str:
    parts = (f"{counts[s]} {s}" for s in JobStatus if counts[s] and s is not JobStatus.SUCCEEDED)
    details = ", ".join(parts)
    return f"jobs ({details})" if details else "jobs"


async def _outcomes(app: Polyqueue, ids: dict[str, list[int]]) -> dict[str, HandlerOutcome]:
    return {name: _summarise(await _jobs(app, group)) for name, group in ids.items()}


async def _jobs(app: Polyqueue, ids: list[int]) -> list[Job]:
    return list(await asyncio.gather(*(app.get_job(i) for i in ids)))


def _summarise(jobs: list[Job]) -> HandlerOutcome:
    return HandlerOutcome(
        jobs=len(jobs),
        succeeded=sum(j.status is JobStatus.SUCCEEDED for j in jobs),
        failed=sum(j.status is JobStatus.FAILED for j in jobs),
        retried=sum(j.attempt > 1 for j in jobs),
        attempts=sum(j.attempt for j in jobs),
    )


def _table(report: DemoReport) -> Table:
    table = Table(title="Outcomes per handler")
    for column in ("handler", "jobs", "succeeded", "failed", "retried", "attempts"):
        table.add_column(column, justify="left" if column == "handler" else "right")
    for name, o in report.outcomes.items():
        numbers = (o.jobs, o.succeeded, o.failed, o.retried, o.attempts)
        table.add_row(name, *map(str, numbers))
    return table


async def _show_results(app: Polyqueue, ids: dict[str, list[int]], console: Console) -> None:
    """A few results read back as their models, and one failed job's error."""
    shown = [
        ("get_job_result_typed", await _typed(app, ids["images.resize"])),
        ("get_job_result_typed_via_registry", await _via_registry(app, ids["reports.render"])),
        ("get_job_result_typed_via_registry", await _via_registry(app, ids["email.send"])),
    ]
    for method, value in shown:
        if value is not None:
            console.print(f"{method}: {escape(repr(value))}")
    if ids["billing.charge"]:
        try:
            await app.get_job_result(ids["billing.charge"][0])
        except ResultUnavailableError as exc:
            error = (await app.get_job(exc.job_id)).error
            console.print(escape(f"{exc}; its error: {error.message if error else '?'}"))


async def _typed(app: Polyqueue, ids: list[int]) -> ResizeResult | None:
    return await app.get_job_result_typed(ids[0], ResizeResult) if ids else None


async def _via_registry(app: Polyqueue, ids: list[int]) -> object:
    return await app.get_job_result_typed_via_registry(ids[0]) if ids else None
