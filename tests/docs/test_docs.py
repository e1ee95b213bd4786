"""The docs match the code: settings, states and transitions, links, and a quickstart that runs."""

from __future__ import annotations

import ast
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from polyqueue.settings import ENV_PREFIX, PolyqueueSettings
from polyqueue.status import TRANSITIONS, JobStatus

DOCS = Path(__file__).resolve().parents[2] / "docs"
EXAMPLE = DOCS / "examples" / "quickstart.py"

EXPECTED_QUICKSTART_OUTPUT = """\
same job for the same key: True
first: succeeded 0.5 half way
first result: /thumbs/64/cat.png
second result: {'path': '/thumbs/128/dog.png', 'width': 128}
words: 6
words: 2
keyed: succeeded
empty: failed 1 nothing to count
committed: succeeded
rolled back: no such job
"""


def env_var(field: str) -> str:
    return "POLYQUEUE_SCHEMA" if field == "schema_name" else ENV_PREFIX + field.upper()


def table_rows(text: str) -> list[str]:
    return [line for line in text.splitlines() if line.startswith("| `")]


def python_blocks(text: str) -> list[str]:
    return re.findall(r"^```python\n(.*?)^```", text, flags=re.DOTALL | re.MULTILINE)


# -- settings -----------------------------------------------------------------------------------


@pytest.mark.parametrize("field", sorted(PolyqueueSettings.model_fields))
def test_every_setting_is_documented_with_its_env_var(field: str) -> None:
    rows = table_rows((DOCS / "settings.md").read_text())
    documented = [row for row in rows if row.startswith(f"| `{field}` |")]
    assert documented, f"settings.md has no table row for `{field}`"
    assert f"`{env_var(field)}`" in documented[0]


def test_settings_page_documents_no_missing_fields() -> None:
    rows = table_rows((DOCS / "settings.md").read_text())
    names = {row.split("`")[1] for row in rows}
    assert names == set(PolyqueueSettings.model_fields)


# -- lifecycle ----------------------------------------------------------------------------------


def mermaid_transitions(text: str) -> set[tuple[str, str]]:
    (diagram,) = re.findall(r"```mermaid\n(.*?)```", text, flags=re.DOTALL)
    return set(re.findall(r"^\s*(\w+) --> (\w+)", diagram, flags=re.MULTILINE))


def test_every_status_is_documented() -> None:
    text = (DOCS / "lifecycle.md").read_text()
    for status in JobStatus:
        assert f"`{status.value}`" in text


def test_the_state_diagram_is_the_transition_table() -> None:
    drawn = mermaid_transitions((DOCS / "lifecycle.md").read_text())  # `[*]` edges excluded
    assert drawn == {(source.value, target.value) for source, target in TRANSITIONS}


def test_every_transition_is_listed_in_the_table() -> None:
    text = (DOCS / "lifecycle.md").read_text()
    for source, target in TRANSITIONS:
        assert f"| `{source.value}` | `{target.value}` |" in text


# -- pages and snippets -------------------------------------------------------------------------


def test_index_links_to_every_page_and_every_link_resolves() -> None:
    pages = {p.relative_to(DOCS).as_posix() for p in DOCS.rglob("*.md")} - {"index.md"}
    links = re.findall(r"\]\(([^)#]+\.md)", (DOCS / "index.md").read_text())
    assert pages <= set(links)
    for page in DOCS.rglob("*.md"):
        for link in re.findall(r"\]\((?![a-z]+:)([^)#]+)", page.read_text()):
            assert (page.parent / link).exists(), f"{page.name} links to missing {link}"


@pytest.mark.parametrize("page", sorted(p.relative_to(DOCS).as_posix() for p in DOCS.rglob("*.md")))
def test_python_snippets_parse(page: str) -> None:
    path = DOCS / page
    for block in python_blocks(path.read_text()):
        compile(block, page, "exec", flags=ast.PyCF_ONLY_AST | ast.PyCF_ALLOW_TOP_LEVEL_AWAIT)


def test_quickstart_page_shows_the_tested_example() -> None:
    blocks = python_blocks((DOCS / "quickstart.md").read_text())
    assert EXAMPLE.read_text() in blocks


def test_quickstart_example_runs(polyqueue_database_url: str, tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(ENV_PREFIX)}
    env["POLYQUEUE_DATABASE_URL"] = polyqueue_database_url
    env["POLYQUEUE_DATA_DIR"] = str(tmp_path)  # never start an embedded server by accident
    done = subprocess.run(
        [sys.executable, str(EXAMPLE)],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=90,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout == EXPECTED_QUICKSTART_OUTPUT
