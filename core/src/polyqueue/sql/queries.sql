-- The job store's SQL. Each block is called by the JobStore method of the same name.
-- Blocks that change a job's status declare it with `-- transition: from, ... -> to | ...`;
-- tests check every declaration against polyqueue.status.TRANSITIONS and the WHERE clause.

-- name: job_insert_many :many
-- Insert many jobs in one statement; an idempotency key already taken returns the older job.
WITH input AS (
    SELECT nextval(pg_get_serial_sequence('{schema}.jobs', 'id')) AS id, i.*
    FROM unnest(
        $1::text[], $2::text[], $3::text[], $4::text[], $5::integer[], $6::integer[],
        $7::double precision[], $8::text[], $9::text[], $10::timestamptz[]
    ) AS i(name, queue, payload, headers, priority, max_attempts,
           max_run_seconds, timeout_strategy, idempotency_key, run_at)
), inserted AS (
    INSERT INTO {schema}.jobs (
        id, name, queue, status, payload, headers, priority, max_attempts,
        max_run_seconds, timeout_strategy, idempotency_key, run_at
    ) OVERRIDING SYSTEM VALUE
    SELECT id, name, queue,
           CASE WHEN run_at > now() THEN 'scheduled' ELSE 'queued' END::{schema}.job_status,
           payload::jsonb, headers::jsonb, priority, max_attempts,
           max_run_seconds, timeout_strategy, idempotency_key, coalesce(run_at, now())
    FROM input
    ORDER BY id
    ON CONFLICT (idempotency_key) WHERE idempotency_key IS NOT NULL DO NOTHING
    RETURNING id, status
)
SELECT coalesce(inserted.id, existing.id) AS id,
       inserted.id IS NOT NULL AS created,
       coalesce(inserted.status, existing.status)::text AS status,
       input.queue, input.priority, input.idempotency_key
FROM input
LEFT JOIN inserted ON inserted.id = input.id
LEFT JOIN {schema}.jobs AS existing
       ON inserted.id IS NULL AND existing.idempotency_key = input.idempotency_key
ORDER BY input.id;

-- name: job_ids_by_keys :many
-- The jobs holding these idempotency keys (for keys taken by a concurrent transaction).
SELECT id, idempotency_key, status::text AS status
FROM {schema}.jobs
WHERE idempotency_key = ANY($1::text[]);

-- name: job_claim_many :many
-- Claim the queued jobs among these ids for one worker, counting an attempt each.
-- transition: queued -> running
UPDATE {schema}.jobs AS j
SET status = 'running', attempt = j.attempt + 1, worker_id = $2, started_at = now(),
    heartbeat_at = now(), finished_at = NULL, progress = NULL, progress_message = NULL,
    timeout_at = CASE
        WHEN j.max_run_seconds IS NULL OR j.timeout_strategy = 'ignore' THEN NULL
        ELSE now() + make_interval(secs => j.max_run_seconds + $3)
    END
WHERE j.id IN (
    SELECT id FROM {schema}.jobs
    WHERE id = ANY($1::bigint[]) AND status IN ('queued')
    FOR UPDATE SKIP LOCKED
)
RETURNING j.id, j.name, j.queue, j.payload::text AS payload, j.headers::text AS headers,
          j.priority, j.attempt, j.attempt_base, j.max_attempts, j.max_run_seconds,
          j.timeout_strategy;

-- name: job_complete_many :many
-- Record many outcomes of running attempts; a row whose attempt moved on is left alone.
-- transition: running -> succeeded | failed | scheduled
UPDATE {schema}.jobs AS j
SET status = o.status::{schema}.job_status,
    result = coalesce(o.result::jsonb, j.result),
    error_type = coalesce(o.error_type, j.error_type),
    error_message = coalesce(o.error_message, j.error_message),
    error_traceback = coalesce(o.error_traceback, j.error_traceback),
    run_at = CASE WHEN o.status = 'scheduled'
                  THEN now() + make_interval(secs => o.delay) ELSE j.run_at END,
    finished_at = CASE WHEN o.status = 'scheduled' THEN NULL ELSE now() END,
    worker_id = CASE WHEN o.status = 'scheduled' THEN NULL ELSE j.worker_id END,
    timeout_at = NULL
FROM unnest(
    $1::bigint[], $2::integer[], $3::text[], $4::text[], $5::text[], $6::text[], $7::text[],
    $8::double precision[]
) AS o(id, attempt, status, result, error_type, error_message, error_traceback, delay)
WHERE j.id = o.id AND j.attempt = o.attempt AND j.status IN ('running')
  AND o.status IN ('succeeded', 'failed', 'scheduled')
RETURNING j.id, j.status::text AS status, j.run_at;

-- name: job_release_many :many
-- Give running attempts back at shutdown; a given-back attempt does not count.
-- transition: running -> queued
UPDATE {schema}.jobs AS j
SET status = 'queued', attempt_base = j.attempt_base + 1, worker_id = NULL,
    timeout_at = NULL, run_at = now()
FROM unnest($1::bigint[], $2::integer[]) AS r(id, attempt)
WHERE j.id = r.id AND j.attempt = r.attempt AND j.status IN ('running')
RETURNING j.id;

-- name: job_heartbeat_many :many
-- Mark running attempts alive; ids missing from the result are no longer this worker's.
UPDATE {schema}.jobs AS j
SET heartbeat_at = now()
FROM unnest($1::bigint[], $2::integer[]) AS h(id, attempt)
WHERE j.id = h.id AND j.attempt = h.attempt AND j.status = 'running'
RETURNING j.id;

-- name: job_progress :one
-- Store a running attempt's progress; it also counts as a heartbeat.
UPDATE {schema}.jobs
SET progress = $3, progress_message = $4, heartbeat_at = now()
WHERE id = $1 AND attempt = $2 AND status = 'running'
RETURNING id;

-- name: job_promote_due :many
-- Move due scheduled jobs to queued, oldest first, at most $1 of them.
-- transition: scheduled -> queued
UPDATE {schema}.jobs AS j
SET status = 'queued'
WHERE j.id IN (
    SELECT id FROM {schema}.jobs
    WHERE status IN ('scheduled') AND run_at <= now()
    ORDER BY run_at
    LIMIT $1
    FOR UPDATE SKIP LOCKED
)
RETURNING j.id, j.queue, j.priority;

-- name: job_next_run_at :one
-- When the earliest scheduled job falls due.
SELECT min(run_at) AS run_at FROM {schema}.jobs WHERE status = 'scheduled';

-- name: job_get :one
-- One job, every column.
SELECT id, name, queue, status::text AS status, payload::text AS payload,
       result::text AS result, headers::text AS headers, priority, attempt, attempt_base,
       max_attempts, max_run_seconds, timeout_strategy, idempotency_key, run_at,
       error_type, error_message, error_traceback, progress, progress_message, worker_id,
       created_at, started_at, heartbeat_at, timeout_at, finished_at
FROM {schema}.jobs
WHERE id = $1;

-- name: job_status_many :many
-- The status of each of these jobs (for wait_for).
SELECT id, status::text AS status FROM {schema}.jobs WHERE id = ANY($1::bigint[]);

-- name: job_cancel :one
-- Cancel a job that has not finished; running workers are told on the cancel channel.
-- transition: scheduled, queued, running -> cancelled
UPDATE {schema}.jobs
SET status = 'cancelled', finished_at = now(), timeout_at = NULL
WHERE id = $1 AND status IN ('scheduled', 'queued', 'running')
RETURNING id, worker_id;

-- name: job_requeue :one
-- Queue a failed, cancelled or running job again with a fresh budget of attempts.
-- transition: failed, cancelled, running -> queued
UPDATE {schema}.jobs
SET status = 'queued', attempt_base = attempt, run_at = now(), finished_at = NULL,
    worker_id = NULL, timeout_at = NULL, result = NULL
WHERE id = $1 AND status IN ('failed', 'cancelled', 'running')
RETURNING id, queue, priority;

-- name: worker_register :exec
-- Add a worker to the registry as running.
INSERT INTO {schema}.workers (id, hostname, pid, queues, concurrency)
VALUES ($1, $2, $3, $4::text[], $5);

-- name: worker_heartbeat :one
-- Mark a running worker alive with its number of current jobs.
UPDATE {schema}.workers
SET heartbeat_at = now(), current_jobs = $2
WHERE id = $1 AND status = 'running'
RETURNING id;

-- name: worker_stop :exec
-- Mark a worker stopped after a clean exit.
UPDATE {schema}.workers
SET status = 'stopped', stopped_at = now(), current_jobs = 0
WHERE id = $1;

-- name: notify :exec
-- Send a notification on a channel; delivered when the surrounding transaction commits.
SELECT pg_notify($1, $2);
