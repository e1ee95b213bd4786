"""The SQL files against the code: names, declared transitions, and a real migrated database."""

from __future__ import annotations

import re
import uuid

import asyncpg
import pytest

from polyqueue.job import Outcome
from polyqueue.migrations import migrate_down, migrate_up
from polyqueue.notices import encode_notice
from polyqueue.sql import load_migrations, load_queries
from polyqueue.status import TRANSITIONS, JobStatus
from polyqueue.store import JobStore

SCHEMA = "polyqueue"
QUERIES = load_queries("queries.sql", SCHEMA)
STATUS_CHANGING = {name: q for name, q in QUERIES.items() if q.targets}


def store_methods() -> set[str]:
    prefixes = ("job_", "worker_", "notify", "maintenance_", "cron_")
    return {name for name in dir(JobStore) if name.startswith(prefixes)}


def test_every_block_has_one_store_method_and_back() -> None:
    assert set(QUERIES) == store_methods()


def _words(sql: str) -> str:
    return " ".join(sql.split())


def test_the_claim_of_notices_leases_and_claims_exactly_as_the_two_statements_it_joins() -> None:
    """`job_claim_notices` repeats `message_receive`'s lease and `job_claim_many`'s claim in
    one statement (one commit per pickup); a change to either must reach it too."""
    joined = _words(QUERIES["job_claim_notices"].sql)
    receive = load_queries("broker_postgres.sql", SCHEMA)["message_receive"].sql
    lease = _words(receive.split("RETURNING")[0])
    claim = QUERIES["job_claim_many"].sql
    assignments = _words(claim[claim.index("SET") : claim.index("WHERE")])
    assignments = assignments.replace("$3", "$5").replace("$2", "$4")  # worker, grace there
    assert lease in joined
    assert assignments in joined


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


async def _arrange_poison(db: asyncpg.Connection, job_id: int, _target: str) -> None:
    await db.execute("UPDATE polyqueue.jobs SET reclaims = 2 WHERE id = $1", job_id)


async def _arrange_timeout(db: asyncpg.Connection, job_id: int, target: str) -> None:
    attempts = 3 if target == "failed" else 1
    await db.execute(
        "UPDATE polyqueue.jobs SET timeout_at = now(), attempt = $2 WHERE id = $1", job_id, attempts
    )


async def _arrange_notice(db: asyncpg.Connection, job_id: int, _target: str) -> None:
    await db.execute(
        "INSERT INTO polyqueue.broker_messages (queue, body) VALUES ('q', $1)",
        encode_notice(job_id),
    )


ARRANGE = {
    "job_fail_poison": _arrange_poison,
    "job_expire_timeouts": _arrange_timeout,
    "job_claim_notices": _arrange_notice,
}

DRIVERS = {
    "job_claim_many": lambda store, db, job_id, target: store.job_claim_many([job_id], "w", 0),
    "job_claim_notices": lambda store, db, job_id, target: store.job_claim_notices(
        ["q"], max_messages=10, lease_seconds=30, worker_id="w", timeout_grace=0, held=[]
    ),
    "job_complete_many": lambda store, db, job_id, target: store.job_complete_many(
        [Outcome(job_id, 1, target)]
    ),
    "job_release_many": lambda store, db, job_id, target: store.job_release_many([(job_id, 1)]),
    "job_promote_due": lambda store, db, job_id, target: store.job_promote_due(100, db),
    "job_cancel_many": lambda store, db, job_id, target: store.job_cancel_many([job_id], db),
    "job_requeue_many": lambda store, db, job_id, target: store.job_requeue_many([job_id], db),
    "job_fail_many": lambda store, db, job_id, target: store.job_fail_many([job_id], "op", db),
    "job_reclaim": lambda store, db, job_id, target: store.job_reclaim(3, 30, db),
    "job_fail_poison": lambda store, db, job_id, target: store.job_fail_poison(3, 30, db),
    "job_expire_timeouts": lambda store, db, job_id, target: store.job_expire_timeouts(
        0.0, 0.0, 100, db
    ),
}


async def attempt(
    store: JobStore, db: asyncpg.Connection, name: str, job_id: int, target: str
) -> None:
    """Run the status-changing store operation `name` against `job_id`."""
    if name in ARRANGE:
        await ARRANGE[name](db, job_id, target)
    await DRIVERS[name](store, db, job_id, target)


def test_every_status_changing_block_has_a_driver() -> None:
    assert set(STATUS_CHANGING) == set(DRIVERS)


ILLEGAL = [
    (name, source, target)
    for name, query in sorted(STATUS_CHANGING.items())
    for target in sorted(query.targets)
    for source in JobStatus
    if source.value not in query.sources
]


@pytest.fixture
async def store(clean_database: str) -> JobStore:
    store = JobStore(clean_database, SCHEMA, pool_size=2)
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


async def test_an_outcome_of_a_stale_attempt_changes_nothing(store: JobStore, db) -> None:
    job_id = await insert_job(db, JobStatus.QUEUED)
    (first,) = await store.job_claim_many([job_id], "worker-a", 0)
    await store.job_requeue_many([job_id], db)
    (second,) = await store.job_claim_many([job_id], "worker-b", 0)
    assert second.attempt == first.attempt + 1
    late = Outcome(job_id, first.attempt, "succeeded", result='"from a"')
    assert await store.job_complete_many([late]) == {}
    assert await store.job_heartbeat_many([(job_id, first.attempt)]) == set()
    assert not await store.job_progress(job_id, first.attempt, 0.5, "stale")
    current = Outcome(job_id, second.attempt, "succeeded", result='"from b"')
    assert set(await store.job_complete_many([current])) == {job_id}
    job = await store.job_get(job_id)
    assert (job.status, job.result, job.worker_id, job.progress) == (
        "succeeded",
        "from b",
        "worker-b",
        None,
    )


async def test_claim_notices_leases_every_notice_and_claims_only_what_it_may(
    store: JobStore, db: asyncpg.Connection
) -> None:
    queued, succeeded = JobStatus.QUEUED, JobStatus.SUCCEEDED
    wanted, held, done = [await insert_job(db, s) for s in (queued, queued, succeeded)]
    bodies = [
        encode_notice(wanted),
        encode_notice(wanted),
        encode_notice(held),
        encode_notice(done),
    ]
    bodies.append(b'{"job_id": "x"}\xff')  # not a notice, not even UTF-8
    for body in bodies:
        await db.execute(
            "INSERT INTO polyqueue.broker_messages (queue, body) VALUES ('q', $1)", body
        )
    claim = {"max_messages": 10, "lease_seconds": 30, "worker_id": "w", "timeout_grace": 0}
    notices = await store.job_claim_notices(["q"], held=[held], **claim)
    assert sorted(n.body for n in notices) == sorted(bodies)  # every one leased
    assert {n.job.id for n in notices if n.job} == {wanted}  # claimed once, for both notices
    assert [n.job.attempt for n in notices if n.job] == [2, 2]  # one claim: attempt 1 -> 2
    assert [await status_of(db, i) for i in (wanted, held, done)] == [
        "running",
        "queued",
        "succeeded",
    ]
    assert await store.job_claim_notices(["q"], held=[], **claim) == []  # all still leased
