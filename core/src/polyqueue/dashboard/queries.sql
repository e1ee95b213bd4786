-- The dashboard's read-only queries. Each stays fast on a table of millions of jobs: the
-- pages read at most a page of rows, counts come from indexes (migration 0007), and text
-- search reads a bounded window of rows (`job_search`).

-- name: status_queue_pairs :fragment
-- Every (status, queue) pair that has jobs: a skip scan of the (status, queue) index, one
-- index probe per pair instead of a scan of the table.
WITH RECURSIVE pairs AS (
    (SELECT status, queue FROM {schema}.jobs ORDER BY status, queue LIMIT 1)
    UNION ALL
    SELECT next.status, next.queue
    FROM pairs, LATERAL (
        SELECT status, queue FROM {schema}.jobs
        WHERE (status, queue) > (pairs.status, pairs.queue)
        ORDER BY status, queue
        LIMIT 1
    ) AS next
)

-- name: status_counts :many
-- Jobs per queue and status, each counted up to $1 + 1 (more means "over $1"): the count
-- reads at most that many index entries, however big the table.
{{status_queue_pairs}}
SELECT p.queue, p.status::text AS status, c.jobs
FROM pairs AS p, LATERAL (
    SELECT count(*) AS jobs FROM (
        SELECT FROM {schema}.jobs AS j
        WHERE j.status = p.status AND j.queue = p.queue
        LIMIT $1 + 1
    ) AS capped
) AS c;

-- name: status_estimates :many
-- The planner's estimate of the jobs in each status (from the last ANALYZE), for totals
-- over the counts' cap.
SELECT v.status, round(v.freq * greatest(c.reltuples, 0))::bigint AS jobs
FROM pg_catalog.pg_class AS c
JOIN pg_catalog.pg_namespace AS n ON n.oid = c.relnamespace
JOIN pg_catalog.pg_stats AS s
  ON s.schemaname = n.nspname AND s.tablename = c.relname AND s.attname = 'status'
CROSS JOIN LATERAL unnest(s.most_common_vals::text::text[], s.most_common_freqs)
    AS v(status, freq)
WHERE c.oid = '{schema}.jobs'::regclass;

-- name: throughput :many
-- Jobs finished in each of the last $1 minutes: succeeded and failed, by minutes ago.
SELECT floor(extract(epoch FROM now() - finished_at) / 60)::integer AS minutes_ago,
       count(*) FILTER (WHERE status = 'succeeded') AS succeeded,
       count(*) FILTER (WHERE status = 'failed') AS failed
FROM {schema}.jobs
WHERE status IN ('succeeded', 'failed', 'cancelled')
  AND finished_at > now() - make_interval(mins => $1)
GROUP BY 1;

-- name: running_jobs :many
-- The running jobs, most recently started first, at most $1.
SELECT id, name, queue, attempt, max_attempts, worker_id, progress, progress_message,
       extract(epoch FROM now() - started_at) AS running_for
FROM {schema}.jobs
WHERE status = 'running'
ORDER BY started_at DESC, id DESC
LIMIT $1;

-- name: workers :many
-- Registered workers: the running ones first, then the newest; at most $1.
SELECT w.id, w.hostname, w.pid, w.queues, w.concurrency, w.status, w.started_at,
       w.stopped_at, extract(epoch FROM now() - w.heartbeat_at) AS heartbeat_age,
       (SELECT count(*) FROM {schema}.jobs AS j
        WHERE j.worker_id = w.id AND j.status = 'running') AS current_jobs
FROM {schema}.workers AS w
ORDER BY w.status = 'running' DESC, w.started_at DESC
LIMIT $1;

-- name: workers_alive :one
-- How many workers are running.
SELECT count(*) AS workers FROM {schema}.workers WHERE status = 'running';

-- name: job_filter :fragment
-- The filters of the jobs page: statuses, queue, handler, created in [since, until).
    ($1::{schema}.job_status[] IS NULL OR status = ANY($1::{schema}.job_status[]))
AND ($2::text IS NULL OR queue = $2)
AND ($3::text IS NULL OR name = $3)
AND ($4::timestamptz IS NULL OR created_at >= $4)
AND ($5::timestamptz IS NULL OR created_at < $5)

-- name: job_columns :fragment
-- What the jobs page shows of a job.
id, name, queue, status::text AS status, attempt, max_attempts, created_at, finished_at,
error_type, error_message, progress

-- name: job_page_older :many
-- One page of jobs matching the filters, newest first (created_at, then id), older than job
-- $6 (if given); at most $7 rows. Walks the (created_at, id) index backwards and stops at $7.
SELECT {{job_columns}}
FROM {schema}.jobs
WHERE {{job_filter}}
  AND ($6::bigint IS NULL
       OR (created_at, id) < (SELECT c.created_at, c.id FROM {schema}.jobs AS c WHERE c.id = $6))
ORDER BY created_at DESC, id DESC
LIMIT $7;

-- name: job_page_newer :many
-- One page of jobs matching the filters newer than job $6, oldest first (the caller reverses
-- them); at most $7 rows.
SELECT {{job_columns}}
FROM {schema}.jobs
WHERE {{job_filter}}
  AND (created_at, id) > (SELECT c.created_at, c.id FROM {schema}.jobs AS c WHERE c.id = $6)
ORDER BY created_at, id
LIMIT $7;

-- name: job_search :many
-- Text search ($6, lowercase) in the error or the payload among the newest $8 jobs that match
-- the filters and are older than job $7: at most $9 matches, newest first. The window is read
-- lazily, so it stops as soon as $9 jobs matched.
SELECT {{job_columns}}
FROM (
    SELECT * FROM {schema}.jobs
    WHERE {{job_filter}}
      AND ($7::bigint IS NULL
           OR (created_at, id) < (SELECT c.created_at, c.id FROM {schema}.jobs AS c
                                  WHERE c.id = $7))
    ORDER BY created_at DESC, id DESC
    LIMIT $8
) AS looked
WHERE strpos(lower(coalesce(error_message, '') || ' ' || coalesce(error_type, '')), $6) > 0
   OR strpos(lower(payload::text), $6) > 0
ORDER BY created_at DESC, id DESC
LIMIT $9;

-- name: job_search_end :one
-- The oldest job of a text search's window (as in `job_search`, $6 the window's size), or
-- nothing when the window is not full: then the search has seen every matching job.
SELECT id FROM {schema}.jobs
WHERE {{job_filter}}
  AND ($7::bigint IS NULL
       OR (created_at, id) < (SELECT c.created_at, c.id FROM {schema}.jobs AS c WHERE c.id = $7))
ORDER BY created_at DESC, id DESC
OFFSET $6 - 1
LIMIT 1;

-- name: job_live :many
-- Status and progress of the jobs $1 (the rows a page shows).
SELECT id, status::text AS status, attempt, progress, progress_message
FROM {schema}.jobs
WHERE id = ANY($1::bigint[]);

-- name: queue_names :many
-- Every queue that has jobs, with its queued, scheduled and running counts and the age of
-- its oldest queued job (the partial indexes of those statuses answer each).
{{status_queue_pairs}}
SELECT q.queue,
       (SELECT count(*) FROM {schema}.jobs AS j
        WHERE j.status = 'queued' AND j.queue = q.queue) AS queued,
       (SELECT count(*) FROM {schema}.jobs AS j
        WHERE j.status = 'scheduled' AND j.queue = q.queue) AS scheduled,
       (SELECT count(*) FROM {schema}.jobs AS j
        WHERE j.status = 'running' AND j.queue = q.queue) AS running,
       (SELECT extract(epoch FROM now() - min(j.run_at)) FROM {schema}.jobs AS j
        WHERE j.status = 'queued' AND j.queue = q.queue) AS oldest_age
FROM (SELECT DISTINCT queue FROM pairs) AS q
ORDER BY q.queue;

-- name: cron_ledger :many
-- Every schedule that has fired: its expression and last fired tick.
SELECT name, expression, last_tick FROM {schema}.cron_schedules ORDER BY name;

-- name: jobs_by_key :many
-- The jobs holding the idempotency keys $1 (a cron tick's job, by its key).
SELECT idempotency_key, id, status::text AS status
FROM {schema}.jobs
WHERE idempotency_key = ANY($1::text[]);

-- name: job_ids :many
-- The ids of the newest $6 jobs matching the filters (a bulk action on a filter).
SELECT id FROM {schema}.jobs WHERE {{job_filter}} ORDER BY created_at DESC, id DESC LIMIT $6;

-- name: job_extras :one
-- What the job page shows beyond `job_get`: the failed attempts (JSON text, oldest first) and
-- the workflow of job $1.
SELECT errors::text AS errors, workflow_id FROM {schema}.jobs WHERE id = $1;
