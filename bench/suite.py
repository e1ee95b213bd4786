"""Which measurements one run makes: `--only` names and `--backends` expanded into units.

A unit is one benchmark on one backend, measured in a fresh database of its own. Drain,
single enqueue and latency run for every `--backends` backend; scale-out and the million
jobs run on `postgres`; the SQS drain runs on `sqs` (against moto).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from measure import drain, pickup_latency, single_enqueue
from million import million
from scaleout import SCALEOUT_WORKERS, scaleout
from sqs_drain import sqs_drain

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

    from plan import Plan

    Benchmark = Callable[[str, str, Plan], Awaitable[dict[str, float]]]

__all__ = ["CHOICES", "Unit", "units"]

CHOICES = ("drain", "single", "latency", "scaleout", "memory", "million", "sqs")
"""`--only` names. `memory` is measured during the drain: either name runs it."""


@dataclass(frozen=True, slots=True)
class Unit:
    """One benchmark on one backend."""

    label: str
    benchmark: Benchmark
    backend: str


def units(chosen: set[str], backends: list[str], plan: Plan) -> list[Unit]:
    """The units of one run, in the order they are measured."""
    unknown = chosen - set(CHOICES)
    if unknown:
        raise ValueError(f"unknown --only names: {', '.join(sorted(unknown))}")
    per_backend: list[tuple[str, Benchmark]] = []
    if chosen & {"drain", "memory"}:
        per_backend.append(("drain", drain))
    if "single" in chosen:
        per_backend.append(("single", single_enqueue))
    if "latency" in chosen:
        per_backend.append(("latency", pickup_latency))
    found = [Unit(label, bench, backend) for backend in backends for label, bench in per_backend]
    if "scaleout" in chosen:
        found += [Unit(f"scaleout{n}", scaleout(n), "postgres") for n in SCALEOUT_WORKERS]
    if "million" in chosen and plan.million > 0:
        found.append(Unit("million", million, "postgres"))
    if "sqs" in chosen and plan.sqs_jobs > 0:
        found.append(Unit("sqs", sqs_drain, "sqs"))
    return found
