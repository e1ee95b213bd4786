"""The code the docs show as excerpts of tested files is in those files, word for word."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PAGES = ["docs/integrations.md", "docs/testing.md"]
EXCERPT = re.compile(
    r"^<!-- docs-test: skip an excerpt of (?P<file>\S+), which .*? -->\n"
    r"```\w*\n(?P<source>.*?)^```$",
    flags=re.DOTALL | re.MULTILINE,
)


def unindented(text: str) -> str:
    """The lines without their indentation: an excerpt is shown dedented so that it parses."""
    return "\n".join(line.strip() for line in text.splitlines())


@pytest.mark.parametrize("page", PAGES)
def test_every_excerpt_is_in_the_file_it_names(page: str) -> None:
    excerpts = list(EXCERPT.finditer((ROOT / page).read_text()))
    assert excerpts
    for excerpt in excerpts:
        source = unindented((ROOT / excerpt["file"]).read_text())
        assert unindented(excerpt["source"]) in source, excerpt["file"]
