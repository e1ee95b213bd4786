"""`polyqueue dashboard`: serves on loopback, refuses to expose itself without auth."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from polyqueue.testing.processes import free_port, wait_listening

POLYQUEUE = Path(sys.executable).parent / "polyqueue"
TOKEN = "a-token-of-sixteen-or-more"  # noqa: S105 -- the tests' own


def env_with(database_url: str, **extra: str) -> dict[str, str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("POLYQUEUE_")}
    return {**clean, "POLYQUEUE_DATABASE_URL": database_url, **extra}


@pytest.mark.parametrize("host", ["0.0.0.0", "192.0.2.7"])  # noqa: S104
def test_a_public_host_without_auth_refuses_to_start(
    host: str, polyqueue_database_url: str
) -> None:
    result = subprocess.run(
        [str(POLYQUEUE), "dashboard", "--host", host, "--port", "1"],
        env=env_with(polyqueue_database_url),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    assert "without authentication" in result.stderr
    assert "POLYQUEUE_DASHBOARD_TOKEN" in result.stderr


def test_a_short_token_is_refused_naming_the_variable(polyqueue_database_url: str) -> None:
    result = subprocess.run(
        [str(POLYQUEUE), "dashboard", "--host", "0.0.0.0"],  # noqa: S104
        env=env_with(polyqueue_database_url, POLYQUEUE_DASHBOARD_TOKEN="short"),  # noqa: S106
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 1
    assert result.stderr.startswith("error: POLYQUEUE_DASHBOARD_TOKEN: ")


@pytest.mark.slow
def test_it_serves_with_a_token_and_stops_on_sigint(polyqueue_database_url: str) -> None:
    port = free_port()
    command = [str(POLYQUEUE), "dashboard", "--port", str(port), "--read-only"]
    env = env_with(polyqueue_database_url, POLYQUEUE_DASHBOARD_TOKEN=TOKEN)
    with subprocess.Popen(command, env=env, stderr=subprocess.PIPE, text=True) as server:
        try:
            wait_listening(server, port, name="polyqueue dashboard")  # type: ignore[arg-type]
            url = f"http://127.0.0.1:{port}/jobs"
            with pytest.raises(urllib.error.HTTPError) as refused:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/live/overview", timeout=10)
            assert refused.value.code == 401
            refused.value.close()
            request = urllib.request.Request(url, headers={"Authorization": f"Bearer {TOKEN}"})
            with urllib.request.urlopen(request, timeout=10) as page:  # noqa: S310
                assert page.status == 200
                assert "read-only" in page.read().decode()
        finally:
            server.send_signal(signal.SIGINT)
            _, stderr = server.communicate(timeout=30)
    assert "Traceback" not in stderr
    assert f"http://127.0.0.1:{port}/" in stderr
