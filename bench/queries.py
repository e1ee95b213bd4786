"""Loads the named SQL blocks of `bench/queries.sql`, as `polyqueue.sql` does for the core."""

from __future__ import annotations

import re
from pathlib import Path

from polyqueue.sql import quote_identifier

__all__ = ["load"]

_FILE = Path(__file__).with_name("queries.sql")
_HEADER = re.compile(r"^-- name: (?P<name>\w+) :(?:one|many|exec)\s*$")


def load(*, schema: str = "polyqueue", database: str = "postgres") -> dict[str, str]:
    """Every block of `queries.sql` by name, with `{schema}` and `{database}` quoted in."""
    queries: dict[str, str] = {}
    for block in re.split(r"\n(?=-- name: )", _FILE.read_text(encoding="utf-8")):
        lines = block.strip().splitlines()
        header = _HEADER.match(lines[0]) if lines else None
        if header is None:
            continue
        body = "\n".join(line for line in lines[1:] if not line.startswith("--"))
        queries[header["name"]] = (
            body.strip()
            .replace("{schema}", quote_identifier(schema))
            .replace("{database}", quote_identifier(database))
        )
    return queries
