"""The web dashboard: `create_app(app)` is an ASGI app (Starlette) showing jobs, workers,
queues, cron and workflows, with retry, cancel and pause behind CSRF-checked POSTs.

Needs the `polyqueue[dashboard]` extra. `polyqueue dashboard` serves it on 127.0.0.1; see
docs/dashboard.md.
"""

from __future__ import annotations

from polyqueue.dashboard.app import create_app
from polyqueue.dashboard.security import BasicAuth, TokenAuth, check_exposure

__all__ = ["BasicAuth", "TokenAuth", "check_exposure", "create_app"]
