"""`python3 dev.py build` makes wheels that install and run without the repository.

The wheels install into a fresh venv with `--no-index`, and a job runs through Redis between a
`polyqueue worker` process and a producer process of that venv.
"""

from __future__ import annotations

import email
import signal
import subprocess
import tomllib
import uuid
import zipfile
from pathlib import Path

import pytest
from install_support import ROOT, Installed

pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]  # builds, downloads, installs

PROJECTS = [ROOT / "core", *sorted(p.parent for p in ROOT.glob("plugins/*/pyproject.toml"))]
URL_LABELS = {"Homepage", "Documentation", "Source", "Changelog", "Issues"}

TASKS = """\
import asyncio

from pydantic import BaseModel

from polyqueue import Polyqueue

app = Polyqueue()


class Add(BaseModel):
    a: int
    b: int


@app.register("math.add")
async def add(payload: Add) -> int:
    return payload.a + payload.b


async def produce() -> None:
    async with app:
        job_id = await app.enqueue(add, Add(a=2, b=3))
        job = await app.wait_for(job_id, timeout=60)
        print(job.status, await app.get_job_result(job_id))


if __name__ == "__main__":
    asyncio.run(produce())
"""


def distribution_name(project: Path) -> str:
    return str(tomllib.loads((project / "pyproject.toml").read_text())["project"]["name"])


def wheel_of(wheels: Path, project: Path) -> Path:
    (wheel,) = wheels.glob(distribution_name(project).replace("-", "_") + "-*.whl")
    return wheel


def metadata(wheel: Path) -> tuple[email.message.Message, list[str]]:
    with zipfile.ZipFile(wheel) as archive:
        names = archive.namelist()
        (path,) = [name for name in names if name.endswith(".dist-info/METADATA")]
        return email.message_from_bytes(archive.read(path)), names


def test_build_writes_a_wheel_of_core_and_of_every_plugin(wheels: Path) -> None:
    built = sorted(path.name for path in wheels.glob("*.whl"))
    assert len(built) == len(PROJECTS)
    for project in PROJECTS:
        assert wheel_of(wheels, project).exists()


@pytest.mark.parametrize("project", PROJECTS, ids=lambda p: p.name)
def test_every_wheel_ships_the_license_urls_and_a_readme_that_stands_alone(
    wheels: Path, project: Path
) -> None:
    meta, names = metadata(wheel_of(wheels, project))
    assert meta["License-Expression"] == "MIT"
    assert meta["License-File"] == "LICENSE"
    assert any(name.endswith(".dist-info/licenses/LICENSE") for name in names)
    urls = dict(value.split(", ", 1) for value in meta.get_all("Project-URL", []))
    assert set(urls) == URL_LABELS
    assert all(url.startswith("https://") for url in urls.values())
    readme = meta.get_payload()
    assert isinstance(readme, str)
    assert "--find-links dist" in readme  # the install that works until a release exists
    assert "\n## License\n" in readme


def test_the_license_is_one_text(wheels: Path) -> None:
    licenses = {(project / "LICENSE").read_text() for project in PROJECTS}
    assert licenses == {(ROOT / "LICENSE").read_text()}
    assert (ROOT / "LICENSE").read_text().startswith("MIT License\n")


def test_polyqueue_redis_installs_from_the_wheels_alone(installed: Installed) -> None:
    code = (
        "import importlib.metadata as m, polyqueue, polyqueue_redis;"
        "print(polyqueue.__file__);"
        "print(sorted(e.name for e in m.entry_points(group='polyqueue')));"
        "print(m.version('polyqueue'), m.version('polyqueue-redis'))"
    )
    done = subprocess.run(
        [str(installed.python), "-c", code], capture_output=True, text=True, check=True
    )
    where, plugins, versions = done.stdout.splitlines()
    assert Path(where).is_relative_to(installed.root)  # not the repository's editable copy
    assert plugins == "['redis']"
    assert versions == "0.1.0 0.1.0"


def test_a_job_runs_through_redis_between_a_worker_and_a_producer(
    installed: Installed,
    install_redis_url: str,
    polyqueue_database_url: str,
    tmp_path: Path,
) -> None:
    (tmp_path / "tasks.py").write_text(TASKS)
    env = {
        "PATH": f"{installed.root / 'bin'}:/usr/bin:/bin",
        "POLYQUEUE_DATABASE_URL": polyqueue_database_url,
        "POLYQUEUE_QUEUE_BACKEND": "redis",
        "POLYQUEUE_REDIS_URL": install_redis_url,
        "POLYQUEUE_REDIS_KEY_PREFIX": f"pqinstall:{uuid.uuid4().hex}:",
        "POLYQUEUE_DATA_DIR": str(tmp_path / "data"),  # never an embedded server by accident
    }
    log = (tmp_path / "worker.log").open("w")
    worker = subprocess.Popen(
        [str(installed.polyqueue), "worker", "tasks:app"],
        cwd=tmp_path,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        produced = subprocess.run(
            [str(installed.python), "tasks.py"],
            cwd=tmp_path,
            env=env,
            capture_output=True,
            text=True,
            timeout=90,
            check=False,
        )
    finally:
        worker.send_signal(signal.SIGTERM)
        code = worker.wait(timeout=60)
        log.close()
    output = (tmp_path / "worker.log").read_text()
    assert produced.returncode == 0, produced.stderr + output
    assert produced.stdout == "succeeded 5\n"
    assert code == 0, output
