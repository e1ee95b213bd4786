"""A worker process with a per-second cron schedule: `python cron_app.py` until SIGTERM.

Settings come from `POLYQUEUE_*` variables set by the test.
"""

from __future__ import annotations

import polyqueue
from polyqueue import CronTick, Polyqueue

SCHEDULE = "e2e.every_second"
QUEUE = "e2e_cron"

app = Polyqueue()


@app.cron("* * * * * *", name=SCHEDULE, misfire="skip", queue=QUEUE)
async def every_second(tick: CronTick) -> str:
    return tick.tick.isoformat()


if __name__ == "__main__":
    polyqueue.main(app)
