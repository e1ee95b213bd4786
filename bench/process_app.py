"""The app `polyqueue worker process_app:app` runs in `bench/processes.py` (settings from
`POLYQUEUE_*`): the benchmarks' one no-op handler."""

from __future__ import annotations

import os

from workload import make_app

app = make_app(os.environ["POLYQUEUE_DATABASE_URL"], os.environ["POLYQUEUE_QUEUE_BACKEND"])
