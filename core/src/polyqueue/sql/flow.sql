-- Flow control: limits, paused queues and the claim of limited jobs. Each block is called by
-- the FlowQueries method of the same name (polyqueue.store.flow).
--
-- A job is "held back" while its queue is paused or a limit applies to it (a row in
-- flow_limits for its handler or its queue). The ordinary claims (job_claim_many, a colocated
-- broker's receive) leave such jobs alone (the `claim_unrestrained` fragment); only
-- `flow_claim` starts them, under one transaction-scoped advisory lock taken first by
-- `flow_lock`, so that every claimer sees the claims committed before its own and no limit
-- is ever exceeded, whatever the number of workers.

-- name: flow_lock :exec
-- Serialise the claims of limited jobs in this schema until the transaction ends.
SELECT pg_advisory_xact_lock(hashtextextended('polyqueue-flow:' || $1::text, 0));

-- name: flow_claim :many
-- Claim up to $4 held-back jobs of the queues $3 (not paused) for worker $1 (timeout grace
-- $2) that their limits let start now, highest priority first, and record their starts for
-- the rate limits. A limit's room is its concurrency limit minus the jobs running under it,
-- and its rate limit minus the starts within its window; per key for a handler limit with
-- per_key. Per queue, only the first candidates whose limits have room are ranked (ten
-- times $4, at least 100, read in index order), so a full key never hides the keys behind
-- it and a long backlog is never sorted.
-- transition: queued -> running
WITH handler_limits AS (
    SELECT name, per_key, concurrency_limit AS conc, rate_limit AS rate, rate_window AS win
    FROM {schema}.flow_limits WHERE scope = 'handler'
), queue_limits AS (
    SELECT name AS queue, concurrency_limit AS conc, rate_limit AS rate, rate_window AS win
    FROM {schema}.flow_limits WHERE scope = 'queue' AND name = ANY($3::text[])
), running_h AS (
    SELECT r.name, CASE WHEN h.per_key THEN coalesce(r.concurrency_key, '') ELSE '' END AS key,
           count(*) AS n
    FROM {schema}.jobs AS r JOIN handler_limits AS h ON h.name = r.name
    WHERE r.status = 'running'
    GROUP BY 1, 2
), started_h AS (
    SELECT h.name, s.key, count(*) AS n
    FROM handler_limits AS h
    JOIN {schema}.flow_starts AS s ON s.scope = 'handler:' || h.name
    WHERE h.rate IS NOT NULL AND s.started_at > clock_timestamp() - make_interval(secs => h.win)
    GROUP BY 1, 2
), running_q AS (
    SELECT r.queue, count(*) AS n
    FROM {schema}.jobs AS r JOIN queue_limits AS q ON q.queue = r.queue
    WHERE r.status = 'running'
    GROUP BY 1
), started_q AS (
    SELECT q.queue, count(*) AS n
    FROM queue_limits AS q
    JOIN {schema}.flow_starts AS s ON s.scope = 'queue:' || q.queue
    WHERE q.rate IS NOT NULL AND s.started_at > clock_timestamp() - make_interval(secs => q.win)
    GROUP BY 1
), scored AS (
    SELECT s.*
    FROM unnest($3::text[]) AS w(queue)
    CROSS JOIN LATERAL (
        SELECT c.id, c.name, c.queue, c.priority,
               CASE WHEN h.per_key THEN coalesce(c.concurrency_key, '') ELSE '' END AS hkey,
               h.rate IS NOT NULL AS h_rated, q.rate IS NOT NULL AS q_rated,
               least(coalesce(h.conc - coalesce(rh.n, 0), 2147483647),
                     coalesce(h.rate - coalesce(sh.n, 0), 2147483647)) AS h_room,
               least(coalesce(q.conc - coalesce(rq.n, 0), 2147483647),
                     coalesce(q.rate - coalesce(sq.n, 0), 2147483647)) AS q_room
        FROM {schema}.jobs AS c
        LEFT JOIN handler_limits AS h ON h.name = c.name
        LEFT JOIN queue_limits AS q ON q.queue = c.queue
        LEFT JOIN running_h AS rh
               ON rh.name = c.name
              AND rh.key = CASE WHEN h.per_key THEN coalesce(c.concurrency_key, '') ELSE '' END
        LEFT JOIN started_h AS sh
               ON sh.name = c.name
              AND sh.key = CASE WHEN h.per_key THEN coalesce(c.concurrency_key, '') ELSE '' END
        LEFT JOIN running_q AS rq ON rq.queue = c.queue
        LEFT JOIN started_q AS sq ON sq.queue = c.queue
        WHERE c.status = 'queued' AND c.queue = w.queue
          AND (h.name IS NOT NULL OR q.queue IS NOT NULL)
          AND least(coalesce(h.conc - coalesce(rh.n, 0), 2147483647),
                    coalesce(h.rate - coalesce(sh.n, 0), 2147483647)) > 0
          AND least(coalesce(q.conc - coalesce(rq.n, 0), 2147483647),
                    coalesce(q.rate - coalesce(sq.n, 0), 2147483647)) > 0
        ORDER BY c.priority DESC, c.id
        LIMIT greatest(10 * $4, 100)
    ) AS s
    WHERE NOT EXISTS (SELECT FROM {schema}.paused_queues AS p WHERE p.queue = w.queue)
), ranked AS (
    SELECT s.*,
           row_number() OVER (PARTITION BY s.name, s.hkey ORDER BY s.priority DESC, s.id) AS h_rank,
           row_number() OVER (PARTITION BY s.queue ORDER BY s.priority DESC, s.id) AS q_rank
    FROM scored AS s
), chosen AS (
    SELECT id FROM ranked
    WHERE h_rank <= h_room AND q_rank <= q_room
    ORDER BY priority DESC, id
    LIMIT $4
), claimed AS (
    UPDATE {schema}.jobs AS j
    {{claim_set}}
    FROM (
        SELECT c.id FROM chosen JOIN {schema}.jobs AS c ON c.id = chosen.id
        WHERE c.status IN ('queued')
        FOR UPDATE OF c SKIP LOCKED
    ) AS locked
    WHERE j.id = locked.id
    {{claim_returning}}
), started AS (
    INSERT INTO {schema}.flow_starts (scope, key, started_at)
    SELECT 'handler:' || s.name, s.hkey, clock_timestamp()
    FROM claimed JOIN scored AS s ON s.id = claimed.id WHERE s.h_rated
    UNION ALL
    SELECT 'queue:' || s.queue, '', clock_timestamp()
    FROM claimed JOIN scored AS s ON s.id = claimed.id WHERE s.q_rated
)
SELECT * FROM claimed ORDER BY priority DESC, id;

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
