"""The SQL files against the code: names, declared transitions, and a real migrated database."""

from __future__ import annotations

import re
import sys
import uuid
from pathlib import Path

import asyncpg
import pytest

from polyqueue.broker import ClaimedDelivery, ClaimTerms
from polyqueue.brokers.postgres import PostgresBroker
from polyqueue.job import Outcome
from polyqueue.migrations import migrate_down, migrate_up
from polyqueue.notices import encode_notice
from polyqueue.sql import claim_fragments, load_fragments, load_migrations, load_queries
from polyqueue.status import TRANSITIONS, JobStatus
from polyqueue.store import JobStore

SCHEMA = "polyqueue"
QUERIES = load_queries("queries.sql", SCHEMA)
BROKER_QUERIES = load_queries("broker_postgres.sql", SCHEMA, fragments=claim_fragments(SCHEMA))
WORKFLOW_QUERIES = load_queries("workflows.sql", SCHEMA, fragments=claim_fragments(SCHEMA))
STATUS_CHANGING = {
    name: q for name, q in {**QUERIES, **BROKER_QUERIES, **WORKFLOW_QUERIES}.items() if q.targets
}


def store_methods() -> set[str]:
    prefixes = ("job_", "worker_", "notify", "maintenance_", "cron_")
    return {name for name in dir(JobStore) if name.startswith(prefixes)}


def test_every_block_has_one_store_method_and_back() -> None:
    # `custom_plans` is a setting that `JobStore.fetch_planned` runs before a read
    assert set(QUERIES) - {"custom_plans"} == store_methods()


def _words(sql: str) -> str:
    return " ".join(sql.split())


def test_the_lease_and_the_claim_are_written_once_and_included_where_used() -> None:
    """The receive-and-claim statement of the built-in broker includes the same lease as its
    `message_receive` and the same claim as `job_claim_many`, renumbered, not a copy."""
    broker = load_queries("broker_postgres.sql", SCHEMA, fragments=claim_fragments(SCHEMA))
    lease = _words(load_fragments("broker_postgres.sql", SCHEMA)["message_lease"])
    claim = _words(claim_fragments(SCHEMA)["claim_set"])
    assert lease in _words(broker["message_receive"].sql)
    assert claim in _words(QUERIES["job_claim_many"].sql)
    joined = _words(broker["message_receive_claiming"].sql)
    assert lease.replace("$3", "$6").replace("$2", "$5").replace("$1", "$4") in joined
    assert claim in joined
    assert "{{" not in joined


def test_the_flow_claim_function_claims_as_claim_set_does() -> None:
    """The claim of held-back jobs lives in a function (migration 0009), which cannot
    include a fragment: it must still set what `claim_set` sets."""
    (function,) = [m for m in load_migrations(SCHEMA) if m.name == "flow_claim_function"]
    fragment = claim_fragments(SCHEMA)["claim_set"].splitlines()
    statement = "\n".join(line for line in fragment if not line.startswith("--"))
    assert _words(statement) in _words(function.up)


def test_an_include_of_an_unknown_fragment_is_refused(tmp_path: Path) -> None:
    package = tmp_path / "sqlpkg"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "q.sql").write_text("-- name: broken :one\n-- Includes nothing known.\n{{nope}};\n")
    sys.path.insert(0, str(tmp_path))
    try:
        with pytest.raises(ValueError, match="broken: no fragment named 'nope'"):
            load_queries("q.sql", SCHEMA, package="sqlpkg")
    finally:
        sys.path.remove(str(tmp_path))


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
    found = re.findall(r"status(?:::text)? IN \(([^)]*)\)", query.sql)
    assert found, f"{name} has no `status IN (...)` guard"
    guarded = {s.strip().strip("'") for s in found[0].split(",")}
    assert guarded == query.sources


def test_job_blocks_that_do_not_declare_a_transition_do_not_set_status() -> None:
    for name, query in QUERIES.items():
        if name.startswith("job_") and not query.targets:
            assert not re.search(r"SET\s+status\s*=", query.sql), name


async def test_every_block_prepares_on_the_migrated_schema(db: asyncpg.Connection) -> None:
    for sql_file in ("queries.sql", "broker_postgres.sql", "migrate.sql", "workflows.sql"):
        queries = load_queries(sql_file, SCHEMA, fragments=claim_fragments(SCHEMA))
        for name, query in queries.items():
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


DEPENDENCIES: dict[int, int] = {}  # a waiting job's dependency, for `dependency_settle`


async def _arrange_dependency(db: asyncpg.Connection, job_id: int, target: str) -> None:
    """Make `job_id` wait for a finished job: succeeded (released to `target`) or failed
    (cancelled under the `cancel` policy)."""
    finished = JobStatus.FAILED if target == "cancelled" else JobStatus.SUCCEEDED
    dependency = await insert_job(db, finished)
    DEPENDENCIES[job_id] = dependency
    await db.execute("UPDATE polyqueue.jobs SET has_dependents = true WHERE id = $1;", dependency)
    ahead = 3600.0 if target == "scheduled" else -1.0
    await db.execute(
        "UPDATE polyqueue.jobs SET waiting_on = 1, run_at = now() + make_interval(secs => $2)"
        " WHERE id = $1",
        job_id,
        ahead,
    )
    await db.execute(
        "INSERT INTO polyqueue.job_dependencies (job_id, depends_on, position, on_failure)"
        " VALUES ($1, $2, 1, 'cancel')",
        job_id,
        dependency,
    )


ARRANGE = {
    "dependency_settle": _arrange_dependency,
    "job_fail_poison": _arrange_poison,
    "job_expire_timeouts": _arrange_timeout,
    "message_receive_claiming": _arrange_notice,
}


async def _receive_claiming(store: JobStore, held: list[int]) -> list[ClaimedDelivery]:
    """The built-in broker's receive-and-claim on the store's database, once, no waiting."""
    async with PostgresBroker(store.url, SCHEMA, lease_seconds=30) as broker:
        return await broker.receive_claiming(
            ["q"], max_messages=10, wait_seconds=0, terms=ClaimTerms("w", 0, held)
        )


DRIVERS = {
    "job_claim_many": lambda store, db, job_id, target: store.job_claim_many([job_id], "w", 0),
    "message_receive_claiming": lambda store, db, job_id, target: _receive_claiming(store, []),
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
    "dependency_settle": lambda store, db, job_id, target: store.dependency_settle(
        [DEPENDENCIES[job_id]], db
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


async def test_an_attempt_number_claimed_twice_is_told_apart_by_the_worker(
    store: JobStore, db: asyncpg.Connection
) -> None:
    """A claim lost in a server crash (claims do not wait for the disk) leaves its attempt
    number to the next claim: the worker that ran the lost claim must not write into the
    attempt another worker claimed under the same number."""
    job_id = await insert_job(db, JobStatus.QUEUED)
    (lost,) = await store.job_claim_many([job_id], "worker-a", 0)
    await db.execute(  # what the crash undoes: the claim never reached the disk
        "UPDATE polyqueue.jobs SET status = 'queued', attempt = attempt - 1, worker_id = NULL"
        " WHERE id = $1",
        job_id,
    )
    (again,) = await store.job_claim_many([job_id], "worker-b", 0)
    assert again.attempt == lost.attempt
    assert await store.job_heartbeat_many([(job_id, lost.attempt)], "worker-a") == set()
    assert not await store.job_progress(job_id, lost.attempt, 0.5, "stale", "worker-a")
    stale = Outcome(job_id, lost.attempt, "succeeded", result='"from a"')
    assert await store.job_complete_many([stale], worker_id="worker-a") == {}
    assert await store.job_release_many([(job_id, lost.attempt)], "worker-a") == set()
    assert await store.job_heartbeat_many([(job_id, again.attempt)], "worker-b") == {job_id}
    current = Outcome(job_id, again.attempt, "succeeded", result='"from b"')
    assert set(await store.job_complete_many([current], worker_id="worker-b")) == {job_id}
    job = await store.job_get(job_id)
    assert (job.status, job.result, job.worker_id) == ("succeeded", "from b", "worker-b")


async def test_an_outcome_acks_its_notice_only_if_it_is_stored(
    store: JobStore, db: asyncpg.Connection
) -> None:
    """The outcome statement deletes the notice of a stored outcome; the notice of an
    outcome fenced off is made available again, since its job may be queued once more."""
    stored_id, fenced_id = [await insert_job(db, JobStatus.QUEUED) for _ in range(2)]
    for job_id in (stored_id, fenced_id):
        await db.execute(
            "INSERT INTO polyqueue.broker_messages (queue, body) VALUES ('q', $1)",
            encode_notice(job_id),
        )
    notices = await _receive_claiming(store, [])
    by_job = {n.job.id: n for n in notices if n.job}
    assert set(by_job) == {stored_id, fenced_id}
    await db.execute(  # the claim of one was lost: its job is queued again
        "UPDATE polyqueue.jobs SET status = 'queued', attempt = attempt - 1, worker_id = NULL"
        " WHERE id = $1",
        fenced_id,
    )
    outcomes = [Outcome(i, by_job[i].job.attempt, "succeeded", result="1") for i in by_job]
    receipts = [by_job[o.job_id].delivery.handle for o in outcomes]
    completed = await store.job_complete_many(outcomes, receipts=receipts)
    assert set(completed) == {stored_id}
    left = await db.fetch(
        "SELECT convert_from(body, 'UTF8') AS body, available_at <= now() AS available"
        " FROM polyqueue.broker_messages"
    )
    assert [(row["body"], row["available"]) for row in left] == [
        (encode_notice(fenced_id).decode(), True)
    ]


async def test_receive_claiming_leases_every_notice_and_claims_only_what_it_may(
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
    notices = await _receive_claiming(store, [held])
    assert sorted(n.delivery.body for n in notices) == sorted(bodies)  # every one leased
    assert {n.job.id for n in notices if n.job} == {wanted}  # claimed once, for both notices
    assert [n.job.attempt for n in notices if n.job] == [2, 2]  # one claim: attempt 1 -> 2
    assert [await status_of(db, i) for i in (wanted, held, done)] == [
        "running",
        "queued",
        "succeeded",
    ]
    assert await _receive_claiming(store, []) == []  # all still leased


async def test_a_planned_read_is_planned_for_its_parameters_and_only_it(store: JobStore) -> None:
    setting = "SELECT current_setting('plan_cache_mode') AS mode"
    assert await store.pool.fetchval(setting) == "force_generic_plan"  # the pool's own
    assert [row["mode"] for row in await store.fetch_planned(setting)] == ["force_custom_plan"]
    assert await store.pool.fetchval(setting) == "force_generic_plan"


def test_job_stats_counts_every_status_but_succeeded_exactly() -> None:
    """`job_stats` writes the statuses it counts exactly out: a new status must be added."""
    listed = re.search(r"WHERE status IN \(([^)]*)\)", QUERIES["job_stats"].sql)
    assert listed is not None
    exact = {status.strip().strip("'") for status in listed[1].split(",")}
    assert exact == {status.value for status in JobStatus} - {"succeeded"}


# -- plans -------------------------------------------------------------------------------------

HOT_STATEMENTS = {
    **{name: QUERIES[name].sql for name in ("job_claim_many", "job_complete_many")},
    **{name: QUERIES[name].sql for name in ("job_heartbeat_many", "job_insert_batch")},
    **{name: BROKER_QUERIES[name].sql for name in ("message_receive", "message_receive_claiming")},
    **{name: BROKER_QUERIES[name].sql for name in ("message_delete_many",)},
}
"""What a worker and a producer run for every batch of jobs."""


@pytest.fixture
async def analyzed_backlog(db: asyncpg.Connection) -> asyncpg.Connection:
    """20,000 queued jobs with their notices, and statistics that know it (autovacuum
    analyzes a table some time after a burst of enqueues: a worker may start either side)."""
    await db.execute(
        "INSERT INTO polyqueue.jobs (name, queue, status, payload, max_attempts, run_at)"
        " SELECT 't', 'q', 'queued', '{}', 3, now() FROM generate_series(1, 20000)"
    )
    await db.execute(
        "INSERT INTO polyqueue.broker_messages (queue, body)"
        " SELECT 'q', convert_to('{\"job_id\":' || id || '}', 'UTF8') FROM polyqueue.jobs"
    )
    await db.execute("ANALYZE polyqueue.jobs, polyqueue.broker_messages")
    await db.execute("SET plan_cache_mode = force_generic_plan")  # as the pools run them
    return db


@pytest.mark.parametrize("name", sorted(HOT_STATEMENTS))
async def test_a_hot_statement_finds_its_rows_by_key_whatever_the_statistics(
    analyzed_backlog: asyncpg.Connection, name: str
) -> None:
    """Each scan of `jobs` or `broker_messages` in the generic plan has an index condition:
    a plan that joined `id IN (subquery)` to a scan of every notice, or walked a partial
    index the statistics believed empty, read the whole backlog on every call once the
    tables had been analyzed (the drain ran 30 % slower)."""
    sql = HOT_STATEMENTS[name]
    parameters = max(int(n) for n in re.findall(r"\$(\d+)", sql))
    await analyzed_backlog.execute(f"PREPARE hot AS {sql}")  # generic: values do not matter
    try:
        nulls = ", ".join(["NULL"] * parameters)
        plan = [row[0] for row in await analyzed_backlog.fetch(f"EXPLAIN EXECUTE hot({nulls})")]
    finally:
        await analyzed_backlog.execute("DEALLOCATE hot")
    assert not _unkeyed_scans(plan, ("jobs", "broker_messages")), "\n".join(plan)


def _unkeyed_scans(plan: list[str], tables: tuple[str, ...]) -> list[str]:
    """The scan nodes of `tables` in an EXPLAIN text plan with no index or recheck condition."""
    scan = re.compile(rf"(?:Seq|Index|Index Only|Bitmap Heap) Scan .*\bon (?:{'|'.join(tables)}) ")
    unkeyed = []
    for at, line in enumerate(plan):
        if not scan.search(line):
            continue
        stripped = line.lstrip(" ")
        margin = len(line) - len(stripped)
        indent = margin + (6 if stripped.startswith("->") else 2)  # its own detail lines
        details = []
        for detail in plan[at + 1 :]:
            stripped = detail.lstrip(" ")
            if len(detail) - len(stripped) != indent or stripped.startswith("->"):
                break
            details.append(stripped)
        if not any(d.startswith(("Index Cond:", "Recheck Cond:")) for d in details):
            unkeyed.append(line.strip())
    return unkeyed
