"""Start-up time: `python bench/startup.py [--runs N]`.

Times, each in a fresh interpreter, `python -c "import polyqueue"`, the same importing the app
class (what a program that uses Polyqueue pays), `polyqueue --help`, and
for reference the interpreter alone and the third-party libraries the core cannot do without
(asyncpg, pydantic, pydantic-settings, pluggy, redis). Prints the median and range of N runs
of each, and the modules `import polyqueue` loads that it should not (rich, click, the CLI,
the demo, plugins). It never asserts a time: the machine is shared and noisy.

`--no-bytecode` runs every command as the shared peer harness (../shared/bench-peers) runs
its processes on a machine whose environment sets `PYTHONDONTWRITEBYTECODE=1`: with a
`PYTHONPYCACHEPREFIX` that is never written, so every module, the standard library's too, is
compiled from source at each start.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

PYTHON = sys.executable
POLYQUEUE = str(Path(PYTHON).with_name("polyqueue"))
CASES = {
    "python -c pass": [PYTHON, "-c", "pass"],
    "floor: asyncpg, pydantic, pydantic-settings, pluggy": [
        PYTHON,
        "-c",
        "import asyncio, asyncpg, pydantic, pydantic_settings, pluggy",
    ],
    "for reference: import redis.asyncio": [PYTHON, "-c", "import redis.asyncio"],
    "import polyqueue": [PYTHON, "-c", "import polyqueue"],
    "from polyqueue import Polyqueue": [PYTHON, "-c", "from polyqueue import Polyqueue"],
    "polyqueue --help": [POLYQUEUE, "--help"],
}
LAZY = ("rich", "click", "polyqueue.cli", "polyqueue.demo", "polyqueue_redis", "prometheus_client")


def parse() -> argparse.Namespace:
    """The command line."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=9, help="runs of each command (median)")
    parser.add_argument(
        "--no-bytecode",
        action="store_true",
        help="compile every module from source at each start, as the peer harness does",
    )
    return parser.parse_args()


def timed(command: list[str], env: dict[str, str] | None = None) -> float:
    """Wall-clock seconds of one run of `command`, which must succeed."""
    started = time.perf_counter()
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL, env=env)
    return time.perf_counter() - started


def environment(no_bytecode: bool, empty_dir: str) -> dict[str, str] | None:
    """None (this process's environment), or one where no cached bytecode is found or
    written: a pycache prefix pointing at an empty directory, and writing turned off."""
    if not no_bytecode:
        return None
    return {**os.environ, "PYTHONDONTWRITEBYTECODE": "1", "PYTHONPYCACHEPREFIX": empty_dir}


def eager_modules() -> list[str]:
    """The modules of LAZY that `import polyqueue` loads."""
    probe = f"import sys, polyqueue; print(' '.join(m for m in {LAZY!r} if m in sys.modules))"
    output = subprocess.run([PYTHON, "-c", probe], check=True, capture_output=True, text=True)
    return output.stdout.split()


def main() -> None:
    """Run every case `--runs` times (interleaved, so noise hits all alike) and print."""
    args = parse()
    runs = args.runs
    samples: dict[str, list[float]] = {name: [] for name in CASES}
    with tempfile.TemporaryDirectory(prefix="pq-no-pycache-") as empty_dir:
        env = environment(args.no_bytecode, empty_dir)
        for name, command in CASES.items():
            timed(command, env)  # warm the file cache
            samples[name].append(timed(command, env))
        for _ in range(runs - 1):
            for name, command in CASES.items():
                samples[name].append(timed(command, env))
    mode = ", no cached bytecode" if args.no_bytecode else ""
    print(f"{'command':<55} {'median s':>9} {'range s':>13}  ({runs} runs{mode})")
    for name, values in samples.items():
        spread = f"{min(values):.3f}-{max(values):.3f}"
        print(f"{name:<55} {statistics.median(values):>9.3f} {spread:>13}")
    eager = eager_modules()
    print("loaded by `import polyqueue` though not needed:", ", ".join(eager) or "none")


if __name__ == "__main__":
    main()
