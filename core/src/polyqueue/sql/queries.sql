-- The job store's SQL. Each block is called by the JobStore method of the same name.
-- Blocks that change a job's status declare it with `-- transition: from, ... -> to | ...`;
-- tests check every declaration against polyqueue.status.TRANSITIONS and the WHERE clause.

-- name: held_back_at_insert :fragment
-- Whether jobs of handler $1 in queue $2 are held back by flow control as they are inserted
-- (their queue paused, or a limit of the handler or the queue): they get no notice, since
-- only `flow_claim` (flow.sql) starts them.
(EXISTS (SELECT FROM {schema}.paused_queues AS p WHERE p.queue = $2)
 OR EXISTS (SELECT FROM {schema}.flow_limits AS l
            WHERE (l.scope = 'handler' AND l.name = $1) OR (l.scope = 'queue' AND l.name = $2)))

-- name: announce_inserted :fragment
-- The CTE `announced` of `job_insert_many` and `job_insert_unique`: with a channel in $10
-- (the built-in `postgres` broker), the notice of every job in `inserted` that is queued
-- (queue $2, priority $5; body as `polyqueue.notices` encodes it) into broker_messages;
-- the statement then NOTIFYs $10 once if `announced` has a row.
announced AS (
    INSERT INTO {schema}.broker_messages (queue, body, priority, available_at)
    SELECT $2, convert_to('{"job_id":' || id || '}', 'UTF8'), $5, now()
    FROM inserted
    WHERE $10::text IS NOT NULL AND status = 'queued' AND NOT {{held_back_at_insert}}
    ORDER BY id
    RETURNING 1
)

-- name: job_insert_many :many
-- Insert the jobs of one `enqueue_many` call (one handler, one set of options: only the
-- payloads in $3 differ) in one statement; ids ascend in the order of the payloads.
-- With a channel in $10 (the built-in `postgres` broker), the same statement also writes
-- the notice of every job it queued into broker_messages (body as `polyqueue.notices`
-- encodes it) and NOTIFYs that channel on commit: one round trip, one commit. $11 holds the
-- payloads' concurrency keys (flow control), or NULL.
WITH input AS (
    SELECT nextval(pg_get_serial_sequence('{schema}.jobs', 'id')) AS id, p.payload, p.ckey
    FROM unnest($3::text[], $11::text[]) WITH ORDINALITY AS p(payload, ckey, position)
    ORDER BY p.position
), inserted AS (
    INSERT INTO {schema}.jobs (
        id, name, queue, status, payload, headers, priority, max_attempts,
        max_run_seconds, timeout_strategy, run_at, concurrency_key
    ) OVERRIDING SYSTEM VALUE
    SELECT id, $1, $2,
           CASE WHEN $9::timestamptz > now() THEN 'scheduled' ELSE 'queued' END::{schema}.job_status,
           payload::jsonb, $4::jsonb, $5, $6, $7, $8, coalesce($9, now()), ckey
    FROM input
    ORDER BY id
    RETURNING id, status
), {{announce_inserted}}
SELECT id, status::text AS status, {{held_back_at_insert}} AS held_back,
       (SELECT count(pg_notify($10, $2)) FROM (SELECT FROM announced LIMIT 1) AS first_notice) AS woken
FROM inserted
ORDER BY id;

-- name: job_insert_one :one
-- Insert one job (`enqueue`), notice and NOTIFY included with a channel in $11, as
-- `job_insert_many` does, concurrency key $12; an idempotency key already taken returns the
-- older job.
-- Always one row; its id is NULL only if the key was taken by a transaction that
-- committed after this statement's snapshot.
WITH inserted AS (
    INSERT INTO {schema}.jobs (
        name, queue, status, payload, headers, priority, max_attempts,
        max_run_seconds, timeout_strategy, idempotency_key, run_at, concurrency_key
    )
    VALUES (
        $1, $2,
        CASE WHEN $10::timestamptz > now() THEN 'scheduled' ELSE 'queued' END::{schema}.job_status,
        $3::jsonb, $4::jsonb, $5, $6, $7, $8, $9, coalesce($10, now()), $12
    )
    ON CONFLICT (idempotency_key) WHERE idempotency_key IS NOT NULL DO NOTHING
    RETURNING id, status, queue, priority
), announced AS (
    INSERT INTO {schema}.broker_messages (queue, body, priority, available_at)
    SELECT queue, convert_to('{"job_id":' || id || '}', 'UTF8'), priority, now()
    FROM inserted
    WHERE $11::text IS NOT NULL AND status = 'queued' AND NOT {{held_back_at_insert}}
    RETURNING queue
)
SELECT coalesce(inserted.id, existing.id) AS id,
       inserted.id IS NOT NULL AS created,
       coalesce(inserted.status, existing.status)::text AS status,
       {{held_back_at_insert}} AS held_back,
       (SELECT count(pg_notify($11, announced.queue)) FROM announced) AS woken
FROM (VALUES (1)) AS one
LEFT JOIN inserted ON true
LEFT JOIN {schema}.jobs AS existing
       ON inserted.id IS NULL AND existing.idempotency_key = $9;

-- name: notice_sender :fragment
-- The notices that a broker keeping its messages in the jobs database sends in the statement
-- of `job_insert_batch` (`Broker.notice_sender` replaces this block): a query on `notices`
-- (queue, job_id, priority) returning the `job_id` of each notice it sent. None by default.
SELECT n.job_id FROM notices AS n WHERE false

-- name: job_insert_batch :many
-- Insert the jobs of many concurrent `enqueue` calls (`polyqueue.batching`) in one statement:
-- each job its own handler and options, none with an idempotency or unique key. $1 to $10
-- hold one array per column, one element per job; ids ascend in the order of the arrays.
-- Held back as `held_back_at_insert` says, per job. With a channel in $11 (the built-in
-- `postgres` broker), the notice of every job it queued goes into broker_messages and the
-- channel is NOTIFYd once per queue on commit, as `job_insert_many` does. Without one, a
-- broker with messages in this database sends them in `sent` (`notice_sender`), and
-- `notice_sent` says which it sent.
WITH input AS (
    SELECT nextval(pg_get_serial_sequence('{schema}.jobs', 'id')) AS id, j.*
    FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::int[], $6::int[],
                $7::double precision[], $8::text[], $9::timestamptz[], $10::text[])
         WITH ORDINALITY AS j(name, queue, payload, headers, priority, max_attempts,
                              max_run_seconds, timeout_strategy, run_at, ckey, position)
    ORDER BY j.position
), inserted AS (
    INSERT INTO {schema}.jobs (
        id, name, queue, status, payload, headers, priority, max_attempts,
        max_run_seconds, timeout_strategy, run_at, concurrency_key
    ) OVERRIDING SYSTEM VALUE
    SELECT id, name, queue,
           CASE WHEN run_at > now() THEN 'scheduled' ELSE 'queued' END::{schema}.job_status,
           payload::jsonb, headers::jsonb, priority, max_attempts, max_run_seconds,
           timeout_strategy, coalesce(run_at, now()), ckey
    FROM input
    ORDER BY id
    RETURNING id, name, queue, priority, status
), flagged AS (
    SELECT i.id, i.queue, i.priority, i.status,
           (EXISTS (SELECT FROM {schema}.paused_queues AS p WHERE p.queue = i.queue)
            OR EXISTS (SELECT FROM {schema}.flow_limits AS l
                       WHERE (l.scope = 'handler' AND l.name = i.name)
                          OR (l.scope = 'queue' AND l.name = i.queue))) AS held_back
    FROM inserted AS i
), announced AS (
    INSERT INTO {schema}.broker_messages (queue, body, priority, available_at)
    SELECT queue, convert_to('{"job_id":' || id || '}', 'UTF8'), priority, now()
    FROM flagged
    WHERE $11::text IS NOT NULL AND status = 'queued' AND NOT held_back
    ORDER BY id
    RETURNING queue
), notices AS (
    SELECT queue, id AS job_id, priority
    FROM flagged
    WHERE $11::text IS NULL AND status = 'queued' AND NOT held_back
), sent AS (
    {{notice_sender}}
)
SELECT id, status::text AS status, held_back,
       (SELECT count(pg_notify($11, woke.queue))
        FROM (SELECT DISTINCT queue FROM announced) AS woke) AS woken,
       id IN (SELECT job_id FROM sent) AS notice_sent
FROM flagged
ORDER BY id;

-- name: job_insert_unique :many
-- Insert the jobs of one enqueue call with unique keys ($11, one per payload in $3), as
-- `job_insert_many` does ($1 to $10; concurrency keys in $13). A key is held by the job whose `unique_key` it is
-- while that job is scheduled, queued or running, and until its `unique_until` (now + $12
-- seconds at its insert; NULL: no period). `released` first takes the keys away from the
-- jobs that no longer hold them; the insert then takes each free key once: the unique index
-- decides between concurrent producers, and rows go in key order so that producers of many
-- keys wait for each other in one order. One row per payload, in order: the new job, the
-- job of an earlier payload of this call with the same key, or the holder; its id is NULL
-- only if the holder committed after this statement began (`job_key_holders` reads it).
WITH released AS (
    UPDATE {schema}.jobs
    SET unique_key = NULL
    WHERE unique_key = ANY($11::text[])
      AND status NOT IN ('scheduled', 'queued', 'running')
      AND (unique_until IS NULL OR unique_until <= now())
    RETURNING 1
), input AS (
    SELECT nextval(pg_get_serial_sequence('{schema}.jobs', 'id')) AS id,
           p.payload, p.key, p.ckey, p.position
    FROM unnest($3::text[], $11::text[], $13::text[]) WITH ORDINALITY AS p(payload, key, ckey, position)
    WHERE (SELECT count(*) FROM released) >= 0  -- every release before the first insert
    ORDER BY p.position
), inserted AS (
    INSERT INTO {schema}.jobs (
        id, name, queue, status, payload, headers, priority, max_attempts,
        max_run_seconds, timeout_strategy, run_at, unique_key, unique_until, concurrency_key
    ) OVERRIDING SYSTEM VALUE
    SELECT id, $1, $2,
           CASE WHEN $9::timestamptz > now() THEN 'scheduled' ELSE 'queued' END::{schema}.job_status,
           payload::jsonb, $4::jsonb, $5, $6, $7, $8, coalesce($9, now()),
           key, now() + make_interval(secs => $12::double precision), ckey
    FROM input
    ORDER BY key, id
    ON CONFLICT (unique_key) WHERE unique_key IS NOT NULL DO NOTHING
    RETURNING id, status, unique_key
), {{announce_inserted}}
SELECT coalesce(mine.id, sibling.id, holder.id) AS id,
       mine.id IS NOT NULL AS created,
       coalesce(mine.status, sibling.status, holder.status)::text AS status,
       {{held_back_at_insert}} AS held_back,
       (SELECT count(pg_notify($10, $2)) FROM (SELECT FROM announced LIMIT 1) AS first_notice) AS woken
FROM input
LEFT JOIN inserted AS mine ON mine.id = input.id
LEFT JOIN inserted AS sibling ON mine.id IS NULL AND sibling.unique_key = input.key
LEFT JOIN {schema}.jobs AS holder
       ON mine.id IS NULL AND sibling.id IS NULL AND holder.unique_key = input.key
      AND (holder.status IN ('scheduled', 'queued', 'running') OR holder.unique_until > now())
ORDER BY input.position;

-- name: job_key_holders :many
-- The jobs holding the idempotency keys $1 or the unique keys $2 now: an insert reads them
-- when the holder committed after the insert's statement began.
SELECT id, status::text AS status, idempotency_key, unique_key
FROM {schema}.jobs
WHERE idempotency_key = ANY($1::text[]) OR unique_key = ANY($2::text[]);

-- name: claim_set :fragment
-- The claim of a queued job `j` for worker $1 with timeout grace $2 seconds: an attempt
-- counted, the heartbeat and the time limit started. Included by `job_claim_many` and by
-- the receive statement of a broker whose messages live in the jobs database.
SET status = 'running', attempt = j.attempt + 1, worker_id = $1, started_at = now(),
    notified_at = NULL, republishes = 0,
    heartbeat_at = now(), finished_at = NULL, progress = NULL, progress_message = NULL,
    timeout_at = CASE
        WHEN j.max_run_seconds IS NULL OR j.timeout_strategy = 'ignore' THEN NULL
        ELSE now() + make_interval(secs => j.max_run_seconds + $2)
    END

-- name: claim_unrestrained :fragment
-- Leaves out the queued job `c` while flow control holds it back (its queue paused, or a
-- limit of its handler or queue: only `flow_claim` in flow.sql starts those).
NOT EXISTS (SELECT FROM {schema}.paused_queues AS p WHERE p.queue = c.queue)
AND NOT EXISTS (
    SELECT FROM {schema}.flow_limits AS l
    WHERE (l.scope = 'handler' AND l.name = c.name) OR (l.scope = 'queue' AND l.name = c.queue)
)

-- name: claimed_columns :fragment
-- The columns of `polyqueue.job.ClaimedJob`, of the claimed job `j`.
j.id, j.name, j.queue, j.payload::text AS payload, j.headers::text AS headers, j.priority,
j.attempt, j.attempt_base, j.max_attempts, j.max_run_seconds, j.timeout_strategy, j.reclaims

-- name: claim_returning :fragment
-- What a claim returns: the columns of `polyqueue.job.ClaimedJob`.
RETURNING {{claimed_columns}}

-- name: job_claim_many :many
-- Claim the queued jobs among the ids $3 for worker $1 (timeout grace $2), counting an
-- attempt each. The status is compared as text so that only the primary key can find the
-- rows: with `status = 'queued'` the planner may walk a partial index of every queued job
-- instead, which it believes holds a handful when its statistics are older than the backlog
-- (a table of millions of finished rows is analyzed rarely): a scan of the whole backlog
-- per claim.
-- transition: queued -> running
UPDATE {schema}.jobs AS j
{{claim_set}}
WHERE j.id IN (
    SELECT id FROM {schema}.jobs AS c
    WHERE id = ANY($3::bigint[]) AND status::text IN ('queued') AND {{claim_unrestrained}}
    FOR UPDATE SKIP LOCKED
)
{{claim_returning}};

-- name: settle_dependents :fragment
-- The CTEs that settle the edges of the jobs in the CTE `finished(id, status, result)` (jobs
-- with dependents that just succeeded, failed or were cancelled), in the statement or the
-- transaction that stores their outcome: each dependent still `waiting` counts down one per
-- settled edge; a failed or cancelled dependency under the policy `cancel` cancels it, and
-- so on down the `cancel` edges; the edge that brings it to 0 releases it (`queued`, or
-- `scheduled` if its run_at is ahead; a chain step's payload becomes its dependency's
-- result). Dependents are locked in id order, so concurrent outcomes never deadlock, and a
-- concurrent settle of the same edge waits and finds it settled: a job is released once.
-- Jobs are looked up by id only (`= ANY(ARRAY(...))`, scalar subqueries), never joined as a
-- whole: a statement costs what it settles, however many jobs wait.
-- `released` is what was queued, `held_back` those flow control starts; with a channel in
-- $1 (the built-in `postgres` broker) the notices of the others are written and `woken`
-- NOTIFYs once per queue, and once the flow channel $2 if a released job is held back (the
-- workers look for held-back jobs then).
settled AS (
    UPDATE {schema}.job_dependencies AS e
    SET settled = true
    FROM finished AS f
    WHERE e.depends_on = ANY(ARRAY(SELECT id FROM finished)) AND e.depends_on = f.id
      AND NOT e.settled
    RETURNING e.job_id, e.depends_on, f.status, e.on_failure
), doomed AS (
    WITH RECURSIVE down (id) AS (
        SELECT s.job_id FROM settled AS s
        WHERE s.status <> 'succeeded' AND s.on_failure = 'cancel'
          AND (SELECT w.status FROM {schema}.jobs AS w WHERE w.id = s.job_id) = 'waiting'
        UNION
        SELECT e.job_id
        FROM down
        JOIN {schema}.job_dependencies AS e
          ON e.depends_on = down.id AND e.on_failure = 'cancel' AND NOT e.settled
        WHERE (SELECT w.status FROM {schema}.jobs AS w WHERE w.id = e.job_id) = 'waiting'
    )
    SELECT id FROM down
), doomed_settled AS (
    UPDATE {schema}.job_dependencies AS e
    SET settled = true
    WHERE e.depends_on = ANY(ARRAY(SELECT id FROM doomed)) AND NOT e.settled
    RETURNING e.job_id, e.depends_on, 'cancelled'::text AS status, e.on_failure
), tallies AS (
    SELECT a.job_id AS id, count(*)::integer AS arrived,
           min(a.depends_on) FILTER (WHERE a.status <> 'succeeded' AND a.on_failure = 'cancel')
               AS culprit
    FROM (SELECT * FROM settled UNION ALL SELECT * FROM doomed_settled) AS a
    GROUP BY a.job_id
), locked AS (
    SELECT w.id, w.status FROM {schema}.jobs AS w
    WHERE w.id = ANY(ARRAY(SELECT id FROM tallies))
    ORDER BY w.id
    FOR UPDATE
), changed AS (
    UPDATE {schema}.jobs AS j
    SET waiting_on = j.waiting_on - t.arrived,
        status = (CASE
            WHEN t.culprit IS NOT NULL THEN 'cancelled'
            WHEN j.waiting_on - t.arrived > 0 THEN 'waiting'
            WHEN j.run_at > now() THEN 'scheduled'
            ELSE 'queued' END)::{schema}.job_status,
        finished_at = CASE WHEN t.culprit IS NOT NULL THEN now() END,
        error_type = CASE WHEN t.culprit IS NOT NULL THEN 'DependencyFailedError' END,
        error_message = CASE WHEN t.culprit IS NOT NULL
            THEN format('cancelled: its dependency, job %s, did not succeed', t.culprit) END,
        notified_at = now(),
        payload = CASE
            WHEN j.payload_from IS NULL OR t.culprit IS NOT NULL OR j.waiting_on > t.arrived
            THEN j.payload
            ELSE coalesce((SELECT f.result FROM finished AS f WHERE f.id = j.payload_from),
                          (SELECT p.result FROM {schema}.jobs AS p WHERE p.id = j.payload_from),
                          'null'::jsonb) END
    FROM tallies AS t
    WHERE j.id = ANY(ARRAY(SELECT id FROM locked WHERE status IN ('waiting'))) AND j.id = t.id
    RETURNING j.id, j.name, j.queue, j.priority, j.status, j.run_at
), released AS (
    SELECT c.id, c.name, c.queue, c.priority, c.status::text AS status, c.run_at,
           NOT ({{claim_unrestrained}}) AS held_back
    FROM changed AS c
    WHERE c.status IN ('queued', 'scheduled')
), released_notices AS (
    INSERT INTO {schema}.broker_messages (queue, body, priority, available_at)
    SELECT r.queue, convert_to('{"job_id":' || r.id || '}', 'UTF8'), r.priority, now()
    FROM released AS r
    WHERE $1::text IS NOT NULL AND r.status = 'queued' AND NOT r.held_back
    ORDER BY r.id
    RETURNING queue
), woken AS (
    SELECT (SELECT count(pg_notify($1, q.queue))
            FROM (SELECT DISTINCT queue FROM released_notices) AS q)
         + (SELECT count(pg_notify($2, ''))
            FROM (SELECT FROM released AS r
                  WHERE $2::text IS NOT NULL AND r.status = 'queued' AND r.held_back
                  LIMIT 1) AS h) AS notices
)

-- name: job_complete_many :many
-- Record many outcomes of running attempts; a row whose attempt moved on is left alone.
-- A snoozed outcome ($9) is scheduled without using an attempt: `attempt_base` moves on, as
-- for a give-back. With receipts in $10 and $11 (the built-in `postgres` broker beside the
-- jobs; one per outcome, NULL for a job started without a notice), the same statement acks
-- the notices of the outcomes it stores, as `message_delete_many` does: one commit. The
-- notice of an outcome fenced off is made available again instead: its job may be queued
-- once more (its claim was lost in a crash, claims do not wait for the disk), and must not
-- lose its notice to an attempt that no longer counts. With a worker in $14, only the
-- attempts it claimed are stored: a claim lost in a server crash leaves its attempt number
-- to the next claim, so the attempt alone no longer tells two executions apart; the worker
-- does (a worker never claims a job it still holds, and claims under a new id once it was
-- declared dead, when its jobs are reclaimed).
-- A finished job with dependents settles their edges in this statement (`settle_dependents`,
-- channels $12 and $13): the rows with `released` true are the dependents it queued or
-- scheduled. The status is compared as text, as in `job_claim_many`: the jobs are found by
-- their primary key, never by a walk of the partial index of every running job, which the
-- planner believes empty when the table was analyzed while no job ran.
-- transition: running -> succeeded | failed | scheduled
WITH completed AS (
    UPDATE {schema}.jobs AS j
    SET status = o.status::{schema}.job_status,
        result = coalesce(o.result::jsonb, j.result),
        error_type = coalesce(o.error_type, j.error_type),
        error_message = coalesce(o.error_message, j.error_message),
        error_traceback = coalesce(o.error_traceback, j.error_traceback),
        errors = CASE WHEN o.error_type IS NULL THEN j.errors
                      ELSE j.errors || jsonb_build_array(jsonb_build_object(
                          'attempt', j.attempt, 'at', now(), 'worker', j.worker_id,
                          'type', o.error_type, 'message', o.error_message)) END,
        run_at = CASE WHEN o.status = 'scheduled'
                      THEN now() + make_interval(secs => o.delay) ELSE j.run_at END,
        attempt_base = j.attempt_base + (o.status = 'scheduled' AND o.snoozed)::integer,
        finished_at = CASE WHEN o.status = 'scheduled' THEN NULL ELSE now() END,
        worker_id = CASE WHEN o.status = 'scheduled' THEN NULL ELSE j.worker_id END,
        timeout_at = NULL
    FROM unnest(
        $1::bigint[], $2::integer[], $3::text[], $4::text[], $5::text[], $6::text[], $7::text[],
        $8::double precision[], $9::boolean[]
    ) AS o(id, attempt, status, result, error_type, error_message, error_traceback, delay, snoozed)
    WHERE j.id = o.id AND j.attempt = o.attempt AND j.status::text IN ('running')
      AND o.status IN ('succeeded', 'failed', 'scheduled')
      AND ($14::text IS NULL OR j.worker_id = $14)
    RETURNING j.id, j.status, j.run_at, j.has_dependents,
              CASE WHEN j.has_dependents THEN j.result END AS result
), receipts AS (
    SELECT r.id, r.deliveries, r.job_id IN (SELECT id FROM completed) AS stored
    FROM unnest($1::bigint[], $10::bigint[], $11::integer[]) AS r(job_id, id, deliveries)
    WHERE r.id IS NOT NULL
), acked AS (
    DELETE FROM {schema}.broker_messages AS m
    USING receipts AS r
    WHERE m.id = r.id AND m.deliveries = r.deliveries AND r.stored
), fenced_off AS (
    UPDATE {schema}.broker_messages AS m
    SET available_at = now()
    FROM receipts AS r
    WHERE m.id = r.id AND m.deliveries = r.deliveries AND NOT r.stored
), finished AS (
    SELECT id, status::text AS status, result FROM completed
    WHERE has_dependents AND status IN ('succeeded', 'failed')
), {{settle_dependents +11}}
SELECT c.id, c.status::text AS status, c.run_at, false AS released, NULL::text AS queue,
       NULL::integer AS priority, false AS held_back, (SELECT notices FROM woken) AS woken
FROM completed AS c
UNION ALL
SELECT r.id, r.status, r.run_at, true, r.queue, r.priority, r.held_back, 0
FROM released AS r;

-- name: job_release_many :many
-- Give running attempts back at shutdown; a given-back attempt does not count. With a
-- worker in $3, only the attempts it claimed (see `job_complete_many`).
-- transition: running -> queued
UPDATE {schema}.jobs AS j
SET status = 'queued', attempt_base = j.attempt_base + 1, worker_id = NULL,
    timeout_at = NULL, run_at = now()
FROM unnest($1::bigint[], $2::integer[]) AS r(id, attempt)
WHERE j.id = r.id AND j.attempt = r.attempt AND j.status IN ('running')
  AND ($3::text IS NULL OR j.worker_id = $3)
RETURNING j.id;

-- name: job_heartbeat_many :many
-- Mark running attempts alive; ids missing from the result are no longer this worker's.
-- With a worker in $3, only the attempts it claimed (see `job_complete_many`). The status
-- is compared as text: found by primary key (see `job_complete_many`).
UPDATE {schema}.jobs AS j
SET heartbeat_at = now()
FROM unnest($1::bigint[], $2::integer[]) AS h(id, attempt)
WHERE j.id = h.id AND j.attempt = h.attempt AND j.status::text = 'running'
  AND ($3::text IS NULL OR j.worker_id = $3)
RETURNING j.id;

-- name: job_progress :one
-- Store a running attempt's progress; it also counts as a heartbeat. With a worker in $5,
-- only an attempt it claimed (see `job_complete_many`).
UPDATE {schema}.jobs
SET progress = $3, progress_message = $4, heartbeat_at = now()
WHERE id = $1 AND attempt = $2 AND status = 'running' AND ($5::text IS NULL OR worker_id = $5)
RETURNING id;

-- name: job_promote_due :many
-- Move due scheduled jobs to queued, oldest first, at most $1 of them.
-- transition: scheduled -> queued
UPDATE {schema}.jobs AS j
SET status = 'queued', notified_at = now()
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
SELECT id, name, queue, status::text AS status, payload::text AS payload, reclaims,
       result::text AS result, headers::text AS headers, priority, attempt, attempt_base,
       max_attempts, max_run_seconds, timeout_strategy, idempotency_key, run_at,
       error_type, error_message, error_traceback, progress, progress_message, worker_id,
       created_at, started_at, heartbeat_at, timeout_at, finished_at
FROM {schema}.jobs
WHERE id = $1;

-- name: job_status_many :many
-- The status of each of these jobs (for wait_for).
SELECT id, status::text AS status FROM {schema}.jobs WHERE id = ANY($1::bigint[]);

-- name: job_cancel_many :many
-- Cancel the unfinished jobs among $1; running workers are told on the cancel channel.
-- transition: waiting, scheduled, queued, running -> cancelled
UPDATE {schema}.jobs
SET status = 'cancelled', finished_at = now(), timeout_at = NULL
WHERE id = ANY($1::bigint[]) AND status IN ('waiting', 'scheduled', 'queued', 'running')
RETURNING id, worker_id;

-- name: job_requeue_many :many
-- Queue the failed, cancelled or running jobs among $1 again with a fresh budget of attempts;
-- returns the worker that was running each, so it can be told to stop.
-- transition: failed, cancelled, running -> queued
UPDATE {schema}.jobs AS j
SET status = 'queued', attempt_base = j.attempt, run_at = now(), finished_at = NULL,
    worker_id = NULL, timeout_at = NULL, result = NULL, reclaims = 0, notified_at = NULL
FROM (
    SELECT id, worker_id FROM {schema}.jobs
    WHERE id = ANY($1::bigint[]) AND status IN ('failed', 'cancelled', 'running')
    FOR UPDATE
) AS previous
WHERE j.id = previous.id AND j.status IN ('failed', 'cancelled', 'running')
RETURNING j.id, j.queue, j.priority, previous.worker_id;

-- name: job_fail_many :many
-- Fail the unfinished jobs among $1 by an operator's decision, with the reason $2.
-- transition: waiting, scheduled, queued, running -> failed
UPDATE {schema}.jobs
SET status = 'failed', finished_at = now(), timeout_at = NULL,
    error_type = 'FailedByOperator', error_message = $2, error_traceback = NULL
WHERE id = ANY($1::bigint[]) AND status IN ('waiting', 'scheduled', 'queued', 'running')
RETURNING id, worker_id;

-- name: job_find :many
-- Jobs matching the optional filters (statuses, queue, name, created since), newest first.
SELECT id, name, queue, status::text AS status, attempt, max_attempts, priority,
       created_at, run_at, started_at, finished_at, worker_id, error_type, error_message
FROM {schema}.jobs
WHERE ($1::text[] IS NULL OR status::text = ANY($1::text[]))
  AND ($2::text IS NULL OR queue = $2)
  AND ($3::text IS NULL OR name = $3)
  AND ($4::timestamptz IS NULL OR created_at >= $4)
ORDER BY id DESC
LIMIT $5;

-- name: custom_plans :exec
-- Plan each statement of this transaction for its parameters (`JobStore.fetch_planned`).
-- A generic plan cannot drop the filters that are not given (`$2 IS NULL OR queue = $2`),
-- and guesses that a third of the table is newer than `now() - $1`: on a table of millions
-- of finished jobs whose rows no longer lie in finishing order (after a prune and refill),
-- that guess reads the whole table instead of the index of finished jobs.
SET LOCAL plan_cache_mode = force_custom_plan;

-- name: job_stats :many
-- Per queue and status: how many jobs, the oldest queued one's age, and finishes in $1 s.
-- Every status but `succeeded` is counted exactly, through the (status, queue) index (the
-- statuses are written out: the planner estimates a literal list from its statistics, but
-- guesses for an array computed at run time and may read the whole table); so is
-- `succeeded` while the planner counts under a million rows in the table. Above that, an
-- exact count would read millions of rows (seconds): the succeeded jobs are counted in a
-- 0.1% sample of the table's pages (1% read 2,000 random pages of a 5M-row table: most of a
-- second from a cold cache) and scaled up (`estimated`), their finishes in $1 s still
-- exactly (index on finished_at; run through `fetch_planned`, see `custom_plans`).
WITH big AS (
    SELECT c.reltuples >= 1000000 AS yes FROM pg_class AS c
    WHERE c.oid = '{schema}.jobs'::regclass
), sampled AS (
    SELECT queue, (count(*) * 1000)::bigint AS jobs
    FROM {schema}.jobs TABLESAMPLE SYSTEM (0.1)
    WHERE status = 'succeeded' AND (SELECT yes FROM big)
    GROUP BY queue
), finishing AS (
    SELECT queue, count(*) AS recent
    FROM {schema}.jobs
    WHERE status = 'succeeded' AND finished_at > now() - make_interval(secs => $1)
      AND (SELECT yes FROM big)
    GROUP BY queue
), counted AS (
    SELECT queue, status, count(*) AS jobs, false AS estimated,
           extract(epoch FROM now() - min(run_at) FILTER (WHERE status = 'queued')) AS oldest_age,
           count(*) FILTER (WHERE finished_at > now() - make_interval(secs => $1)) AS recent
    FROM {schema}.jobs
    WHERE status IN ('scheduled', 'waiting', 'queued', 'running', 'failed', 'cancelled')
    GROUP BY queue, status
    UNION ALL
    SELECT queue, status, count(*), false, NULL,
           count(*) FILTER (WHERE finished_at > now() - make_interval(secs => $1))
    FROM {schema}.jobs
    WHERE status = 'succeeded' AND NOT (SELECT yes FROM big)
    GROUP BY queue, status
    UNION ALL
    SELECT coalesce(s.queue, f.queue), 'succeeded'::{schema}.job_status,
           greatest(coalesce(s.jobs, 0), coalesce(f.recent, 0)), true, NULL, coalesce(f.recent, 0)
    FROM sampled AS s
    FULL JOIN finishing AS f ON f.queue = s.queue
)
SELECT queue, status::text AS status, jobs, estimated, oldest_age, recent
FROM counted
ORDER BY queue, status;

-- name: worker_list :many
-- Registered workers with their current job count and heartbeat age, newest first.
SELECT w.id, w.hostname, w.pid, w.queues, w.concurrency, w.status, w.started_at,
       w.stopped_at, extract(epoch FROM now() - w.heartbeat_at) AS heartbeat_age,
       (SELECT count(*) FROM {schema}.jobs AS j
        WHERE j.worker_id = w.id AND j.status = 'running') AS current_jobs
FROM {schema}.workers AS w
ORDER BY w.started_at DESC
LIMIT $1;

-- name: worker_register :exec
-- Add a worker to the registry as running.
INSERT INTO {schema}.workers (id, hostname, pid, queues, concurrency, current_jobs)
VALUES ($1, $2, $3, $4::text[], $5, $6);

-- name: worker_heartbeat :one
-- Mark a running worker alive with its number of current jobs. A worker whose row is
-- missing (the reply to its registration was lost) is registered by its heartbeat. No row
-- comes back for a worker that is no longer running: declared dead, it must not come back
-- to life under that id, but register a new one.
INSERT INTO {schema}.workers AS w (id, hostname, pid, queues, concurrency, current_jobs)
VALUES ($1, $2, $3, $4::text[], $5, $6)
ON CONFLICT (id) DO UPDATE
SET heartbeat_at = now(), current_jobs = excluded.current_jobs
WHERE w.status = 'running'
RETURNING w.id;

-- name: worker_stop :exec
-- Mark a worker stopped after a clean exit.
UPDATE {schema}.workers
SET status = 'stopped', stopped_at = now(), current_jobs = 0
WHERE id = $1;

-- name: notify :exec
-- Send a notification on a channel; delivered when the surrounding transaction commits.
SELECT pg_notify($1, $2);

-- name: maintenance_lock :one
-- Try to become this round's maintenance leader (held until the transaction ends).
SELECT pg_try_advisory_xact_lock(hashtext('polyqueue.maintenance:' || $1)) AS leader;

-- name: maintenance_guard :exec
-- End this round's session if it idles $1 ms inside its transaction (a leader whose event
-- loop is blocked), so the lock is released and another worker can lead.
SELECT set_config('idle_in_transaction_session_timeout', $1, true);

-- name: worker_reap :many
-- Mark running workers with no heartbeat for $1 seconds dead.
UPDATE {schema}.workers
SET status = 'dead', stopped_at = now(), current_jobs = 0
WHERE status = 'running' AND heartbeat_at < now() - make_interval(secs => $1)
RETURNING id;

-- name: job_reclaim :many
-- Queue again the running jobs that no worker holds (the attempt counts): those of workers
-- that are no longer running, and those whose own heartbeat is older than $2 seconds (a
-- live worker heartbeats every job it runs, so such a job was claimed by a statement whose
-- reply never reached its worker: the claim committed as the connection died).
-- transition: running -> queued
UPDATE {schema}.jobs AS j
SET status = 'queued', reclaims = j.reclaims + 1, worker_id = NULL, timeout_at = NULL,
    run_at = now(), notified_at = NULL,
    errors = j.errors || jsonb_build_array(jsonb_build_object(
        'attempt', j.attempt, 'at', now(), 'worker', j.worker_id,
        'type', 'WorkerLost', 'message', 'its worker was lost; queued again'))
WHERE j.status IN ('running') AND j.reclaims + 1 < $1
  AND (
      j.heartbeat_at < now() - make_interval(secs => $2)
      OR NOT EXISTS (
          SELECT 1 FROM {schema}.workers AS w WHERE w.id = j.worker_id AND w.status = 'running'
      )
  )
RETURNING j.id, j.queue, j.priority;

-- name: job_fail_poison :many
-- Fail running jobs that no worker holds (as `job_reclaim` finds them, $2 the heartbeat
-- age) for the $1-th time: they keep killing their workers.
-- transition: running -> failed
UPDATE {schema}.jobs AS j
SET status = 'failed', reclaims = j.reclaims + 1, finished_at = now(), timeout_at = NULL,
    error_type = 'PoisonJobError',
    error_message = format('the job killed its worker %s times (max_reclaims); not retried',
                           j.reclaims + 1),
    error_traceback = NULL,
    errors = j.errors || jsonb_build_array(jsonb_build_object(
        'attempt', j.attempt, 'at', now(), 'worker', j.worker_id,
        'type', 'PoisonJobError',
        'message', format('the job killed its worker %s times', j.reclaims + 1)))
WHERE j.status IN ('running') AND j.reclaims + 1 >= $1
  AND (
      j.heartbeat_at < now() - make_interval(secs => $2)
      OR NOT EXISTS (
          SELECT 1 FROM {schema}.workers AS w WHERE w.id = j.worker_id AND w.status = 'running'
      )
  )
RETURNING j.id;

-- name: job_expire_timeouts :many
-- Apply the timeout strategy to running jobs past timeout_at (a wedged worker's jobs):
-- retry after a full-jitter backoff ($1 base, $2 cap) while attempts are left, else fail.
-- transition: running -> scheduled | failed
UPDATE {schema}.jobs AS j
SET status = CASE
        WHEN j.timeout_strategy = 'retry' AND j.attempt - j.attempt_base < j.max_attempts
        THEN 'scheduled' ELSE 'failed' END::{schema}.job_status,
    run_at = now() + make_interval(
        secs => random() * least($2, $1 * 2 ^ least(j.attempt - j.attempt_base - 1, 62))),
    finished_at = CASE
        WHEN j.timeout_strategy = 'retry' AND j.attempt - j.attempt_base < j.max_attempts
        THEN NULL ELSE now() END,
    error_type = 'TimeoutError',
    error_message = format('job exceeded its time limit of %ss; stopped by the database backstop',
                           j.max_run_seconds),
    errors = j.errors || jsonb_build_array(jsonb_build_object(
        'attempt', j.attempt, 'at', now(), 'worker', j.worker_id,
        'type', 'TimeoutError',
        'message', format('exceeded its time limit of %ss', j.max_run_seconds))),
    error_traceback = NULL, worker_id = NULL, timeout_at = NULL
WHERE j.id IN (
    SELECT id FROM {schema}.jobs
    WHERE status IN ('running') AND timeout_at < now()
    ORDER BY timeout_at
    LIMIT $3
    FOR UPDATE SKIP LOCKED
)
RETURNING j.id, j.status::text AS status;

-- name: job_republish_stale :many
-- Queued jobs whose notice may be lost: waiting since queued or last republished for over
-- $1 seconds, doubled with each republish of this wait (at most 32 times $1), so a long
-- backlog is not rung for again every round. Jobs held back by flow control need no notice:
-- they start through `flow_claim`.
UPDATE {schema}.jobs AS j
SET notified_at = now(), republishes = j.republishes + 1
WHERE j.id IN (
    SELECT id FROM {schema}.jobs AS c
    WHERE status = 'queued' AND {{claim_unrestrained}}
      AND coalesce(notified_at, run_at)
          < now() - make_interval(secs => $1 * 2 ^ least(republishes, 5))
    ORDER BY run_at
    LIMIT $2
    FOR UPDATE SKIP LOCKED
)
RETURNING j.id, j.queue, j.priority;

-- name: job_prune :one
-- Delete up to $4 finished jobs of each status older than its retention ($1..$3 seconds). The
-- rows are locked and their status checked again as they are deleted, so a job an operator
-- requeued meanwhile is never deleted. The edges a deleted job waited on go with it, and a
-- workflow with its last job. The check again compares statuses as text, so that the rows
-- are found by their primary key: on the index of finished jobs, the planner would walk
-- every prunable row (millions, in a backlog) for each batch.
WITH doomed_succeeded AS (
    SELECT id FROM {schema}.jobs
    WHERE status = 'succeeded' AND finished_at < now() - make_interval(secs => $1)
    ORDER BY finished_at
    LIMIT $4
    FOR UPDATE SKIP LOCKED
), doomed_failed AS (
    SELECT id FROM {schema}.jobs
    WHERE status = 'failed' AND finished_at < now() - make_interval(secs => $2)
    ORDER BY finished_at
    LIMIT $4
    FOR UPDATE SKIP LOCKED
), doomed_cancelled AS (
    SELECT id FROM {schema}.jobs
    WHERE status = 'cancelled' AND finished_at < now() - make_interval(secs => $3)
    ORDER BY finished_at
    LIMIT $4
    FOR UPDATE SKIP LOCKED
), doomed AS (  -- one ordered index scan per status, each stopping at $4 rows
    SELECT id FROM doomed_succeeded
    UNION ALL SELECT id FROM doomed_failed
    UNION ALL SELECT id FROM doomed_cancelled
), deleted AS (
    DELETE FROM {schema}.jobs AS j
    WHERE j.id IN (SELECT id FROM doomed)
      AND ((j.status::text = 'succeeded' AND j.finished_at < now() - make_interval(secs => $1))
        OR (j.status::text = 'failed' AND j.finished_at < now() - make_interval(secs => $2))
        OR (j.status::text = 'cancelled' AND j.finished_at < now() - make_interval(secs => $3)))
    RETURNING j.id, j.workflow_id
), edges AS (
    DELETE FROM {schema}.job_dependencies AS e
    WHERE e.job_id IN (SELECT id FROM deleted)
), emptied AS (
    DELETE FROM {schema}.workflows AS w
    USING (SELECT workflow_id, count(*) AS jobs FROM deleted
           WHERE workflow_id IS NOT NULL GROUP BY workflow_id) AS d
    WHERE w.id = d.workflow_id
      AND (SELECT count(*) FROM {schema}.jobs AS k WHERE k.workflow_id = w.id) = d.jobs
)
SELECT count(*) AS deleted FROM deleted;

-- name: worker_prune :one
-- Delete the rows of workers stopped or dead for over $1 seconds.
WITH deleted AS (
    DELETE FROM {schema}.workers
    WHERE status IN ('stopped', 'dead') AND stopped_at < now() - make_interval(secs => $1)
    RETURNING 1
)
SELECT count(*) AS deleted FROM deleted;

-- name: cron_last_ticks :many
-- The last fired tick of each named schedule that has one.
SELECT name, last_tick FROM {schema}.cron_schedules WHERE name = ANY($1::text[]);

-- name: cron_advance :exec
-- Store a schedule's last fired tick (never moving it backwards).
INSERT INTO {schema}.cron_schedules (name, expression, last_tick)
VALUES ($1, $2, $3)
ON CONFLICT (name) DO UPDATE
SET expression = excluded.expression, updated_at = now(),
    last_tick = greatest({schema}.cron_schedules.last_tick, excluded.last_tick);
