"""The tables a chaos run prints, its JSON, and whether it passed."""

from __future__ import annotations

import statistics
from typing import TYPE_CHECKING, Any

from report import table  # bench/report.py

if TYPE_CHECKING:
    from chaos.check import FaultFigures
    from chaos.cluster import Cluster

__all__ = ["failures", "render", "to_json"]

HEADER = [
    "fault",
    "injected",
    "jobs enqueued",
    "lost",
    "two outcomes",
    "extra executions (cause)",
    "workers died / stalled",
    "back after p50",
    "max",
]
SHOWN = 5  # details of each kind shown per fault


def render(backend: str, figures: dict[str, FaultFigures], cluster: Cluster) -> str:
    """The backend's table, then the details behind every non-zero failure figure."""
    rows = [_row(f) for f in figures.values()]
    lines = [f"### {backend}", "", table(HEADER, rows), ""]
    for row in figures.values():
        lines += _details(row)
    for trouble in cluster.troubles:
        lines.append(f"- {trouble.kind}: {trouble.name} (pid {trouble.pid}) during {trouble.fault}")
        lines += ["  ```", *("  " + x for x in trouble.detail.splitlines()), "  ```"]
    return "\n".join(lines) + "\n"


def _row(f: FaultFigures) -> list[str]:
    extra = sum(f.extra.values())
    causes = ", ".join(f"{n} {cause}" for cause, n in f.extra.most_common())
    recovery = (
        [_seconds(statistics.median(f.recovery)), _seconds(max(f.recovery))]
        if f.recovery
        else ["-", "-"]
    )
    if f.unrecovered:
        recovery[1] = f"never ({f.unrecovered})"
    return [
        f.fault,
        str(f.injected) if f.injected else "-",
        str(f.enqueued),
        str(len(f.lost)),
        str(len(f.two_outcomes)),
        f"{extra} ({causes})" if extra else "0",
        f"{f.died} / {f.stalled}",
        *recovery,
    ]


def _details(f: FaultFigures) -> list[str]:
    lines = []
    if f.lost:
        lines.append(
            f"- {f.fault}: lost jobs {', '.join(map(str, f.lost[:SHOWN]))}"
            + (" ..." if len(f.lost) > SHOWN else "")
        )
    lines += [f"- {f.fault}: {text}" for text in f.two_outcomes[:SHOWN]]
    notes = sorted(set(f.notes))
    if any(n.startswith("injection failed") for n in notes):
        lines += [f"- {f.fault}: {n}" for n in notes if n.startswith("injection failed")]
    return lines


def _seconds(value: float) -> str:
    return f"{value:.1f} s"


def failures(figures: dict[str, FaultFigures]) -> list[str]:
    """Why the run fails: lost jobs, two outcomes, dead or stalled workers, no recovery."""
    found = []
    for f in figures.values():
        checks = [
            (len(f.lost), "jobs lost"),
            (len(f.two_outcomes), "jobs with two outcomes"),
            (f.died, "workers died"),
            (f.stalled, "workers stalled"),
            (f.unrecovered, "cycles without recovery"),
        ]
        found += [f"{f.fault}: {n} {what}" for n, what in checks if n]
    return found


def to_json(figures: dict[str, FaultFigures], cluster: Cluster) -> dict[str, Any]:
    return {
        "faults": {
            name: {
                "injected": f.injected,
                "enqueued": f.enqueued,
                "failed": f.failed,
                "lost": f.lost,
                "two_outcomes": f.two_outcomes,
                "extra_executions": dict(f.extra),
                "workers_died": f.died,
                "workers_stalled": f.stalled,
                "recovery_seconds": f.recovery,
                "unrecovered": f.unrecovered,
                "notes": sorted(set(f.notes)),
            }
            for name, f in figures.items()
        },
        "troubles": [vars(t) for t in cluster.troubles],
        "incidents": [{**vars(i), "pids": sorted(i.pids)} for i in cluster.incidents],
    }
