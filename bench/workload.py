"""The benchmark workload: an app with one no-op handler, shared by every process."""

from __future__ import annotations

from typing import TYPE_CHECKING

from pydantic import BaseModel

from polyqueue import Polyqueue

if TYPE_CHECKING:
    from collections.abc import Callable

__all__ = ["HANDLER", "SCHEMA", "Noop", "enqueue_bulk", "make_app"]

HANDLER = "bench.noop"
SCHEMA = "polyqueue"


class Noop(BaseModel):
    """The payload: a sequence number, so every job is distinct."""

    n: int


def make_app(url: str, backend: str, on_run: Callable[[], None] | None = None) -> Polyqueue:
    """An app on `url` with broker `backend`; `on_run()` is called when a job starts."""
    app = Polyqueue(database_url=url, queue_backend=backend, schema_name=SCHEMA)

    @app.register(HANDLER)
    async def noop(payload: Noop) -> None:  # noqa: ARG001  (the payload is the point)
        if on_run is not None:
            on_run()

    return app


async def enqueue_bulk(
    app: Polyqueue, jobs: int, batch: int, after_batch: Callable[[int], None] | None = None
) -> None:
    """Enqueue `jobs` no-op jobs with `enqueue_many`, `batch` per call; `after_batch(done)`
    is called after each call with the number of jobs enqueued so far."""
    for start in range(0, jobs, batch):
        end = min(start + batch, jobs)
        await app.enqueue_many(HANDLER, [Noop(n=n) for n in range(start, end)])
        if after_batch is not None:
            after_batch(end)
