-- Flow control: limits, paused queues and the claim of limited jobs. Each block is called by
-- the FlowQueries method of the same name (polyqueue.store.flow).
--
-- A job is "held back" while its queue is paused or a limit applies to it (a row in
-- flow_limits for its handler or its queue). The ordinary claims (job_claim_many, a colocated
-- broker's receive) leave such jobs alone (the `claim_unrestrained` fragment); only
-- `flow_claim` starts them, under one transaction-scoped advisory lock taken first, so that
-- every claimer sees the claims committed before its own and no limit is ever exceeded,
-- whatever the number of workers.

-- name: flow_claim :many
-- Claim up to $4 held-back jobs of the queues $3 (not paused) for worker $1 (timeout grace
-- $2) that their limits let start now, highest priority first, and record their starts for
-- the rate limits: one round trip to the function `flow_claim` (migration 0009), which takes
-- the flow lock and then claims. A limit's room is its concurrency limit minus the jobs
-- running under it, and its rate limit minus the starts within its window; per key for a
-- handler limit with per_key. Per queue, only the first candidates whose limits have room
-- are ranked (ten times $4, at least 100, read in index order), so a full key never hides
-- the keys behind it and a long backlog is never sorted.
-- transition: queued -> running
SELECT {{claimed_columns}}
FROM {schema}.flow_claim($1::text, $2::double precision, $3::text[], $4::integer) AS j
ORDER BY j.priority DESC, j.id;

-- name: flow_held_back :many
-- Which of the jobs $1 are queued and held back (their queue paused, or a limit applies).
SELECT j.id
FROM {schema}.jobs AS j
WHERE j.id = ANY($1::bigint[]) AND j.status = 'queued'
  AND (EXISTS (SELECT FROM {schema}.paused_queues AS p WHERE p.queue = j.queue)
       OR EXISTS (SELECT FROM {schema}.flow_limits AS l
                  WHERE (l.scope = 'handler' AND l.name = j.name)
                     OR (l.scope = 'queue' AND l.name = j.queue)));

-- name: flow_waiting :one
-- Whether a held-back job of the queues $1 waits (not paused: it may start once a limit
-- has room).
SELECT EXISTS (
    SELECT FROM {schema}.jobs AS j
    WHERE j.status = 'queued' AND j.queue = ANY($1::text[])
      AND NOT EXISTS (SELECT FROM {schema}.paused_queues AS p WHERE p.queue = j.queue)
      AND EXISTS (SELECT FROM {schema}.flow_limits AS l
                  WHERE (l.scope = 'handler' AND l.name = j.name)
                     OR (l.scope = 'queue' AND l.name = j.queue))
);

-- name: flow_limit_set :exec
-- Set the limits of a handler or a queue (`scope`, `name`), replacing any earlier ones.
INSERT INTO {schema}.flow_limits AS l
    (scope, name, per_key, concurrency_limit, rate_limit, rate_window, updated_at)
VALUES ($1, $2, $3, $4, $5, $6, now())
ON CONFLICT (scope, name) DO UPDATE
SET per_key = excluded.per_key, concurrency_limit = excluded.concurrency_limit,
    rate_limit = excluded.rate_limit, rate_window = excluded.rate_window, updated_at = now();

-- name: flow_limit_clear :one
-- Remove the limits of a handler or a queue: its jobs start as freely as any. Whether it
-- had some.
WITH cleared AS (
    DELETE FROM {schema}.flow_limits WHERE scope = $1 AND name = $2 RETURNING 1
)
SELECT count(*) > 0 FROM cleared;

-- name: flow_unrestrained :many
-- The queued jobs of handler or queue ($1 scope, $2 name) that nothing holds back any more
-- (a limit removed): they were inserted without a notice, so they need one now.
SELECT c.id, c.queue, c.priority
FROM {schema}.jobs AS c
WHERE c.status = 'queued'
  AND CASE $1 WHEN 'handler' THEN c.name ELSE c.queue END = $2
  AND {{claim_unrestrained}}
ORDER BY c.priority DESC, c.id;

-- name: flow_limits_list :many
-- Every limit, with what runs under it and what waits for it.
SELECT l.scope, l.name, l.per_key, l.concurrency_limit, l.rate_limit, l.rate_window,
       (SELECT count(*) FROM {schema}.jobs AS j
        WHERE j.status = 'running'
          AND CASE l.scope WHEN 'handler' THEN j.name ELSE j.queue END = l.name) AS running,
       (SELECT count(*) FROM {schema}.jobs AS j
        WHERE j.status = 'queued'
          AND CASE l.scope WHEN 'handler' THEN j.name ELSE j.queue END = l.name) AS waiting
FROM {schema}.flow_limits AS l
ORDER BY l.scope, l.name;

-- name: queue_pause :exec
-- Pause a queue: no job of it is claimed from now on; running ones finish.
INSERT INTO {schema}.paused_queues (queue) VALUES ($1) ON CONFLICT (queue) DO NOTHING;

-- name: queue_resume :many
-- Resume a queue; return its queued jobs, whose notices are rung again.
WITH resumed AS (
    DELETE FROM {schema}.paused_queues WHERE queue = $1 RETURNING queue
)
SELECT j.id, j.queue, j.priority
FROM {schema}.jobs AS j
WHERE j.queue = $1 AND j.status = 'queued' AND EXISTS (SELECT FROM resumed)
ORDER BY j.priority DESC, j.id;

-- name: queues_paused :many
-- The paused queues, with their waiting jobs.
SELECT p.queue, p.paused_at,
       (SELECT count(*) FROM {schema}.jobs AS j
        WHERE j.queue = p.queue AND j.status = 'queued') AS waiting
FROM {schema}.paused_queues AS p
ORDER BY p.queue;

-- name: flow_starts_prune :one
-- Forget starts older than every rate window by a minute (maintenance; the last minute's
-- starts stay for whoever looks at them); return how many.
WITH pruned AS (
    DELETE FROM {schema}.flow_starts
    WHERE started_at < now() - make_interval(
        secs => 60 + coalesce((SELECT max(rate_window) FROM {schema}.flow_limits), 0))
    RETURNING 1
)
SELECT count(*) FROM pruned;
