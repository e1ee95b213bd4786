"""Turns raw results into medians, a machine line and a Markdown table."""

from __future__ import annotations

import os
import platform
import shutil
import statistics
import subprocess
from collections import defaultdict
from pathlib import Path
from typing import Any

__all__ = ["METRICS", "Result", "machine_line", "markdown_table", "ratios", "revision"]

Result = dict[str, Any]  # {"run": int, "backend": str, "metric": str, "value": float}

METRICS = {
    "drain_jobs_per_s": ("Drain no-op jobs, 1 worker process", "jobs/s"),
    "bulk_enqueue_jobs_per_s": ("Bulk enqueue (`enqueue_many`, batches)", "jobs/s"),
    "single_enqueue_jobs_per_s": ("Single enqueue (one awaited `enqueue` at a time)", "jobs/s"),
    "pickup_p50_ms": ("Pickup latency on an idle worker, p50", "ms"),
    "pickup_p99_ms": ("Pickup latency on an idle worker, p99", "ms"),
}


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
        [*run, "status", "--porcelain", "--", "core"], check=False, capture_output=True
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


def _by_metric(results: list[Result]) -> dict[tuple[str, str], list[float]]:
    values: dict[tuple[str, str], list[float]] = defaultdict(list)
    for result in results:
        values[result["metric"], result["backend"]].append(result["value"])
    return values


def ratios(results: list[Result], metric: str, over: str, under: str) -> list[float]:
    """Per run, `metric` of backend `over` divided by that of `under` (same run, same noise)."""
    by_run: dict[int, dict[str, float]] = defaultdict(dict)
    for result in results:
        if result["metric"] == metric:
            by_run[result["run"]][result["backend"]] = result["value"]
    return [v[over] / v[under] for v in by_run.values() if over in v and under in v]


def markdown_table(results: list[Result], backends: list[str]) -> str:
    """Median (min-max) of every metric per backend, one row per metric."""
    values = _by_metric(results)
    lines = [
        "| benchmark | unit | " + " | ".join(f"`{b}`" for b in backends) + " |",
        "| --- | --- | " + " | ".join("---:" for _ in backends) + " |",
    ]
    for metric, (title, unit) in METRICS.items():
        cells = [_cell(values.get((metric, backend), [])) for backend in backends]
        if any(cell != "-" for cell in cells):
            lines.append(f"| {title} | {unit} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _cell(samples: list[float]) -> str:
    if not samples:
        return "-"
    median = _fmt(statistics.median(samples))
    if len(samples) == 1:
        return median
    return f"**{median}** ({_fmt(min(samples))}-{_fmt(max(samples))})"


def _fmt(value: float) -> str:
    return f"{value:,.0f}" if value >= 100 else f"{value:.2f}"
