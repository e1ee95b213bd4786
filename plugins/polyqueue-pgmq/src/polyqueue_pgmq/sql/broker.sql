-- The PGMQ broker's statements. PGMQ always lives in the schema `pgmq`.
-- `{queue_table}` and `{archive_table}` are replaced by a queue's quoted tables
-- (`pgmq."q_<name>"`, `pgmq."a_<name>"`): PGMQ's own functions cannot check `read_ct`.

-- name: pgmq_state :one
-- Is PGMQ here, does the server offer the extension, and does PGMQ take message headers?
SELECT
    to_regclass('pgmq.meta') IS NOT NULL AS installed,
    EXISTS (SELECT 1 FROM pg_available_extensions WHERE name = 'pgmq') AS available,
    (SELECT extversion FROM pg_extension WHERE extname = 'pgmq') AS extension_version,
    to_regprocedure(
        'pgmq.send_batch(text, jsonb[], jsonb[], timestamp with time zone)'
    ) IS NOT NULL AS has_headers

-- name: pgmq_install_lock :exec
-- Serialise installs across processes until the end of the transaction.
SELECT pg_advisory_xact_lock(hashtext('polyqueue_pgmq.install'))

-- name: pgmq_create_extension :exec
-- Install PGMQ as an extension (the server must offer it and allow this role).
CREATE EXTENSION IF NOT EXISTS pgmq

-- name: queue_existing :many
-- Which of the named PGMQ queues exist.
SELECT queue_name FROM pgmq.meta WHERE queue_name = ANY($1::text[])

-- name: queue_create :exec
-- Create a PGMQ queue (idempotent, under PGMQ's own per-queue lock).
SELECT pgmq.create($1)

-- name: message_send_many :exec
-- Send messages (JSON text, headers as JSON text) to one queue, visible after $4 seconds; notify $5.
SELECT pg_notify($5, $1)
FROM (
    SELECT count(*)
    FROM pgmq.send_batch(
        $1, $2::text[]::jsonb[], $3::text[]::jsonb[],
        clock_timestamp() + make_interval(secs => $4)
    )
) AS sent

-- name: notice_sender :many
-- Not run on its own: the core's statement that inserts single jobs includes it
-- (`Broker.notice_sender`) to send the notices of its relation `notices` (queue, job_id,
-- priority) in the same transaction: one `pgmq.send_batch` and one NOTIFY of {channel} per
-- queue, bodies as `polyqueue.notices` encodes them; returns the job ids whose notice it sent.
-- {prefix} is the broker's queue prefix. A queue without a table (dropped by hand) is
-- skipped, and the core publishes its notices after the commit, which creates it again.
SELECT unnest(q.job_ids) AS job_id
FROM (
    SELECT {prefix} || n.queue AS name, array_agg(n.job_id ORDER BY n.job_id) AS job_ids
    FROM notices AS n
    GROUP BY n.queue
    HAVING to_regclass(format('pgmq.%I', 'q_' || {prefix} || n.queue)) IS NOT NULL
) AS q
CROSS JOIN LATERAL (
    SELECT pg_notify({channel}, q.name)
    FROM (
        SELECT count(*)
        FROM pgmq.send_batch(
            q.name,
            ARRAY(SELECT jsonb_build_object('job_id', j.id)
                  FROM unnest(q.job_ids) WITH ORDINALITY AS j (id, position)
                  ORDER BY j.position),
            array_fill(NULL::jsonb, ARRAY[cardinality(q.job_ids)]),
            clock_timestamp()
        )
    ) AS sent
) AS notified

-- name: message_read :many
-- Read up to $3 visible messages of one queue, hiding them for $2 whole seconds.
SELECT msg_id, read_ct, message::text AS message, headers::text AS headers
FROM pgmq.read($1, $2, $3)

-- name: message_delete_many :exec
-- Delete messages, each only while its read count still matches the receipt.
DELETE FROM {queue_table} AS q
USING unnest($1::bigint[], $2::integer[]) AS r (msg_id, read_ct)
WHERE q.msg_id = r.msg_id AND q.read_ct = r.read_ct

-- name: message_delete_unreadable :many
-- Delete the messages `pgmq.read` cannot read: read_ct at the integer limit (written by hand).
DELETE FROM {queue_table}
WHERE read_ct >= 2147483647
RETURNING msg_id

-- name: message_archive_many :exec
-- Move messages to the archive table, each only while its read count still matches.
WITH archived AS (
    DELETE FROM {queue_table} AS q
    USING unnest($1::bigint[], $2::integer[]) AS r (msg_id, read_ct)
    WHERE q.msg_id = r.msg_id AND q.read_ct = r.read_ct
    RETURNING q.msg_id, q.vt, q.read_ct, q.enqueued_at, q.last_read_at, q.message, q.headers
)
INSERT INTO {archive_table} (msg_id, vt, read_ct, enqueued_at, last_read_at, message, headers)
SELECT msg_id, vt, read_ct, enqueued_at, last_read_at, message, headers FROM archived

-- name: message_set_vt_many :exec
-- Make messages visible $3 seconds from now, each only while its read count still matches.
UPDATE {queue_table} AS q
SET vt = clock_timestamp() + make_interval(secs => $3)
FROM unnest($1::bigint[], $2::integer[]) AS r (msg_id, read_ct)
WHERE q.msg_id = r.msg_id AND q.read_ct = r.read_ct

-- name: queue_notify :exec
-- Wake the receivers waiting on this broker's channel (payload: the PGMQ queue name).
SELECT pg_notify($1, $2)

-- name: message_held :many
-- Which of these message texts ($1) one queue still holds (sent and not yet deleted).
SELECT w.message
FROM unnest($1::text[]) AS w(message)
WHERE EXISTS (SELECT 1 FROM {queue_table} AS q WHERE q.message = w.message::jsonb)
