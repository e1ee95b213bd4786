-- The dashboard's read-only queries. Each stays fast on a table of millions of jobs: the
-- pages read at most a page of rows, counts come from indexes (migration 0007), and text
-- search reads a bounded window of rows (`job_search`).

-- name: status_counts :many
-- Jobs per queue and status.
SELECT queue, status::text AS status, count(*) AS jobs
FROM {schema}.jobs
GROUP BY queue, status;

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

-- name: job_filter :fragment
-- The filters of the jobs page: statuses, queue, handler, created in [since, until).
    ($1::text[] IS NULL OR status::text = ANY($1::text[]))
AND ($2::text IS NULL OR queue = $2)
AND ($3::text IS NULL OR name = $3)
AND ($4::timestamptz IS NULL OR created_at >= $4)
AND ($5::timestamptz IS NULL OR created_at < $5)

-- name: job_page :many
-- One page of jobs matching the filters, newest first, older than id $6 (if given) or
-- newer than id $7 (then oldest first: the caller reverses); at most $8 rows.
SELECT id, name, queue, status::text AS status, attempt, max_attempts, created_at,
       finished_at, error_type, error_message, progress
FROM {schema}.jobs
WHERE {{job_filter}}
  AND ($6::bigint IS NULL OR id < $6)
  AND ($7::bigint IS NULL OR id > $7)
ORDER BY CASE WHEN $7::bigint IS NULL THEN -id ELSE id END
LIMIT $8;

-- name: job_search :many
-- Text search ($6, lowercase) in the error or the payload among the newest $8 jobs that match
-- the filters and are older than id $7: the matches (at most $9), and one last row whose id
-- is the oldest job looked at (`scanned` true), so the caller can search on from there.
WITH looked AS (
    SELECT id FROM {schema}.jobs
    WHERE {{job_filter}} AND ($7::bigint IS NULL OR id < $7)
    ORDER BY id DESC
    LIMIT $8
), matches AS (
    SELECT j.id, j.name, j.queue, j.status::text AS status, j.attempt, j.max_attempts,
           j.created_at, j.finished_at, j.error_type, j.error_message, j.progress,
           false AS scanned
    FROM {schema}.jobs AS j JOIN looked USING (id)
    WHERE strpos(lower(coalesce(j.error_message, '') || ' ' || coalesce(j.error_type, '')), $6) > 0
       OR strpos(lower(j.payload::text), $6) > 0
    ORDER BY j.id DESC
    LIMIT $9
)
SELECT * FROM matches
UNION ALL
SELECT min(id), '', '', '', 0, 0, NULL, NULL, NULL, NULL, NULL, count(*) = $8 FROM looked;

-- name: job_live :many
-- Status and progress of the jobs $1 (the rows a page shows).
SELECT id, status::text AS status, attempt, progress, progress_message
FROM {schema}.jobs
WHERE id = ANY($1::bigint[]);

-- name: queue_names :many
-- Every queue that has jobs, with its queued and running counts: a skip scan of the
-- (status, queue) index, one index probe per distinct pair instead of a scan of the table.
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
SELECT id FROM {schema}.jobs WHERE {{job_filter}} ORDER BY id DESC LIMIT $6;
