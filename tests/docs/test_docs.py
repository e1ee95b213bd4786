"""The docs match the code: settings, states and transitions, links, and code blocks that run.

Every Python block and every shell command in README.md, docs/ and the distributions' READMEs
runs here against a real PostgreSQL, unless an HTML comment right before its block says why it
cannot (`<!-- docs-test: skip REASON -->`), or, on pages other teams own, `NOT_RUNNABLE` below
does. `<!-- docs-test: file NAME -->` writes a block to NAME in the page's working directory
instead of running it; `<!-- docs-test: output of COMMAND -->` marks what COMMAND prints.
"""

from __future__ import annotations

import ast
import json
import os
import re
import signal
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from polyqueue.settings import ENV_PREFIX, PolyqueueSettings
from polyqueue.status import TRANSITIONS, JobStatus

ROOT = Path(__file__).resolve().parents[2]
DOCS = ROOT / "docs"
EXAMPLE = DOCS / "examples" / "quickstart.py"
RUN_BLOCKS = Path(__file__).with_name("run_blocks.py")
PAGES = sorted(
    p.relative_to(ROOT).as_posix()
    for p in [
        ROOT / "README.md",
        ROOT / "core" / "README.md",
        *ROOT.glob("plugins/*/README.md"),
        *DOCS.rglob("*.md"),
    ]
)
SHELL = {"sh", "bash", "console", "shell"}
KNOWN_LANGUAGES = SHELL | {"python", "text", "toml", "mermaid", ""}

HOOK_SIGNATURE = r"\Adef polyqueue_\w+\([^)]*\) ->"
WORKER_FOREVER = "runs a worker until SIGTERM / SIGINT"
NOT_RUNNABLE: dict[tuple[str, str], str] = {
    # (page, regular expression found in the block or the command): why it cannot run here.
    # Pages owned elsewhere keep their reasons here; pages owned by the docs use markers.
    ("docs/benchmarks.md", r"bench/run\.py"): "a benchmark run takes minutes",
    ("docs/reliability.md", r"bench/chaos\.py"): "a fault-injection run takes minutes",
    ("docs/brokers/azure.md", r"POLYQUEUE_TEST_AZURE_CONNECTION_STRING"): (
        "needs an Azure Service Bus namespace or its emulator"
    ),
    ("docs/brokers/pgmq.md", r"postgresql://\.\.\."): "a placeholder database URL",
    ("docs/brokers/pgmq.md", r"changed my mind"): (
        "a fragment (`pool`, `Resize`) that raises on purpose; tests/plugins/pgmq test the rollback"
    ),
    ("docs/observability.md", r"meter_provider=provider"): "`provider` stands for your own",
    ("docs/observability.md", r'addr="0\.0\.0\.0"'): (
        "opens an HTTP endpoint on 0.0.0.0, and the default registry already holds the first"
        " block's metrics"
    ),
    ("docs/plugins/hooks.md", HOOK_SIGNATURE): (
        "a hook's signature, generated from polyqueue.hookspecs (tests/core/test_hooks.py)"
    ),
    ("docs/plugins/writing-a-plugin.md", r"polyqueue\.main\(app"): WORKER_FOREVER,
    ("docs/plugins/writing-a-plugin.md", r"from polyqueue_mybroker"): (
        "imports the reader's own broker package"
    ),
    ("docs/writing-a-broker.md", r"from polyqueue_mybroker"): (
        "imports the reader's own broker package"
    ),
}


@dataclass(frozen=True)
class Block:
    """One fenced code block of a page, with the `docs-test` marker right before it."""

    page: str
    line: int
    language: str
    source: str
    marker: str

    @property
    def where(self) -> str:
        return f"{self.page}:{self.line}"

    def skip_reason(self) -> str | None:
        """Why this block does not run here, or None if it runs."""
        if self.marker.startswith("skip "):
            return self.marker.removeprefix("skip ")
        for (page, pattern), reason in NOT_RUNNABLE.items():
            if page == self.page and re.search(pattern, self.source):
                return reason
        return None

    def runs(self) -> bool:
        """True for a block to run here: no marker and no entry in NOT_RUNNABLE."""
        return self.marker == "" and self.skip_reason() is None

    def commands(self) -> list[str]:
        """The shell commands shown: every line of a shell block, `$ ` lines of any other."""
        if self.language in SHELL:
            return [line for line in self.source.splitlines() if line.strip()]
        if self.language in {"text", ""}:
            return [line[2:] for line in self.source.splitlines() if line.startswith("$ ")]
        return []


FENCE = re.compile(
    r"(?:^<!-- docs-test: (?P<marker>.*?) -->\n)?^```(?P<language>\w*)\n(?P<source>.*?)^```$",
    flags=re.DOTALL | re.MULTILINE,
)


def blocks(page: str) -> list[Block]:
    text = (ROOT / page).read_text()
    return [
        Block(
            page,
            text.count("\n", 0, match.start("language")) + 1,
            match["language"],
            match["source"],
            match["marker"] or "",
        )
        for match in FENCE.finditer(text)
    ]


def marked(page: str, marker: str) -> Block:
    (block,) = [block for block in blocks(page) if block.marker == marker]
    return block


def docs_env(database_url: str, schema: str, directory: Path) -> dict[str, str]:
    """The environment a reader's shell would have: .venv first, our database and schema."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(ENV_PREFIX)}
    env["POLYQUEUE_DATABASE_URL"] = database_url
    env["POLYQUEUE_SCHEMA"] = schema
    env["POLYQUEUE_DATA_DIR"] = str(directory / ".polyqueue")  # never an embedded server
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
    return env


def schema_of(page: str) -> str:
    return "docs_" + re.sub(r"\W", "_", page.removesuffix(".md")).lower()


def env_var(field: str) -> str:
    return "POLYQUEUE_SCHEMA" if field == "schema_name" else ENV_PREFIX + field.upper()


def table_rows(text: str) -> list[str]:
    return [line for line in text.splitlines() if line.startswith("| `")]


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


@pytest.mark.parametrize("page", PAGES)
def test_python_snippets_parse(page: str) -> None:
    for block in blocks(page):
        if block.language == "python":
            compile(
                block.source,
                block.where,
                "exec",
                flags=ast.PyCF_ONLY_AST | ast.PyCF_ALLOW_TOP_LEVEL_AWAIT,
            )


@pytest.mark.parametrize("page", PAGES)
def test_every_block_is_known_and_every_marker_well_formed(page: str) -> None:
    for block in blocks(page):
        assert block.language in KNOWN_LANGUAGES, f"{block.where}: unknown `{block.language}`"
        kind, _, rest = block.marker.partition(" ")
        assert kind in {"", "skip", "file", "output"}, f"{block.where}: marker {block.marker!r}"
        assert not kind or rest.strip(), f"{block.where}: `{kind}` needs a reason or a name"


def test_every_not_runnable_entry_still_matches_a_block() -> None:
    for page, pattern in NOT_RUNNABLE:
        assert any(re.search(pattern, block.source) for block in blocks(page)), (page, pattern)


def runnable_python(page: str) -> list[Block]:
    return [
        b for b in blocks(page) if b.language == "python" and b.marker == "" and not b.skip_reason()
    ]


@pytest.mark.parametrize("page", [p for p in PAGES if runnable_python(p)])
def test_python_blocks_run(page: str, polyqueue_database_url: str, tmp_path: Path) -> None:
    """Each page's Python blocks run in order, in one namespace, against a real PostgreSQL."""
    write_files(page, tmp_path)
    sources = [{"where": b.where, "source": b.source} for b in runnable_python(page)]
    done = subprocess.run(
        [sys.executable, str(RUN_BLOCKS)],
        input=json.dumps(sources),
        env=docs_env(polyqueue_database_url, schema_of(page), tmp_path),
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=90,
        check=False,
    )
    assert done.returncode == 0, done.stderr


def write_files(page: str, directory: Path) -> None:
    for block in blocks(page):
        if block.marker.startswith("file "):
            (directory / block.marker.removeprefix("file ")).write_text(block.source)


def runnable_commands(page: str) -> list[tuple[Block, str]]:
    return [
        (block, command)
        for block in blocks(page)
        if block.runs()
        for command in block.commands()
        if not any(p == page and re.search(pattern, command) for (p, pattern) in NOT_RUNNABLE)
    ]


CLI_USAGE_ERRORS = ("Usage:", "No such option", "No such command", "unexpected extra argument")


@pytest.mark.parametrize("page", [p for p in PAGES if runnable_commands(p)])
def test_shell_commands_run(page: str, polyqueue_database_url: str, tmp_path: Path) -> None:
    """Every command shown runs. A shell block must exit 0. A `$ ` line of an example session
    may fail as its example shows (a job that is not there), but never with a traceback or a
    usage error: the command and its options exist."""
    write_files(page, tmp_path)
    env = docs_env(polyqueue_database_url, schema_of(page), tmp_path)
    for block, command in runnable_commands(page):
        done = subprocess.run(
            ["bash", "-c", command],
            env=env,
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        output = done.stdout + done.stderr
        assert "Traceback" not in output, f"{block.where}: {command}\n{output}"
        if block.language in SHELL:
            assert done.returncode == 0, f"{block.where}: {command}\n{output}"
        else:
            assert not any(e in output for e in CLI_USAGE_ERRORS), f"{block.where}: {command}"


# -- the two quickstarts: a worker process and a producer process --------------------------------


def run_worker_and_producer(page: str, env: dict[str, str], cwd: Path) -> str:
    """Run the page's two-terminal commands: the first as a worker, the second to the end."""
    (commands,) = [
        block.commands() for block in blocks(page) if "two processes" in (block.skip_reason() or "")
    ]
    worker_command, producer_command = [c.split("#")[0].split() for c in commands[-2:]]
    log = (cwd / "worker.log").open("w")
    worker = subprocess.Popen(worker_command, cwd=cwd, env=env, stdout=log, stderr=log)
    try:
        produced = subprocess.run(
            producer_command,
            cwd=cwd,
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
    worker_log = (cwd / "worker.log").read_text()
    assert produced.returncode == 0, produced.stderr + worker_log
    assert code == 0, worker_log
    return produced.stdout


def test_quickstart_page_shows_the_tested_example() -> None:
    assert marked("docs/quickstart.md", "file quickstart.py").source == EXAMPLE.read_text()


TWO_PROCESS_PAGES = [p for p in PAGES if any(b.marker.startswith("output of ") for b in blocks(p))]


@pytest.mark.parametrize("page", TWO_PROCESS_PAGES)
def test_two_process_examples_run(page: str, polyqueue_database_url: str, tmp_path: Path) -> None:
    """A worker and a producer, the commands shown, print exactly what the page says."""
    write_files(page, tmp_path)
    env = docs_env(polyqueue_database_url, schema_of(page), tmp_path)
    printed = run_worker_and_producer(page, env, tmp_path)
    (output,) = [b for b in blocks(page) if b.marker.startswith("output of ")]
    assert f"python {marked_file(page)}" == output.marker.removeprefix("output of ")
    assert printed == output.source


def marked_file(page: str) -> str:
    (name,) = [b.marker.removeprefix("file ") for b in blocks(page) if b.marker.startswith("file ")]
    return name


@pytest.mark.parametrize("page", TWO_PROCESS_PAGES)
def test_a_worker_importing_the_example_does_not_run_its_producer(page: str) -> None:
    tree = ast.parse(marked(page, f"file {marked_file(page)}").source)
    calls = [node for node in tree.body if isinstance(node, ast.Expr | ast.Await)]
    assert len(calls) <= 1, "only a docstring may stand outside `if __name__ == '__main__':`"
    assert all(isinstance(node.value, ast.Constant) for node in calls)
