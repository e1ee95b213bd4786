"""The verdict of one backend's run, from the jobs table, the outcome log and the event logs.

- **Lost**: a job the producer was given an id for, or that is in the table, and that did not
  finish (succeeded or failed) before the drain ended.
- **Two outcomes**: more than one finishing write recorded for a job (a trigger on
  `polyqueue.jobs` logs every write that finishes a row or changes a finished one), or a stored
  result produced by another attempt than the row's own (a stale write of a fenced-off worker),
  or a result no handler execution returned.
- **Extra executions**: handler starts beyond one per job, not counting the planned transient
  failures. Each is explained by the fault that interrupted the execution it repeats; one no
  fault explains is reported as "unexplained".
"""

from __future__ import annotations

import json
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import asyncpg

if TYPE_CHECKING:
    from chaos.cluster import Cluster, Incident
    from chaos.procs import Event

__all__ = ["OUTCOME_LOG_SQL", "FaultFigures", "verdict"]

STEADY = "(steady load)"
UNEXPLAINED = "unexplained"

OUTCOME_LOG_SQL = """
CREATE TABLE public.chaos_outcomes (
    job_id  bigint NOT NULL,
    status  text NOT NULL,
    attempt integer NOT NULL,
    result  jsonb,
    at      timestamptz NOT NULL DEFAULT clock_timestamp()
);
CREATE FUNCTION public.chaos_record_outcome() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO public.chaos_outcomes (job_id, status, attempt, result)
    VALUES (NEW.id, NEW.status::text, NEW.attempt, NEW.result);
    RETURN NULL;
END $$;
CREATE TRIGGER chaos_outcomes AFTER UPDATE ON polyqueue.jobs FOR EACH ROW
WHEN (NEW.status::text IN ('succeeded', 'failed', 'cancelled') AND (
      OLD.status IS DISTINCT FROM NEW.status OR OLD.result IS DISTINCT FROM NEW.result
      OR OLD.attempt IS DISTINCT FROM NEW.attempt))
EXECUTE FUNCTION public.chaos_record_outcome();
"""


@dataclass
class FaultFigures:
    """One row of a backend's table."""

    fault: str
    injected: int = 0
    enqueued: int = 0
    failed: int = 0
    lost: list[int] = field(default_factory=list)
    two_outcomes: list[str] = field(default_factory=list)
    extra: Counter[str] = field(default_factory=Counter)
    died: int = 0
    stalled: int = 0
    recovery: list[float] = field(default_factory=list)
    unrecovered: int = 0
    notes: list[str] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class Execution:
    job: int
    attempt: int
    pid: int
    started: float
    ended: float | None
    end: str | None  # "return" | "raise" | "cancel" | None (never ended: killed, stopped)


async def verdict(cluster: Cluster, fault_names: list[str]) -> dict[str, FaultFigures]:
    """Per fault (and the steady load before them), the figures of the run."""
    figures = {name: FaultFigures(name) for name in [STEADY, *fault_names]}
    for incident in cluster.incidents:
        row = figures[incident.fault]
        row.injected += 1
        if incident.recovery_seconds is None:
            row.unrecovered += 1
        else:
            row.recovery.append(incident.recovery_seconds)
        if incident.note:
            row.notes.append(incident.note)
    for trouble in cluster.troubles:
        row = figures.get(trouble.fault) or figures[STEADY]
        row.died += trouble.kind != "stalled"
        row.stalled += trouble.kind == "stalled"
    phase_of = _phases(cluster.incidents)
    jobs, outcomes = await _read_database(cluster.database_url)
    executions = _executions(
        [e for p in cluster.every_process if p.role == "worker" for e in p.events]
    )
    enqueued = {
        e.fields[0]: e.at
        for p in cluster.every_process
        if p.role == "producer"
        for e in p.events
        if e.kind == "enq"
    }
    for row in jobs.values():
        figures[phase_of(row["created"])].enqueued += 1
    for job_id, at in enqueued.items():
        if job_id not in jobs:
            figures[phase_of(at)].lost.append(job_id)
    for job_id, row in jobs.items():
        phase = figures[phase_of(row["created"])]
        _judge(job_id, row, outcomes.get(job_id, []), executions.get(job_id, []), phase)
        for cause, fault in _extras(row, executions.get(job_id, []), cluster.incidents):
            (figures[fault] if fault else phase).extra[cause] += 1
    return figures


def _judge(
    job_id: int,
    row: dict[str, Any],
    writes: list[dict[str, Any]],
    runs: list[Execution],
    phase: FaultFigures,
) -> None:
    if row["status"] not in {"succeeded", "failed"}:
        phase.lost.append(job_id)
        return
    phase.failed += row["status"] == "failed"
    if not writes:  # the trigger saw no write finish it: the check itself is broken
        phase.two_outcomes.append(f"job {job_id}: finished, but no finishing write was logged")
    if len(writes) > 1:
        shown = ", ".join(f"{w['status']}@{w['attempt']}" for w in writes)
        phase.two_outcomes.append(f"job {job_id}: {len(writes)} finishing writes ({shown})")
    if row["status"] != "succeeded":
        return
    result = row["result"] or {}
    if result.get("attempt") != row["attempt"]:
        phase.two_outcomes.append(
            f"job {job_id}: result of attempt {result.get('attempt')} (pid {result.get('pid')})"
            f" stored on attempt {row['attempt']}"
        )
    elif not any(
        r.end == "return" and r.attempt == result.get("attempt") and r.pid == result.get("pid")
        for r in runs
    ):
        phase.two_outcomes.append(f"job {job_id}: result {result} returned by no execution")


def _extras(
    row: dict[str, Any], runs: list[Execution], incidents: list[Incident]
) -> list[tuple[str, str | None]]:
    """(cause, fault) of each execution beyond the one that produced the outcome."""
    result = row["result"] or {}
    owner = (result.get("attempt"), result.get("pid"))
    repeated = [r for r in runs if r.end != "raise"]
    if row["status"] == "succeeded":
        repeated = [r for r in repeated if (r.attempt, r.pid) != owner]
    else:
        repeated = repeated[:-1]
    return [_cause(r, _next_start(r, runs), incidents) for r in repeated]


def _next_start(run: Execution, runs: list[Execution]) -> float | None:
    """When the job next started: until then `run`'s outcome was still unsettled (its handler
    may have returned, with the worker killed or stopped before the outcome committed)."""
    return min((r.started for r in runs if r.started > run.started), default=None)


def _cause(
    run: Execution, settled: float | None, incidents: list[Incident]
) -> tuple[str, str | None]:
    """The incident that hit `run`'s process between its start and the job's next start, if
    any: one aimed at that very process first (a SIGKILL, a SIGSTOP), else the first one that
    hit every process."""
    candidates = []
    for incident in incidents:
        hit = not incident.pids or run.pid in incident.pids
        ended = incident.recovered or incident.ended
        overlaps = run.started <= ended and (settled is None or settled >= incident.began)
        if hit and overlaps:
            candidates.append((bool(incident.pids), -incident.began, incident))
    if not candidates:
        return UNEXPLAINED, None
    incident = max(candidates, key=lambda c: c[:2])[2]
    return incident.cause, incident.fault


def _phases(incidents: list[Incident]) -> Any:
    """created-at -> the fault whose phase it fell in (a phase runs from its first injection
    to the next fault's first injection)."""
    starts: list[tuple[float, str]] = []
    for incident in incidents:
        if not starts or starts[-1][1] != incident.fault:
            starts.append((incident.began, incident.fault))

    def phase_of(at: float) -> str:
        current = STEADY
        for began, fault in starts:
            if at >= began:
                current = fault
        return current

    return phase_of


def _executions(events: list[Event]) -> dict[int, list[Execution]]:
    """Every handler execution per job, from the workers' start/return/raise events."""
    open_runs: dict[tuple[int, int, int], float] = {}
    done: dict[int, list[Execution]] = defaultdict(list)
    for event in sorted(events, key=lambda e: e.at):
        key = event.fields[:3]
        if event.kind == "start":
            open_runs[key] = event.at
        elif event.kind in {"return", "raise", "cancel"} and key in open_runs:
            done[key[0]].append(Execution(*key, open_runs.pop(key), event.at, event.kind))
    for (job, attempt, pid), started in open_runs.items():
        done[job].append(Execution(job, attempt, pid, started, None, None))
    for runs in done.values():
        runs.sort(key=lambda r: r.started)
    return done


async def _read_database(
    url: str,
) -> tuple[dict[int, dict[str, Any]], dict[int, list[dict[str, Any]]]]:
    connection = await asyncpg.connect(url)
    try:
        rows = await connection.fetch(
            "SELECT id, status::text AS status, attempt, result::text AS result,"
            " extract(epoch FROM created_at)::float8 AS created FROM polyqueue.jobs"
        )
        writes = await connection.fetch(
            "SELECT job_id, status, attempt FROM public.chaos_outcomes ORDER BY at"
        )
    finally:
        await connection.close()
    jobs = {
        r["id"]: {**dict(r), "result": json.loads(r["result"]) if r["result"] else None}
        for r in rows
    }
    outcomes: dict[int, list[dict[str, Any]]] = defaultdict(list)
    for write in writes:
        outcomes[write["job_id"]].append(dict(write))
    return jobs, outcomes
