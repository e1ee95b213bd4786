"""A third-party plugin, built and pip-installed into a throwaway virtualenv, is a peer of the
built-ins: its broker is found through the `polyqueue` entry-point group, selected by name with
POLYQUEUE_QUEUE_BACKEND, runs jobs, applies its migration line, and passes the contract suite.

The plugin (tests/fixtures/polyqueue-example-plugin) is never installed into the environment
running these tests: the virtualenv sees that environment's packages (polyqueue, pytest...)
through a `.pth` file, and only the plugin's wheel is installed into the virtualenv itself.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import json
import os
import shutil
import subprocess
import sys
import sysconfig
import venv
from pathlib import Path

import pytest

PLUGIN_SOURCE = Path(__file__).resolve().parents[1] / "fixtures" / "polyqueue-example-plugin"
PIP = ["-m", "pip", "--disable-pip-version-check", "--no-input", "-q"]

pytestmark = pytest.mark.slow

APP_SCRIPT = """\
import asyncio, json
from pydantic import BaseModel
from polyqueue import Polyqueue
import polyqueue_example

class Add(BaseModel):
    a: int
    b: int

app = Polyqueue()  # POLYQUEUE_QUEUE_BACKEND=example, from the environment

@app.register("add")
async def add(payload: Add) -> int:
    return payload.a + payload.b

async def main():
    async with app:
        worker = app.worker()
        task = asyncio.create_task(worker.run())
        job = await app.wait_for(await app.enqueue("add", {"a": 2, "b": 3}), timeout=30)
        worker.stop()
        await task
        ledger = await app.store.pool.fetch(
            "SELECT version, name FROM polyqueue.migrations WHERE line = 'example'"
        )
        notes = await app.store.pool.fetchval("SELECT count(*) FROM polyqueue.example_notes")
    print(json.dumps({
        "broker": app.broker_class.name,
        "broker_module": app.broker_class.__module__,
        "plugin_file": polyqueue_example.__file__,
        "status": job.status.value,
        "result": job.result,
        "ledger": [[row["version"], row["name"]] for row in ledger],
        "notes": notes,
    }))

asyncio.run(main())
"""

CONTRACT_TESTS = """\
import pytest

from polyqueue import Message
from polyqueue.testing.contract import BrokerContract
from polyqueue_example import ExampleBroker


class TestExampleBroker(BrokerContract):
    @pytest.fixture
    async def broker(self):
        async with ExampleBroker(lease_seconds=1.0) as broker:
            yield broker

    async def inject_raw(self, broker, queue, body):
        await broker.publish([Message(queue, body)])  # its storage holds what publish gets
"""


def run(command: list[str], *, cwd: Path, env: dict[str, str] | None = None, timeout: float = 90):
    done = subprocess.run(
        command, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout, check=False
    )
    assert done.returncode == 0, f"{command} failed:\n{done.stdout}\n{done.stderr}"
    return done


def clean_env(**extra: str) -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("POLYQUEUE_", "PYTEST_", "PYTHONPATH", "VIRTUAL_ENV"))
    }
    return {**env, **extra}


def build_wheel(tmp_path: Path) -> Path:
    """The plugin's wheel, built by hatchling from a copy of the fixture (offline when the
    running environment has hatchling; else pip fetches it into an isolated build env)."""
    source = tmp_path / "src"
    shutil.copytree(PLUGIN_SOURCE, source)
    wheels = tmp_path / "wheels"
    isolation = [] if importlib.util.find_spec("hatchling") is None else ["--no-build-isolation"]
    command = [sys.executable, *PIP, "wheel", "--no-deps", *isolation, "-w", str(wheels), "."]
    run(command, cwd=source, env=clean_env(), timeout=120)
    (wheel,) = wheels.glob("polyqueue_example-*.whl")
    return wheel


def make_virtualenv(tmp_path: Path) -> Path:
    """A fresh virtualenv that also sees this environment's packages (not the other way)."""
    root = tmp_path / "venv"
    venv.EnvBuilder(with_pip=False, symlinks=os.name != "nt").create(root)
    python = root / ("Scripts/python.exe" if os.name == "nt" else "bin/python")
    purelib = run(
        [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        cwd=tmp_path,
    ).stdout.strip()
    ours = {sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]}
    lines = [f"import site; site.addsitedir({path!r})" for path in sorted(ours)]
    (Path(purelib) / "_polyqueue_test_parent.pth").write_text("\n".join(lines) + "\n")
    return python


@pytest.fixture(scope="module")
def plugin_python(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The python of a virtualenv with polyqueue-example pip-installed from its wheel."""
    tmp_path = tmp_path_factory.mktemp("third_party")
    wheel = build_wheel(tmp_path)
    python = make_virtualenv(tmp_path)
    run([str(python), *PIP, "install", "--no-deps", "--no-index", str(wheel)], cwd=tmp_path)
    return python


def test_the_plugin_is_not_installed_here() -> None:
    with pytest.raises(importlib.metadata.PackageNotFoundError):
        importlib.metadata.distribution("polyqueue-example")
    names = {ep.name for ep in importlib.metadata.entry_points(group="polyqueue")}
    assert "example" not in names


def test_its_broker_is_selected_by_name_and_runs_jobs(
    plugin_python: Path, polyqueue_database_url: str, tmp_path: Path
) -> None:
    script = tmp_path / "app.py"
    script.write_text(APP_SCRIPT)
    env = clean_env(
        POLYQUEUE_QUEUE_BACKEND="example",
        POLYQUEUE_DATABASE_URL=polyqueue_database_url,
        POLYQUEUE_DATA_DIR=str(tmp_path),  # never start an embedded server by accident
    )
    done = run([str(plugin_python), str(script)], cwd=tmp_path, env=env)
    report = json.loads(done.stdout)
    assert report["broker"] == "example"
    assert report["broker_module"] == "polyqueue_example.broker"
    assert Path(report["plugin_file"]).is_relative_to(plugin_python.parents[1])
    assert (report["status"], report["result"]) == ("succeeded", 5)
    assert report["ledger"] == [[1, "notes"]]
    assert report["notes"] == 0


def test_an_unknown_backend_lists_the_plugins_broker(plugin_python: Path, tmp_path: Path) -> None:
    env = clean_env(POLYQUEUE_QUEUE_BACKEND="nope", POLYQUEUE_DATABASE_URL="postgresql://x/y")
    code = "from polyqueue import Polyqueue\nPolyqueue()\n"
    done = subprocess.run(
        [str(plugin_python), "-c", code],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode != 0
    assert "UnknownPluginError" in done.stderr
    assert "POLYQUEUE_QUEUE_BACKEND" in done.stderr
    available = done.stderr.rsplit("available: ", 1)[1].strip().split(", ")
    assert {"example", "none", "postgres"} <= set(available)


def test_its_broker_passes_the_contract_suite(plugin_python: Path, tmp_path: Path) -> None:
    (tmp_path / "test_example_contract.py").write_text(CONTRACT_TESTS)
    options = ["-o", "asyncio_mode=auto", "-o", "asyncio_default_fixture_loop_scope=function"]
    command = [str(plugin_python), "-m", "pytest", "-q", "-p", "no:cacheprovider", *options]
    done = run([*command, "test_example_contract.py"], cwd=tmp_path, env=clean_env(), timeout=110)
    assert " passed" in done.stdout
    assert "failed" not in done.stdout
    assert "skipped" not in done.stdout
