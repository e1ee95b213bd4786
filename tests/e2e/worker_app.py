"""A worker process for the shutdown tests: `python worker_app.py` works until SIGTERM/SIGINT.

Settings come from `POLYQUEUE_*` variables set by the test. The handler holds its job until a
file named in the payload exists (or forever without one), so the test decides when it ends.
"""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

from pydantic import BaseModel

import polyqueue
from polyqueue import Polyqueue

QUEUE = "e2e_shutdown"

app = Polyqueue()


class Hold(BaseModel):
    release_file: str | None = None


@app.register("e2e.hold", queue=QUEUE)
async def hold(payload: Hold) -> dict[str, int]:
    if payload.release_file is None:
        await asyncio.Event().wait()
    else:
        release = Path(payload.release_file)
        while not release.exists():
            await asyncio.sleep(0.02)
    return {"pid": os.getpid()}


if __name__ == "__main__":
    polyqueue.main(app, concurrency=4)
