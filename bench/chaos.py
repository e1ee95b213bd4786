"""Fault injection under load: `python bench/chaos.py [--quick] [--backends a,b] [--cycles N]`.

Starts every server it needs (an embedded PostgreSQL with fsync on, a redis-server, moto's
SQS), then for each backend runs a producer and three worker processes under steady load
while it injects each fault in turn, `--cycles` times. At the end it checks the jobs table,
an outcome log kept by a trigger, and the handlers' own event logs, and prints one table per
backend. It exits 1 if a job was lost, a job has two outcomes, a worker died or stalled, or
throughput never came back after a fault. docs/reliability.md explains every figure.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import json
import logging
import signal
import sys
import tempfile
import time
from pathlib import Path

from chaos import servers
from chaos.faults import FAULTS
from chaos.plan import QUICK, Plan
from chaos.report import failures, render, to_json
from chaos.runner import run_backend
from databases import server_info
from report import machine_line, revision

BACKENDS = ("postgres", "redis", "pgmq", "sqs")


def parse(argv: list[str]) -> argparse.Namespace:
    """The command line."""
    parser = argparse.ArgumentParser(description=__doc__)
    add = parser.add_argument
    add("--quick", action="store_true", help="one cycle of each fault, a few hundred jobs")
    add("--backends", default=",".join(BACKENDS), help=f"comma-separated: {','.join(BACKENDS)}")
    add("--cycles", type=int, help="injections of each fault (default 10; --quick: 1)")
    add("--rate", type=float, help="jobs enqueued per second (default 40; --quick: 8)")
    add("--faults", default="", help=f"only these: {','.join(f.name for f in FAULTS)}")
    add("--json", type=Path, help="write every figure, incident and trouble here")
    add("--keep", type=Path, help="keep the process logs in this directory")
    return parser.parse_args(argv)


def plan_of(args: argparse.Namespace) -> Plan:
    plan = QUICK if args.quick else Plan()
    changes: dict[str, object] = {}
    if args.cycles is not None:
        changes["cycles"] = args.cycles
    if args.rate is not None:
        changes["rate"] = args.rate
    if args.faults:
        changes["faults"] = tuple(n.strip() for n in args.faults.split(",") if n.strip())
    return dataclasses.replace(plan, **changes)  # type: ignore[arg-type]


async def main(args: argparse.Namespace) -> int:
    """Start the servers, run each backend, print the tables; 1 if anything failed."""
    plan = plan_of(args)
    backends = [b.strip() for b in args.backends.split(",") if b.strip()]
    unknown = set(backends) - set(BACKENDS)
    if unknown:
        sys.exit(f"unknown backends: {', '.join(sorted(unknown))}")
    with contextlib.ExitStack() as files:
        folder = args.keep or Path(
            files.enter_context(tempfile.TemporaryDirectory(prefix="chaos-"))
        )
        return await _run(plan, backends, Path(folder), args.json)


async def _run(plan: Plan, backends: list[str], folder: Path, json_path: Path | None) -> int:
    postgres = servers.Postgres(folder)
    redis = servers.Redis() if "redis" in backends else None
    moto = servers.Moto() if "sqs" in backends else None
    started = [s for s in (postgres, redis, moto) if s is not None]
    output: dict[str, object] = {"revision": revision(), "plan": dataclasses.asdict(plan)}
    problems: list[str] = []
    try:
        for server in started:
            await server.start()
        output["machine"] = machine_line(await server_info(postgres.admin_url))
        print(f"machine: {output['machine']}\nrevision: {output['revision']}", flush=True)
        tables = []
        for backend in backends:
            figures, cluster = await run_backend(
                backend, plan, folder / backend, postgres, redis, moto
            )
            tables.append(render(backend, figures, cluster))
            output[backend] = to_json(figures, cluster)
            problems += [f"{backend} {p}" for p in failures(figures)]
    finally:
        for server in (redis, moto):
            if server is not None:
                await server.close()
        await postgres.stop_fast()
    print("\n" + "\n".join(tables))
    print(
        "FAILED:\n  " + "\n  ".join(problems)
        if problems
        else "PASSED: no job lost, none with two outcomes, every worker alive and consuming"
    )
    if json_path:
        output["failures"] = problems
        await asyncio.to_thread(
            json_path.write_text, json.dumps(output, indent=2, default=str) + "\n", encoding="utf-8"
        )
    return 1 if problems else 0


def _exit_on_sigterm(signum: int, _frame: object) -> None:
    sys.exit(128 + signum)  # unwinds, so the servers and processes are cleaned up


if __name__ == "__main__":
    for quiet in ("polyqueue", "werkzeug"):  # the runner's own app, moto's requests
        logging.getLogger(quiet).setLevel(logging.ERROR)
    signal.signal(signal.SIGTERM, _exit_on_sigterm)
    began = time.perf_counter()
    code = asyncio.run(main(parse(sys.argv[1:])))
    print(f"(took {time.perf_counter() - began:.0f}s)", file=sys.stderr)
    sys.exit(code)
