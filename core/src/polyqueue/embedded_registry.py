"""Who uses an embedded PostgreSQL (client leases), and where this user runs them (registry).

- **Client leases.** Each process (each `EmbeddedPostgres` object) that uses a server holds an
  exclusive `flock` on a file of its own in `<data_dir>/clients/`. The kernel releases the
  lock when the process dies, however it dies, so a lease is live exactly as long as its
  holder: no count to get wrong, nothing to clean up after a `kill -9`. The last holder to
  leave stops the server; a stale file is removed by whoever looks next.
- **Registry.** A small file per server in `$XDG_STATE_HOME/polyqueue/embedded/` (default
  `~/.local/state/...`) records its data directory, so that `polyqueue db status` and the
  "no database here" error of `polyqueue inspect` can name the servers this user runs
  elsewhere.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import sys
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import IO

__all__ = [
    "ClientLease",
    "LiveClient",
    "live_clients",
    "record_server",
    "registered_servers",
    "registry_dir",
]

_CLIENTS = "clients"


@dataclass(frozen=True)
class LiveClient:
    """A process that holds a lease on the server: its pid and command line."""

    pid: int
    command: str


class ClientLease:
    """This object's lease on the server in `data_dir` (take and release it under the
    data directory's start/stop lock, so that a start and a last stop never interleave)."""

    def __init__(self, data_dir: Path) -> None:
        self._dir = data_dir / _CLIENTS
        self._path: Path | None = None
        self._handle: IO[str] | None = None

    @property
    def held(self) -> bool:
        """Whether this object holds its lease."""
        return self._handle is not None

    def take(self) -> None:
        """Create and lock this object's lease file (no-op if already held)."""
        import fcntl  # noqa: PLC0415 -- POSIX only; importing this module must work everywhere

        if self._handle is not None:
            return
        self._dir.mkdir(exist_ok=True)
        path = self._dir / f"{os.getpid()}-{uuid.uuid4().hex[:8]}"
        handle = path.open("w")
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)  # a new file: never contended
        handle.write(json.dumps({"pid": os.getpid(), "command": _command_line()}))
        handle.flush()
        self._path, self._handle = path, handle

    def release(self) -> None:
        """Give the lease back (no-op if not held)."""
        if self._handle is None or self._path is None:
            return
        self._handle.close()  # closing releases the lock
        with contextlib.suppress(OSError):
            self._path.unlink()
        self._path = self._handle = None


def live_clients(data_dir: Path) -> list[LiveClient]:
    """The processes holding a lease on the server in `data_dir`; stale files are removed."""
    import fcntl  # noqa: PLC0415 -- POSIX only

    folder = data_dir / _CLIENTS
    found: list[LiveClient] = []
    for path in sorted(folder.glob("*")) if folder.is_dir() else []:
        try:
            with path.open("r") as handle:
                try:
                    fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except BlockingIOError:  # held: its process is alive
                    found.append(_describe(handle.read(), path))
                    continue
                path.unlink()  # nobody holds it: its process has gone
        except OSError:
            continue  # removed meanwhile by its owner
    return found


def _describe(text: str, path: Path) -> LiveClient:
    try:
        data = json.loads(text)
        return LiveClient(int(data["pid"]), str(data["command"]))
    except (ValueError, KeyError, TypeError):  # written a moment ago, not yet flushed
        return LiveClient(int(path.name.partition("-")[0] or 0), "?")


def _command_line() -> str:
    """What this process runs, for `polyqueue db status` (program name and arguments)."""
    return " ".join([Path(sys.argv[0]).name, *sys.argv[1:]]) if sys.argv else "?"


def registry_dir() -> Path:
    """This user's registry of embedded servers."""
    state = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(state) / "polyqueue" / "embedded"


def record_server(data_dir: Path) -> None:
    """Remember that a server runs from `data_dir` (best effort: a read-only home is fine)."""
    key = hashlib.sha256(os.fsencode(data_dir)).hexdigest()[:16]
    with contextlib.suppress(OSError):
        folder = registry_dir()
        folder.mkdir(parents=True, exist_ok=True)
        (folder / key).write_text(json.dumps({"data_dir": str(data_dir)}))


def registered_servers() -> list[Path]:
    """Data directories recorded in the registry whose cluster still exists (others are
    forgotten), sorted."""
    found = []
    folder = registry_dir()
    for entry in sorted(folder.glob("*")) if folder.is_dir() else []:
        try:
            data_dir = Path(json.loads(entry.read_text())["data_dir"])
        except (OSError, ValueError, KeyError, TypeError):
            continue
        if (data_dir / "pgdata" / "PG_VERSION").exists():
            found.append(data_dir)
        else:
            with contextlib.suppress(OSError):
                entry.unlink()
    return sorted(found)
