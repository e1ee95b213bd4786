"""Report helpers: the machine line, the revision, medians of runs and Markdown tables."""

from __future__ import annotations

import os
import platform
import shutil
import statistics
import subprocess
from collections import defaultdict
from pathlib import Path
from typing import Any

__all__ = [
    "Failure",
    "Result",
    "Values",
    "by_key",
    "cell",
    "fmt",
    "machine_line",
    "median_of",
    "ratios",
    "revision",
    "table",
]

Result = dict[str, Any]  # {"run": int, "backend": str, "metric": str, "value": float}
Failure = dict[str, Any]  # {"run": int, "backend": str, "benchmark": str, "error": str}
Values = dict[tuple[str, str], list[float]]  # (metric, backend) -> one value per run


def machine_line(server: dict[str, str]) -> str:
    """CPU count and model, Python, PostgreSQL version and durability settings."""
    return (
        f"{os.cpu_count()} CPUs ({_cpu_model()}), {platform.system()} {platform.release()}, "
        f"Python {platform.python_version()}, PostgreSQL {server['version']} "
        f"(fsync={server['fsync']}, synchronous_commit={server['synchronous_commit']})"
    )


def revision() -> str:
    """The commit measured, `+dirty` if the work tree had changes (figures follow code)."""
    git = shutil.which("git")
    if git is None:
        return "unknown"
    root = Path(__file__).resolve().parent.parent
    run = [git, "-C", str(root)]
    head = subprocess.run(
        [*run, "rev-parse", "--short", "HEAD"], check=False, capture_output=True, text=True
    )
    dirty = subprocess.run(
        [*run, "status", "--porcelain", "--", "core", "plugins"], check=False, capture_output=True
    )
    return head.stdout.strip() + ("+dirty" if dirty.stdout.strip() else "")


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def by_key(results: list[Result]) -> Values:
    """Every run's value of each (metric, backend)."""
    values: Values = defaultdict(list)
    for result in results:
        values[result["metric"], result["backend"]].append(result["value"])
    return values


def median_of(values: Values, metric: str, backend: str) -> float | None:
    """The median of `metric` for `backend`, None if it was not measured."""
    samples = values.get((metric, backend))
    return statistics.median(samples) if samples else None


def ratios(results: list[Result], over: tuple[str, str], under: tuple[str, str]) -> list[float]:
    """Per run, the value of (metric, backend) `over` divided by that of `under`: both saw
    the same run's noise."""
    by_run: dict[int, dict[tuple[str, str], float]] = defaultdict(dict)
    for result in results:
        by_run[result["run"]][result["metric"], result["backend"]] = result["value"]
    return [v[over] / v[under] for v in by_run.values() if over in v and under in v and v[under]]


def table(header: list[str], rows: list[list[str]], *, left: int = 1) -> str:
    """A Markdown table: the first `left` columns (labels) left-aligned, figures right."""
    lines = ["| " + " | ".join(header) + " |"]
    lines.append(
        "| " + " | ".join("---" if i < left else "---:" for i in range(len(header))) + " |"
    )
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def cell(samples: list[float] | None) -> str:
    """`**median** (min-max)` of the runs, the bare value for one run, `-` for none."""
    if not samples:
        return "-"
    median = fmt(statistics.median(samples))
    if len(samples) == 1:
        return median
    return f"**{median}** ({fmt(min(samples))}-{fmt(max(samples))})"


def fmt(value: float) -> str:
    """Whole numbers with separators from 100 up, two decimals below."""
    return f"{value:,.0f}" if abs(value) >= 100 else f"{value:.2f}"
