-- The built-in `postgres` broker: notices as rows, leased with FOR UPDATE SKIP LOCKED.
-- A row is available when available_at <= now(); a lease pushes available_at into the
-- future and bumps `deliveries`, which with the id forms the receipt of that delivery
-- (wrapping at the integer limit, so a row written by hand with deliveries = 2^31 - 1 is
-- leased like any other instead of failing every receive of its queue).

-- name: message_send_many :exec
-- Insert messages and wake listeners of their queues (on commit).
WITH sent AS (
    INSERT INTO {schema}.broker_messages (queue, body, priority, available_at)
    SELECT m.queue, m.body, m.priority, now() + make_interval(secs => m.delay)
    FROM unnest($1::text[], $2::bytea[], $3::integer[], $4::double precision[])
         AS m(queue, body, priority, delay)
    RETURNING queue
)
SELECT pg_notify($5, queue) FROM (SELECT DISTINCT queue FROM sent) AS queues;

-- name: message_lease :fragment
-- Lease up to $2 available messages of the queues $1 for $3 seconds, highest priority
-- first: one ordered index scan per queue, stopping at $2 rows, never a sort of the whole
-- backlog. Included by `message_receive` and `message_receive_claiming`. The leased ids
-- are gathered into an array first, so the rows are updated by their primary key whatever
-- the statistics: with `m.id IN (subquery)` a generic plan cannot see the LIMIT, and once
-- the table had been analyzed with a backlog in it, it joined the subquery to a scan of
-- every notice, a scan per receive.
UPDATE {schema}.broker_messages AS m
SET available_at = now() + make_interval(secs => $3), deliveries = m.deliveries % 2147483647 + 1
WHERE m.id = ANY(ARRAY(
    SELECT ready.id
    FROM unnest($1::text[]) AS q(name)
    CROSS JOIN LATERAL (
        SELECT id, priority, available_at FROM {schema}.broker_messages
        WHERE queue = q.name AND available_at <= now()
        ORDER BY priority DESC, available_at, id
        LIMIT $2
        FOR UPDATE SKIP LOCKED
    ) AS ready
    ORDER BY ready.priority DESC, ready.available_at, ready.id
    LIMIT $2
))

-- name: message_receive :many
-- Lease up to $2 available messages of the queues $1 for $3 seconds (RETURNING does not
-- keep the lease's order: the caller sorts by priority, then id).
{{message_lease}}
RETURNING m.id, m.queue, m.body, m.deliveries, m.priority;

-- name: message_receive_claiming :many
-- Receive and claim in one statement, so picking up a job costs one commit instead of two:
-- lease up to $5 ready messages of the queues $4 for $6 seconds as `message_receive` does,
-- and claim their queued jobs for worker $1 (timeout grace $2) with the core's claim,
-- except the jobs in $3 (this worker still holds an attempt of them). One row per leased
-- message: job_id is NULL when the body is not a notice as `polyqueue.notices` writes it,
-- the job's columns are NULL unless claimed. The status is compared as text, as in
-- `job_claim_many`, so that the jobs are found by their primary key whatever the statistics.
-- transition: queued -> running
WITH leased AS (
    {{message_lease +3}}
    RETURNING m.id, m.queue, m.body, m.deliveries, m.priority,
              substring(encode(m.body, 'escape') FROM '^\{"job_id":([1-9][0-9]{0,17})\}$')::bigint
                  AS job_id
), claimed AS (
    UPDATE {schema}.jobs AS j
    {{claim_set}}
    WHERE j.id IN (
        SELECT id FROM {schema}.jobs AS c
        WHERE id IN (SELECT job_id FROM leased) AND id <> ALL($3::bigint[])
          AND status::text IN ('queued') AND {{claim_unrestrained}}
        FOR UPDATE SKIP LOCKED
    )
    {{claim_returning}}
)
SELECT leased.id AS message_id, leased.queue AS message_queue, leased.body AS message_body,
       leased.deliveries AS message_deliveries, leased.priority AS message_priority,
       leased.job_id, claimed.*
FROM leased
LEFT JOIN claimed ON claimed.id = leased.job_id
ORDER BY leased.priority DESC, leased.id;

-- name: message_delete_many :exec
-- Delete delivered messages; a receipt whose delivery was superseded deletes nothing.
DELETE FROM {schema}.broker_messages AS m
USING unnest($1::bigint[], $2::integer[]) AS r(id, deliveries)
WHERE m.id = r.id AND m.deliveries = r.deliveries;

-- name: message_set_available_many :exec
-- Make delivered messages available $3 seconds from now (nack, or extend a lease).
UPDATE {schema}.broker_messages AS m
SET available_at = now() + make_interval(secs => $3)
FROM unnest($1::bigint[], $2::integer[]) AS r(id, deliveries)
WHERE m.id = r.id AND m.deliveries = r.deliveries;

-- name: message_held :many
-- Which of these (queue, body) messages are still in the table (published, not yet acked).
SELECT DISTINCT m.queue, m.body
FROM {schema}.broker_messages AS m
JOIN unnest($1::text[], $2::bytea[]) AS w(queue, body) ON m.queue = w.queue AND m.body = w.body;
