# ruff: noqa: T201, INP001  (an example script: it prints, and it is not in a package)
"""A plain script (a cron job, a data migration, a management command) that enqueues work
without writing asyncio, and waits for it when asked to.

    python script.py 10           # enqueue 10 jobs and exit
    python script.py 10 --wait    # ... and wait until a worker has run them
    polyqueue worker script:queue --burst   # run every ready job, then exit
"""

from __future__ import annotations

import argparse

from pydantic import BaseModel

from polyqueue import Polyqueue

queue = Polyqueue()


class Invoice(BaseModel):
    number: int


@queue.register("invoices.send")
def send_invoice(payload: Invoice) -> str:
    return f"invoice {payload.number} sent"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("count", type=int)
    parser.add_argument("--wait", action="store_true", help="wait for a worker to run them")
    args = parser.parse_args()
    with queue.sync as jobs:  # starts the app on a thread of its own; closes it at the end
        ids = jobs.enqueue_many(send_invoice, [Invoice(number=n) for n in range(args.count)])
        print("enqueued", *ids)
        if args.wait:
            for job_id in ids:
                print(jobs.wait_for(job_id, timeout=60).result)


if __name__ == "__main__":
    main()
