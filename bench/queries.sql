-- The benchmarks' own SQL: observing the jobs table and managing throwaway databases.
-- `{schema}` is the quoted Polyqueue schema and `{database}` a quoted database name.

-- name: server_info :one
-- The server's version and durability settings, for the machine line.
SELECT current_setting('server_version') AS version,
       current_setting('fsync') AS fsync,
       current_setting('synchronous_commit') AS synchronous_commit;

-- name: database_create :exec
-- A fresh, empty database for one measurement.
CREATE DATABASE {database};

-- name: database_drop :exec
-- Drop a measurement's database, disconnecting anyone still on it.
DROP DATABASE IF EXISTS {database} WITH (FORCE);

-- name: job_counts :one
-- How many jobs with an id above $1 exist, how many succeeded and how many failed (polled
-- during the drain; $1 leaves out rows kept from before, as bench/bigtable.py keeps them).
SELECT count(*) AS total,
       count(*) FILTER (WHERE status = 'succeeded') AS succeeded,
       count(*) FILTER (WHERE status = 'failed') AS failed
FROM {schema}.jobs
WHERE id > $1;

-- name: dashboard_fill :exec
-- $1 jobs for bench/dashboard.py in one statement: one every 0.6 s back from now (a week
-- for a million), 8 queues, 20 handlers; 2% failed with an error, 1% cancelled, the newest
-- 300 queued, running or scheduled, the rest succeeded with a result.
INSERT INTO {schema}.jobs (
    name, queue, status, payload, result, max_attempts, attempt, worker_id, created_at,
    run_at, started_at, finished_at, error_type, error_message, error_traceback
)
SELECT 'bench.handler_' || (i % 20), 'q' || (i % 8), s.status::{schema}.job_status,
       jsonb_build_object('user_id', i, 'email', 'user' || i || '@example.com',
                          'items', jsonb_build_array(i % 7, i % 11)),
       CASE WHEN s.status = 'succeeded' THEN jsonb_build_object('rows', i % 1000) END,
       3, CASE WHEN s.status IN ('queued', 'scheduled') THEN 0 ELSE 1 END,
       CASE WHEN s.status = 'running' THEN 'bench-worker' END,
       t.created, t.created + CASE WHEN s.status = 'scheduled' THEN interval '1 hour'
                                   ELSE interval '0' END,
       CASE WHEN s.status IN ('queued', 'scheduled') THEN NULL ELSE t.created END,
       CASE WHEN s.status IN ('succeeded', 'failed', 'cancelled')
            THEN t.created + interval '1 second' END,
       CASE WHEN s.status = 'failed' THEN 'ValueError' END,
       CASE WHEN s.status = 'failed' THEN 'invoice ' || i || ' has no customer' END,
       CASE WHEN s.status = 'failed' THEN 'Traceback (most recent call last):' || chr(10) ||
            '  File "billing.py", line 12, in charge' || chr(10) || 'ValueError' END
FROM generate_series(1, $1) AS i,
     LATERAL (SELECT now() - make_interval(secs => ($1 - i) * 0.6) AS created) AS t,
     LATERAL (SELECT CASE WHEN i > $1 - 100 THEN 'queued'
                          WHEN i > $1 - 150 THEN 'running'
                          WHEN i > $1 - 300 THEN 'scheduled'
                          WHEN i % 50 = 0 THEN 'failed'
                          WHEN i % 97 = 0 THEN 'cancelled'
                          ELSE 'succeeded' END AS status) AS s;

-- name: dashboard_workers :exec
-- Workers for bench/dashboard.py: one running (the running jobs' worker), $1 stopped.
INSERT INTO {schema}.workers (id, hostname, pid, queues, concurrency, status, stopped_at)
SELECT CASE WHEN i = 0 THEN 'bench-worker' ELSE 'bench-stopped-' || i END, 'bench-host',
       1000 + i, ARRAY['q0', 'q1'], 10, CASE WHEN i = 0 THEN 'running' ELSE 'stopped' END,
       CASE WHEN i = 0 THEN NULL ELSE now() END
FROM generate_series(0, $1) AS i;

-- name: dashboard_last_id :one
-- The newest job id.
SELECT max(id) FROM {schema}.jobs;

-- name: dashboard_analyze :exec
-- Fresh statistics and visibility map after the fill, as autovacuum would leave them.
VACUUM ANALYZE {schema}.jobs;

-- name: dashboard_drop_indexes :exec
-- The indexes of migration 0007, dropped to time the pages without them.
DROP INDEX {schema}.jobs_created_at_id, {schema}.jobs_finished_badly;

-- name: fill_finished :exec
-- $1 succeeded no-op jobs, finished $2 seconds ago (bench/bigtable.py): the rows a busy
-- queue keeps for its retention period, written in one statement.
INSERT INTO {schema}.jobs (
    name, queue, status, payload, result, headers, priority, attempt, max_attempts,
    run_at, created_at, started_at, finished_at, worker_id
)
SELECT 'bench.noop', 'default', 'succeeded', jsonb_build_object('n', g), 'null'::jsonb, '{}',
       0, 1, 3, t, t, t, t, 'bench-fill'
FROM generate_series(1, $1) AS g,
     LATERAL (SELECT now() - make_interval(secs => $2) - make_interval(secs => g / 1000.0) AS t) AS at;

-- name: finished_count :one
-- Finished jobs in the table (bench/bigtable.py, while pruning).
SELECT count(*) FROM {schema}.jobs WHERE status = 'succeeded';

-- name: table_size :one
-- The jobs table with its indexes and TOAST, in bytes.
SELECT pg_total_relation_size('{schema}.jobs');

-- name: max_job_id :one
-- The highest job id so far (0: none); jobs enqueued later have higher ones.
SELECT coalesce(max(id), 0) FROM {schema}.jobs;
