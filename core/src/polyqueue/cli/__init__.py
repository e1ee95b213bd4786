"""The `polyqueue` command line: `demo`, `migrate`, `worker APP`, `inspect`, `admin`, `db`,
`queue`, `dashboard`.

Every command reports a `PolyqueueError` as one `error: ...` line on stderr with exit code 1,
and bad usage (an APP that names no app, an invalid option value) as one such line with exit
code 2, never as a traceback. Commands whose output is data take `--json`.

One module per job: `commands` (the root group, `demo`, `migrate`, `worker`), `inspect`,
`admin`, `db`, `queue` and `dashboard` (one command or group each, imported only when
run) and `support` (what
`inspect` and `admin` share).
"""

from __future__ import annotations

from polyqueue.cli.commands import cli, main

__all__ = ["cli", "main"]
