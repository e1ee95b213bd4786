"""CPU time and memory of processes, read from Linux's `/proc` (no dependency).

CPU figures are in seconds. A process tree's CPU is its root's own time, plus what its
reaped children left in its `cutime`/`cstime`, plus every live descendant's own time (and
what *their* reaped children left): the difference of two readings is the CPU the tree
spent in between, even if children started or exited meanwhile.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

__all__ = [
    "KB_PER_MB",
    "ProcStat",
    "machine_busy_seconds",
    "read_stat",
    "reset_peak_rss",
    "status_kb",
    "tree_cpu_seconds",
]

KB_PER_MB = 1024
_PROC = Path("/proc")
_TICKS = os.sysconf("SC_CLK_TCK")


@dataclass(frozen=True, slots=True)
class ProcStat:
    """The fields of `/proc/<pid>/stat` the benchmarks use; times in seconds."""

    pid: int
    comm: str
    """The program name (`postgres`, `python3.11`)."""
    ppid: int
    own_cpu: float
    """utime + stime: this process's own CPU."""
    reaped_cpu: float
    """cutime + cstime: CPU of its children it has waited for."""

    @property
    def cpu(self) -> float:
        """Own CPU plus reaped children's."""
        return self.own_cpu + self.reaped_cpu


def read_stat(pid: int) -> ProcStat | None:
    """`/proc/<pid>/stat`, or None if the process is gone (or `/proc` is not Linux's)."""
    try:
        text = (_PROC / str(pid) / "stat").read_text()
    except OSError:
        return None
    # "pid (comm) state ppid ...": comm may hold spaces and parentheses, so split at the last ")".
    comm_end = text.rindex(")")
    comm = text[text.index("(") + 1 : comm_end]
    fields = text[comm_end + 2 :].split()
    utime, stime, cutime, cstime = (int(value) for value in fields[11:15])
    return ProcStat(pid, comm, int(fields[1]), (utime + stime) / _TICKS, (cutime + cstime) / _TICKS)


def tree_cpu_seconds(root: int) -> float | None:
    """CPU seconds of process `root` and all its descendants so far; None if `root` is gone."""
    top = read_stat(root)
    if top is None:
        return None
    children: dict[int, list[ProcStat]] = {}
    for entry in _PROC.iterdir():
        if entry.name.isdigit() and (stat := read_stat(int(entry.name))) is not None:
            children.setdefault(stat.ppid, []).append(stat)
    total, pending = 0.0, [top]
    while pending:
        stat = pending.pop()
        total += stat.cpu
        pending.extend(children.get(stat.pid, []))
    return total


def machine_busy_seconds() -> float | None:
    """CPU seconds all processes of the machine have used so far, over all its CPUs (the
    first line of `/proc/stat`: user, nice, system, irq, softirq); None if unreadable."""
    try:
        with (_PROC / "stat").open() as stat:
            fields = stat.readline().split()
    except OSError:
        return None
    # cpu user nice system idle iowait irq softirq ... (guest time is inside user and nice)
    user, nice, system, _idle, _iowait, irq, softirq = (int(v) for v in fields[1:8])
    return (user + nice + system + irq + softirq) / _TICKS


def status_kb(pid: int | str, field: str) -> int | None:
    """A `kB` field of `/proc/<pid>/status` (`VmRSS`, `VmHWM`); `pid` may be `"self"`."""
    try:
        lines = (_PROC / str(pid) / "status").read_text().splitlines()
    except OSError:
        return None
    for line in lines:
        name, _, value = line.partition(":")
        if name == field:
            return int(value.split()[0])
    return None


def reset_peak_rss() -> bool:
    """Reset this process's `VmHWM` to its current RSS (Linux >= 4.0); False if refused."""
    try:
        (_PROC / "self" / "clear_refs").write_text("5")
    except OSError:
        return False
    return True
