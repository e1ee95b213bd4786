"""Typed usage of the public API, checked by `mypy --strict` (never run by pytest)."""

from __future__ import annotations

from pydantic import BaseModel

from polyqueue import Job, JobContext, Polyqueue, TerminalError

app = Polyqueue()


class Resize(BaseModel):
    url: str
    width: int


class Resized(BaseModel):
    path: str


@app.register(
    "images.resize", queue="cpu", max_attempts=5, max_run_seconds=30, timeout_strategy="retry"
)
async def resize(payload: Resize, ctx: JobContext) -> Resized:
    await ctx.progress(0.5, "half way")
    if payload.width <= 0:
        raise TerminalError("width must be positive")
    return Resized(path=f"/tmp/{payload.width}")


async def produce() -> None:
    async with app:
        job_id: int = await app.enqueue("images.resize", Resize(url="u", width=3))
        job_id = await app.enqueue(resize, {"url": "u", "width": 3}, delay=10, priority=5)
        ids: list[int] = await app.enqueue_many("images.resize", [Resize(url="u", width=1)])
        job: Job = await app.wait_for(job_id, timeout=30)
        typed: Resized = await app.get_job_result_typed(job.id, Resized)
        cancelled: bool = await app.cancel(ids[0])
        del typed, cancelled
