-- The claim of held-back jobs as one function, so that a worker's flow claim is one round
-- trip instead of four (BEGIN, the flow lock, the claim, COMMIT). In a PL/pgSQL function each
-- statement takes a new snapshot, so the claim, run after the lock is held, sees every claim
-- committed before it: no limit is exceeded, whatever the number of workers. The lock is
-- transaction-scoped: it is released when the caller's statement (its implicit transaction)
-- commits. The claim's SET is `claim_set` of queries.sql as of this migration; a test keeps
-- the two the same.
CREATE FUNCTION {schema}.flow_claim(
    claimer text, grace_seconds double precision, wanted_queues text[], max_jobs integer
) RETURNS SETOF {schema}.jobs
LANGUAGE plpgsql VOLATILE AS $flow_claim$
DECLARE
    pass_width integer;
    pass_jobs integer := max_jobs;
    pass_claimed integer;
BEGIN
    PERFORM pg_advisory_xact_lock(hashtextextended('polyqueue-flow:{schema}', 0));
    -- Two passes at most: the first ranks only as many candidates as it may claim, which is
    -- all it takes while the limits have room to spare; if it claimed fewer, the second
    -- ranks ten times as many (at least 100), so that a full key or handler never hides the
    -- jobs behind it. If the first claimed none, no candidate had room and the second is
    -- skipped. Each statement sees what the one before it claimed.
    FOREACH pass_width IN ARRAY ARRAY[max_jobs, greatest(10 * max_jobs, 100)] LOOP
        RETURN QUERY
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
                LIMIT pass_width
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
            LIMIT pass_jobs
        ), claimed AS (
            UPDATE {schema}.jobs AS j
            SET status = 'running', attempt = j.attempt + 1, worker_id = $1, started_at = now(),
                notified_at = NULL, republishes = 0,
                heartbeat_at = now(), finished_at = NULL, progress = NULL, progress_message = NULL,
                timeout_at = CASE
                    WHEN j.max_run_seconds IS NULL OR j.timeout_strategy = 'ignore' THEN NULL
                    ELSE now() + make_interval(secs => j.max_run_seconds + $2)
                END
            FROM (
                SELECT c.id FROM chosen JOIN {schema}.jobs AS c ON c.id = chosen.id
                WHERE c.status IN ('queued')
                FOR UPDATE OF c SKIP LOCKED
            ) AS locked
            WHERE j.id = locked.id
            RETURNING j.*
        ), started AS (
            INSERT INTO {schema}.flow_starts (scope, key, started_at)
            SELECT 'handler:' || s.name, s.hkey, clock_timestamp()
            FROM claimed JOIN scored AS s ON s.id = claimed.id WHERE s.h_rated
            UNION ALL
            SELECT 'queue:' || s.queue, '', clock_timestamp()
            FROM claimed JOIN scored AS s ON s.id = claimed.id WHERE s.q_rated
        )
        SELECT * FROM claimed ORDER BY priority DESC, id;
        GET DIAGNOSTICS pass_claimed = ROW_COUNT;
        pass_jobs := pass_jobs - pass_claimed;
        EXIT WHEN pass_jobs <= 0 OR pass_claimed = 0;  -- all claimed, or none had room
    END LOOP;
END;
$flow_claim$;
