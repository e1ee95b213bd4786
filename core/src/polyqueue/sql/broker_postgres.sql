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

-- name: message_receive :many
-- Lease up to $2 available messages of the queues $1 for $3 seconds, highest priority first
-- (RETURNING does not keep the subquery's order: the caller sorts by priority, then id).
-- One ordered index scan per queue, stopping at $2 rows: never a sort of the whole backlog.
UPDATE {schema}.broker_messages AS m
SET available_at = now() + make_interval(secs => $3), deliveries = m.deliveries % 2147483647 + 1
WHERE m.id IN (
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
)
RETURNING m.id, m.queue, m.body, m.deliveries, m.priority;

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
