"""The SQL files against the code: names, declared transitions, and a real migrated database."""

from __future__ import annotations

import re
import uuid

import asyncpg
import pytest

from polyqueue.job import Outcome
from polyqueue.migrations import migrate_down, migrate_up
from polyqueue.sql import load_migrations, load_queries
from polyqueue.status import TRANSITIONS, JobStatus
from polyqueue.store import JobStore

SCHEMA = "polyqueue"
QUERIES = load_queries("queries.sql", SCHEMA)
STATUS_CHANGING = {name: q for name, q in QUERIES.items() if q.targets}


def store_methods() -> set[str]:
    prefixes = ("job_", "worker_", "notify")
    return {name for name in dir(JobStore) if name.startswith(prefixes)}


def test_every_block_has_one_store_method_and_back() -> None:
    assert set(QUERIES) == store_methods()


def test_every_block_is_described() -> None:
    assert all(q.description and q.kind in {"one", "many", "exec"} for q in QUERIES.values())


def test_declared_transitions_are_exactly_the_table() -> None:
    declared = {
        (JobStatus(source), JobStatus(target))
        for query in STATUS_CHANGING.values()
        for source in query.sources
        for target in query.targets
    }
    assert declared == TRANSITIONS


@pytest.mark.parametrize("name", sorted(STATUS_CHANGING))
def test_where_clause_names_exactly_the_declared_sources(name: str) -> None:
    query = STATUS_CHANGING[name]
    found = re.findall(r"status IN \(([^)]*)\)", query.sql)
    assert found, f"{name} has no `status IN (...)` guard"
    guarded = {s.strip().strip("'") for s in found[0].split(",")}
    assert guarded == query.sources


def test_job_blocks_that_do_not_declare_a_transition_do_not_set_status() -> None:
    for name, query in QUERIES.items():
        if name.startswith("job_") and not query.targets:
            assert not re.search(r"SET\s+status\s*=", query.sql), name


async def test_every_block_prepares_on_the_migrated_schema(db: asyncpg.Connection) -> None:
    for sql_file in ("queries.sql", "broker_postgres.sql", "migrate.sql"):
        for name, query in load_queries(sql_file, SCHEMA).items():
            if name == "migration_bootstrap":  # two statements: run below, not prepared
                continue
            await db.prepare(query.sql)


async def test_migrations_go_up_down_and_up_again(db: asyncpg.Connection) -> None:
    schema = f"mig_{uuid.uuid4().hex[:8]}"
    versions = [m.version for m in load_migrations(schema)]
    assert await migrate_up(db, schema) == versions
    assert await migrate_up(db, schema) == []  # idempotent
    await migrate_down(db, schema)
    assert await db.fetchval("SELECT to_regclass($1)", f"{schema}.jobs") is None
    assert await migrate_up(db, schema) == versions
    assert await db.fetchval("SELECT to_regclass($1)", f"{schema}.jobs") is not None
    await db.execute(f'DROP SCHEMA "{schema}" CASCADE')


# -- every illegal transition leaves the job as it was ------------------------------------


async def insert_job(db: asyncpg.Connection, status: JobStatus) -> int:
    job_id: int = await db.fetchval(
        "INSERT INTO polyqueue.jobs (name, queue, status, payload, max_attempts, attempt, run_at)"
        " VALUES ('t', 'q', $1, '{}', 3, 1, now() - interval '1 second') RETURNING id",
        status.value,
    )
    return job_id


async def status_of(db: asyncpg.Connection, job_id: int) -> str:
    status: str = await db.fetchval("SELECT status::text FROM polyqueue.jobs WHERE id = $1", job_id)
    return status


async def attempt(
    store: JobStore, db: asyncpg.Connection, name: str, job_id: int, target: str
) -> None:
    """Run the status-changing store operation `name` against `job_id`."""
    if name == "job_claim_many":
        await store.job_claim_many([job_id], "w", 0)
    elif name == "job_complete_many":
        await store.job_complete_many([Outcome(job_id, 1, target)])  # type: ignore[arg-type]
    elif name == "job_release_many":
        await store.job_release_many([(job_id, 1)])
    elif name == "job_promote_due":
        await store.job_promote_due(100, db)
    elif name == "job_cancel":
        await store.job_cancel(job_id, db)
    elif name == "job_requeue":
        await store.job_requeue(job_id, db)
    else:
        pytest.fail(f"no driver for {name}")


ILLEGAL = [
    (name, source, target)
    for name, query in sorted(STATUS_CHANGING.items())
    for target in sorted(query.targets)
    for source in JobStatus
    if source.value not in query.sources
]


@pytest.fixture
async def store(clean_database: str) -> JobStore:
    store = JobStore(clean_database, SCHEMA, pool_size=2, connect_timeout=10)
    await store.open()
    yield store
    await store.close()


@pytest.mark.parametrize(("name", "source", "target"), ILLEGAL)
async def test_illegal_transition_changes_nothing(
    store: JobStore, db: asyncpg.Connection, name: str, source: JobStatus, target: str
) -> None:
    job_id = await insert_job(db, source)
    await attempt(store, db, name, job_id, target)
    assert await status_of(db, job_id) == source.value


@pytest.mark.parametrize(
    ("name", "source", "target"),
    [
        (name, JobStatus(source), target)
        for name, query in sorted(STATUS_CHANGING.items())
        for target in sorted(query.targets)
        for source in sorted(query.sources)
    ],
)
async def test_legal_transition_happens(
    store: JobStore, db: asyncpg.Connection, name: str, source: JobStatus, target: str
) -> None:
    job_id = await insert_job(db, source)
    await attempt(store, db, name, job_id, target)
    assert await status_of(db, job_id) == target
