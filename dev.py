"""Sets up .venv and runs the demo, the tests, the linters or a build: `python3 dev.py COMMAND`."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import urllib.request
import venv
from pathlib import Path

try:
    import tomllib
except ModuleNotFoundError:  # Python < 3.11
    sys.exit("dev.py needs Python 3.11 or newer")

ROOT = Path(__file__).resolve().parent
VENV = ROOT / ".venv"
BIN = VENV / ("Scripts" if os.name == "nt" else "bin")
EXE = ".exe" if os.name == "nt" else ""
PYTHON = BIN / f"python{EXE}"
STAMP = VENV / "polyqueue-dev-stamp.json"
PIP = ["--disable-pip-version-check", "-q"]
PIP_PYZ_URL = "https://bootstrap.pypa.io/pip/pip.pyz"
LINTERS = (["ruff", "check", "."], ["ruff", "format", "--check", "."], ["mypy"])
USAGE = """usage: python3 dev.py COMMAND [ARGS...]

  demo [ARGS]   run `polyqueue demo ARGS` (installs polyqueue[embedded] into .venv)
  test [ARGS]   run `pytest ARGS` (installs core, every plugin and the dev tools)
  lint          run ruff check, ruff format --check and mypy
  build [--out DIR]
                write wheels of core and every plugin to DIR (default: dist/), so that
                `pip install --find-links dist 'polyqueue[redis]'` resolves the extras there
"""


def main(argv: list[str]) -> int:
    """Run the command named by `argv[0]`, setting up .venv first; return an exit code."""
    commands = {"demo": demo, "test": test, "lint": lint, "build": build}
    if not argv or argv[0] not in commands:
        print(USAGE, end="", file=sys.stderr)
        return 0 if argv[:1] in (["-h"], ["--help"], ["help"]) else 2
    return commands[argv[0]](argv[1:])


def demo(args: list[str]) -> int:
    ensure_venv(full=False)
    return run([str(BIN / f"polyqueue{EXE}"), "demo", *args])


def test(args: list[str]) -> int:
    ensure_venv(full=True)
    return run([str(PYTHON), "-m", "pytest", *args])


def lint(args: list[str]) -> int:
    if args:
        print("dev.py lint takes no arguments", file=sys.stderr)
        return 2
    ensure_venv(full=True)
    return max(run([str(PYTHON), "-m", *linter]) for linter in LINTERS)


def build(args: list[str]) -> int:
    """Build a wheel of core and of every plugin into dist/ (or `--out DIR`)."""
    if not (args == [] or (len(args) == 2 and args[0] == "--out")):  # noqa: PLR2004
        print("usage: python3 dev.py build [--out DIR]", file=sys.stderr)
        return 2
    out = Path(args[1]).resolve() if args else ROOT / "dist"
    ensure_build_tools()
    projects = packages(full=True)
    out.mkdir(parents=True, exist_ok=True)
    for stale in out.glob("polyqueue*.whl"):  # wheels of an older version would linger
        stale.unlink()
    print(f"building {len(projects)} wheels into {out} ...")
    wheel = ["wheel", *PIP, "--no-deps", "--no-build-isolation", "--wheel-dir", str(out)]
    code = run([str(PYTHON), "-m", "pip", *wheel, *map(str, projects)])
    if code == 0:
        for built in sorted(out.glob("polyqueue*.whl")):
            print(f"  {built.name}")
    return code


# --- .venv -------------------------------------------------------------------------------


def ensure_venv(*, full: bool) -> None:
    """Create .venv if needed and install what `full` (test, lint) or the demo needs."""
    if not PYTHON.exists():
        create_venv()
    key, projects, extra = "full" if full else "demo", packages(full=full), dev_tools(full=full)
    digest = fingerprint(projects, extra)
    stamp = read_stamp()
    if stamp.get(key) == digest:
        return
    plugins = len(projects) - 1
    tools = " and the dev tools" if extra else ""
    print(f"installing polyqueue[embedded], {plugins} plugin(s){tools} into .venv ...")
    editables = [arg for project in projects for arg in ("-e", install_target(project))]
    check([str(PYTHON), "-m", "pip", "install", *PIP, *editables, *extra])
    stamp[key] = digest
    if full:  # a full install includes everything the demo needs
        stamp["demo"] = fingerprint(packages(full=False), [])
    STAMP.write_text(json.dumps(stamp, indent=2) + "\n")


def ensure_build_tools() -> None:
    """Create .venv if needed and install every project's `[build-system] requires`."""
    if not PYTHON.exists():
        create_venv()
    requires = sorted(
        {
            requirement
            for project in packages(full=True)
            for requirement in tomllib.loads((project / "pyproject.toml").read_text())[
                "build-system"
            ]["requires"]
        }
    )
    digest = fingerprint([], requires)
    stamp = read_stamp()
    if stamp.get("build") == digest:
        return
    print(f"installing the build backend ({', '.join(requires)}) into .venv ...")
    check([str(PYTHON), "-m", "pip", "install", *PIP, *requires])
    stamp["build"] = digest
    STAMP.write_text(json.dumps(stamp, indent=2) + "\n")


def create_venv() -> None:
    print("setting up .venv ...")
    try:
        venv.EnvBuilder(with_pip=True, clear=True).create(VENV)
    except subprocess.CalledProcessError:  # e.g. Debian without python3-venv: no ensurepip
        print("this Python has no ensurepip; fetching pip from bootstrap.pypa.io ...")
        venv.EnvBuilder(with_pip=False, clear=True).create(VENV)
        bootstrap_pip()


def bootstrap_pip() -> None:
    """Install pip into .venv with the pip.pyz zipapp that PyPA publishes."""
    pyz = VENV / "pip.pyz"
    with urllib.request.urlopen(PIP_PYZ_URL, timeout=120) as response:
        pyz.write_bytes(response.read())
    check([str(PYTHON), str(pyz), "install", *PIP, "pip"])
    pyz.unlink()


def packages(*, full: bool) -> list[Path]:
    """core, then (for `full`) every plugins/*/ that has a pyproject.toml, found at run time."""
    plugins = sorted(path.parent for path in ROOT.glob("plugins/*/pyproject.toml"))
    return [ROOT / "core", *plugins] if full else [ROOT / "core"]


def install_target(project: Path) -> str:
    return f"{project}[embedded]" if project == ROOT / "core" else str(project)


def dev_tools(*, full: bool) -> list[str]:
    """The root pyproject.toml's `[dependency-groups] dev` list (for `full` only)."""
    if not full:
        return []
    groups = tomllib.loads((ROOT / "pyproject.toml").read_text())["dependency-groups"]
    return dependency_group(groups, "dev")


def dependency_group(groups: dict[str, list[str | dict[str, str]]], name: str) -> list[str]:
    """A PEP 735 dependency group, with `{include-group = ...}` entries expanded."""
    requirements: list[str] = []
    for item in groups[name]:
        if isinstance(item, str):
            requirements.append(item)
        else:
            requirements += dependency_group(groups, item["include-group"])
    return requirements


def fingerprint(projects: list[Path], extra: list[str]) -> str:
    """A hash of the projects' pyproject.toml files and the extra requirements."""
    digest = hashlib.sha256()
    for project in projects:
        digest.update(str(project.relative_to(ROOT)).encode() + b"\0")
        digest.update((project / "pyproject.toml").read_bytes() + b"\0")
    digest.update("\n".join(extra).encode())
    return digest.hexdigest()


def read_stamp() -> dict[str, str]:
    try:
        stamp = json.loads(STAMP.read_text())
    except (OSError, ValueError):
        return {}
    return stamp if isinstance(stamp, dict) else {}


# --- processes ---------------------------------------------------------------------------


def check(command: list[str]) -> None:
    """Run a set-up step; stop dev.py with its exit code if it fails."""
    code = subprocess.run(command, cwd=ROOT, check=False).returncode
    if code != 0:
        sys.exit(code)


def run(command: list[str]) -> int:
    """Run `command` with .venv first on PATH; return its exit code, as a shell would."""
    env = {**os.environ, "VIRTUAL_ENV": str(VENV)}
    env["PATH"] = os.pathsep.join([str(BIN), env.get("PATH", "")])
    with subprocess.Popen(command, cwd=ROOT, env=env) as process:
        while True:
            try:
                code = process.wait()
                break
            except KeyboardInterrupt:
                continue  # the command got the same Ctrl-C: let it shut down cleanly
    return 128 - code if code < 0 else code  # killed by signal N -> 128 + N


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
