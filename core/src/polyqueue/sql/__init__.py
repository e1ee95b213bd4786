"""Loads the named SQL blocks and numbered migrations shipped beside this module."""

from __future__ import annotations

import re
from dataclasses import dataclass, replace
from importlib import resources
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Mapping

__all__ = [
    "CORE_LINE",
    "Migration",
    "MigrationLine",
    "Query",
    "claim_fragments",
    "load_fragments",
    "load_migrations",
    "load_queries",
    "quote_identifier",
]

_HEADER = re.compile(r"^-- name: (?P<name>\w+) :(?P<kind>one|many|exec|fragment)\s*$")
_INCLUDE = re.compile(r"\{\{(?P<name>\w+)(?: \+(?P<shift>\d+))?\}\}")
_PARAMETER = re.compile(r"\$(?P<number>\d+)")
_MAX_INCLUDE_DEPTH = 8
_TRANSITION = re.compile(r"^-- transition: (?P<sources>[\w, ]+) -> (?P<targets>[\w| ]+)\s*$")
_MIGRATION = re.compile(r"^(?P<version>\d{4})_(?P<name>\w+)\.(?P<direction>up|down)\.sql$")


@dataclass(frozen=True, slots=True)
class Query:
    """One named block: its SQL, result kind, description and declared transitions."""

    name: str
    kind: str
    description: str
    sql: str
    sources: frozenset[str] = frozenset()
    targets: frozenset[str] = frozenset()


@dataclass(frozen=True, slots=True)
class Migration:
    """One numbered schema change with its way back."""

    version: int
    name: str
    up: str
    down: str


@dataclass(frozen=True, slots=True)
class MigrationLine:
    """A package's numbered migrations, recorded in the ledger under `name`."""

    name: str
    package: str
    """An importable package with a `migrations/` directory of `NNNN_name.up.sql` files."""

    def migrations(self, schema: str) -> list[Migration]:
        """This line's migrations for `schema`, in version order."""
        return load_migrations(schema, package=self.package)


CORE_LINE = MigrationLine("polyqueue", __name__)
"""The core's own migrations (jobs, workers, the postgres broker, cron)."""


def quote_identifier(name: str) -> str:
    """Quote a PostgreSQL identifier (the schema name, validated by the settings)."""
    return '"' + name.replace('"', '""') + '"'


def load_queries(
    resource: str,
    schema: str,
    package: str = __name__,
    *,
    fragments: Mapping[str, str] | None = None,
) -> dict[str, Query]:
    """Parse `resource` into its named statements, with `{schema}` replaced by the quoted
    schema and every `{{fragment}}` included (see `load_fragments`).

    A `:fragment` block is a piece of SQL written once and included where it is needed:
    `{{name}}` includes it as written, `{{name +3}}` with its parameters renumbered from `$4`
    (so the same lease or claim serves statements whose parameters differ). `fragments`
    adds pieces from another file, e.g. the core's claim (`claim_fragments`), or replaces
    one of the file's own (a broker's `notice_sender`)."""
    blocks = _parse_blocks(resource, schema, package)
    known = {**_fragments(blocks), **(fragments or {})}
    return {
        name: replace(query, sql=_include(query.sql, known, name))
        for name, query in blocks.items()
        if query.kind != "fragment"
    }


def load_fragments(resource: str, schema: str, package: str = __name__) -> dict[str, str]:
    """The `:fragment` blocks of `resource` by name, for `load_queries(fragments=...)`."""
    return _fragments(_parse_blocks(resource, schema, package))


def claim_fragments(schema: str) -> dict[str, str]:
    """The core's claim of a queued job (`claim_set`, `claim_returning`): a broker whose
    messages live in the jobs database includes them to claim in its receive statement."""
    return load_fragments("queries.sql", schema)


def _fragments(blocks: Mapping[str, Query]) -> dict[str, str]:
    return {name: query.sql for name, query in blocks.items() if query.kind == "fragment"}


def _include(sql: str, fragments: Mapping[str, str], within: str, depth: int = 0) -> str:
    """`sql` with every include expanded, fragments within fragments too."""
    if depth > _MAX_INCLUDE_DEPTH:
        raise ValueError(f"{within}: fragments include each other in a cycle")

    def expand(match: re.Match[str]) -> str:
        name, shift = match["name"], int(match["shift"] or 0)
        if name not in fragments:
            raise ValueError(f"{within}: no fragment named {name!r}")
        text = _include(fragments[name], fragments, within, depth + 1)
        return _PARAMETER.sub(lambda p: f"${int(p['number']) + shift}", text)

    return _INCLUDE.sub(expand, sql)


def _parse_blocks(resource: str, schema: str, package: str) -> dict[str, Query]:
    text = resources.files(package).joinpath(resource).read_text(encoding="utf-8")
    queries: dict[str, Query] = {}
    for block in re.split(r"\n(?=-- name: )", text):
        lines = block.strip().splitlines()
        header = _HEADER.match(lines[0]) if lines else None
        if header is None:
            continue
        query = _parse_block(header["name"], header["kind"], lines[1:], schema)
        if query.name in queries:
            raise ValueError(f"{resource}: duplicate block {query.name!r}")
        queries[query.name] = query
    return queries


def _parse_block(name: str, kind: str, lines: list[str], schema: str) -> Query:
    description = lines[0].removeprefix("--").strip() if lines else ""
    sources: frozenset[str] = frozenset()
    targets: frozenset[str] = frozenset()
    body = []
    for line in lines[1:]:
        transition = _TRANSITION.match(line)
        if transition:
            sources = frozenset(s.strip() for s in transition["sources"].split(","))
            targets = frozenset(t.strip() for t in transition["targets"].split("|"))
        else:
            body.append(line)
    sql = "\n".join(body).strip().replace("{schema}", quote_identifier(schema))
    return Query(name, kind, description, sql, sources, targets)


def load_migrations(schema: str, package: str = __name__) -> list[Migration]:
    """Every `NNNN_name.up.sql` / `.down.sql` pair under `migrations/`, in version order."""
    folder = resources.files(package).joinpath("migrations")
    found: dict[int, dict[str, str]] = {}
    for entry in folder.iterdir():
        match = _MIGRATION.match(entry.name)
        if match is None:
            continue
        sql = entry.read_text(encoding="utf-8").replace("{schema}", quote_identifier(schema))
        parts = found.setdefault(int(match["version"]), {"name": match["name"]})
        parts[match["direction"]] = sql
    return [
        Migration(version, parts["name"], parts["up"], parts.get("down", ""))
        for version, parts in sorted(found.items())
    ]
