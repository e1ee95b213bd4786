# ruff: noqa: INP001  (an example, not in a package)
"""Flask with Polyqueue: views enqueue and read jobs through `queue.sync`; workers run as
their own processes (`polyqueue worker flask_app:queue`).

Run it: `POLYQUEUE_DATABASE_URL=postgresql://... flask --app flask_app run`.
"""

from __future__ import annotations

from flask import Flask, abort, request
from pydantic import BaseModel

from polyqueue import JobNotFoundError, Polyqueue

queue = Polyqueue()  # started by the first `queue.sync` call, on a thread of its own


class Report(BaseModel):
    customer_id: int
    month: str


@queue.register("reports.build")
def build_report(payload: Report) -> dict[str, str]:  # a sync handler runs in a thread
    return {"url": f"/reports/{payload.customer_id}/{payload.month}.pdf"}


app = Flask(__name__)


@app.post("/reports")
def request_report() -> tuple[dict[str, int], int]:
    report = Report.model_validate(request.get_json())
    return {"job_id": queue.sync.enqueue(build_report, report)}, 202


@app.get("/jobs/<int:job_id>")
def job_status(job_id: int) -> dict[str, object]:
    try:
        job = queue.sync.get_job(job_id)
    except JobNotFoundError:
        abort(404)
    return {"id": job.id, "status": job.status.value, "result": job.result}


@app.delete("/jobs/<int:job_id>")
def cancel_job(job_id: int) -> dict[str, bool]:
    return {"cancelled": queue.sync.cancel(job_id)}
