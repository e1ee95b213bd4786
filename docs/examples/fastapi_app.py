# ruff: noqa: INP001  (an example, not in a package)
"""FastAPI with Polyqueue: the app starts in the lifespan, endpoints enqueue and read jobs,
and a worker runs beside the server (in production, run it as its own process instead:
`polyqueue worker fastapi_app:queue`).

Run it: `POLYQUEUE_DATABASE_URL=postgresql://... uvicorn fastapi_app:api`.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import TYPE_CHECKING

from fastapi import FastAPI, HTTPException
from pydantic import BaseModel

from polyqueue import JobNotFoundError, Polyqueue

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

queue = Polyqueue()  # settings from POLYQUEUE_* when it starts; tests call queue.configure()


class Thumbnail(BaseModel):
    url: str
    width: int


class Thumbnailed(BaseModel):
    path: str


@queue.register("thumbnails.make")
async def make_thumbnail(payload: Thumbnail) -> Thumbnailed:
    return Thumbnailed(path=f"/thumbs/{payload.width}/{payload.url.rsplit('/', 1)[-1]}")


@contextlib.asynccontextmanager
async def lifespan(_: FastAPI) -> AsyncIterator[None]:
    async with queue:  # pool, migrations, broker: once per server process
        worker = queue.worker()  # beside the server; or a `polyqueue worker` process
        running = asyncio.create_task(worker.run())
        yield
        worker.stop()
        await running


api = FastAPI(lifespan=lifespan)


@api.post("/thumbnails", status_code=202)
async def request_thumbnail(request: Thumbnail) -> dict[str, int]:
    job_id = await queue.enqueue(make_thumbnail, request)
    return {"job_id": job_id}


@api.get("/jobs/{job_id}")
async def job_status(job_id: int, wait: float = 0) -> dict[str, object]:
    try:
        job = await (queue.wait_for(job_id, timeout=wait) if wait else queue.get_job(job_id))
    except JobNotFoundError as exc:
        raise HTTPException(status_code=404, detail=str(exc)) from exc
    return {"id": job.id, "status": job.status.value, "result": job.result}


@api.post("/thumbnails/sync", status_code=202)
def request_thumbnail_from_a_sync_endpoint(request: Thumbnail) -> dict[str, int]:
    # A `def` endpoint runs in FastAPI's thread pool: `queue.sync` hands the call to the loop
    # the lifespan started the app on.
    return {"job_id": queue.sync.enqueue(make_thumbnail, request)}
