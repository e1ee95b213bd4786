-- Workflows: jobs that wait for other jobs. Each block is called by the WorkflowQueries
-- method of the same name (polyqueue.store.workflows).
--
-- An edge (job_dependencies) says a job waits for another. A job with edges is inserted
-- `waiting`, `waiting_on` its number of edges; its dependencies are marked `has_dependents`.
-- When a dependency finishes, its edges are settled in the statement (job_complete_many) or
-- the transaction (dependency_settle) that stores its outcome, by the `settle_dependents`
-- fragment of queries.sql; the edge that counts a job down to 0 releases it. Settling is
-- idempotent (an edge is settled once), so `dependency_settle` may run again at any time:
-- after an insert whose dependencies were finished or finishing, and in maintenance
-- (`dependency_settle_stale`) for anything a crash left behind.

-- name: workflow_insert :one
-- Insert the jobs of one workflow (or of one enqueue call with `depends_on`) and their edges
-- in one statement. Per node ($1 to $13): handler, queue, payload (NULL: taken from the
-- result of node $11 when released), headers, priority, max_attempts, max_run_seconds,
-- timeout_strategy, run_at, concurrency key, payload_from (a node's position, 1-based),
-- number of edges, has dependents. Per edge ($14 to $17): the dependent's position, the
-- dependency's position or (NULL) the existing job $16, the failure policy. $18: the
-- workflow's name (NULL: no workflow row), $19 its policy, $20 the existing jobs depended on
-- (distinct), $21 the `postgres` broker's channel (notices as `job_insert_many` writes
-- them), $22 the flow channel, NOTIFYed if a job it queued is held back by flow control.
-- If an id in $20 names no job, nothing is written and `missing` lists them.
WITH known AS (
    SELECT id FROM {schema}.jobs WHERE id = ANY($20::bigint[])
), missing AS (
    SELECT x.id FROM unnest($20::bigint[]) AS x(id)
    EXCEPT
    SELECT id FROM known
), go AS (
    SELECT NOT EXISTS (SELECT FROM missing) AS ok
), marked AS (
    UPDATE {schema}.jobs
    SET has_dependents = true
    WHERE id = ANY(ARRAY(SELECT id FROM known)) AND NOT has_dependents AND (SELECT ok FROM go)
    RETURNING id
), flow AS (
    INSERT INTO {schema}.workflows (name, on_failure, nodes)
    SELECT $18, $19, cardinality($1::text[])
    WHERE $18::text IS NOT NULL AND (SELECT ok FROM go)
    RETURNING id
), input AS (
    SELECT nextval(pg_get_serial_sequence('{schema}.jobs', 'id')) AS id, n.*
    FROM unnest(
        $1::text[], $2::text[], $3::text[], $4::text[], $5::integer[], $6::integer[],
        $7::double precision[], $8::text[], $9::timestamptz[], $10::text[], $11::integer[],
        $12::integer[], $13::boolean[]
    ) WITH ORDINALITY AS n(
        name, queue, payload, headers, priority, max_attempts, max_run_seconds,
        timeout_strategy, run_at, ckey, payload_from, waiting_on, has_dependents, position
    )
    WHERE (SELECT ok FROM go)
    ORDER BY n.position
), inserted AS (
    INSERT INTO {schema}.jobs (
        id, name, queue, status, payload, headers, priority, max_attempts, max_run_seconds,
        timeout_strategy, run_at, concurrency_key, workflow_id, waiting_on, has_dependents,
        payload_from
    ) OVERRIDING SYSTEM VALUE
    SELECT i.id, i.name, i.queue,
           (CASE WHEN i.waiting_on > 0 THEN 'waiting'
                 WHEN i.run_at > now() THEN 'scheduled'
                 ELSE 'queued' END)::{schema}.job_status,
           coalesce(i.payload, 'null')::jsonb, i.headers::jsonb, i.priority, i.max_attempts,
           i.max_run_seconds, i.timeout_strategy, coalesce(i.run_at, now()), i.ckey,
           (SELECT id FROM flow), i.waiting_on, i.has_dependents, source.id
    FROM input AS i
    LEFT JOIN input AS source ON source.position = i.payload_from
    ORDER BY i.id
    RETURNING id, name, queue, priority, status
), edges AS (
    INSERT INTO {schema}.job_dependencies (job_id, depends_on, position, on_failure)
    SELECT dependent.id, coalesce(dependency.id, e.existing), e.position, e.policy
    FROM unnest($14::integer[], $15::integer[], $16::bigint[], $17::text[])
         WITH ORDINALITY AS e(node, after_node, existing, policy, position)
    JOIN input AS dependent ON dependent.position = e.node
    LEFT JOIN input AS dependency ON dependency.position = e.after_node
    RETURNING 1
), notices AS (
    INSERT INTO {schema}.broker_messages (queue, body, priority, available_at)
    SELECT c.queue, convert_to('{"job_id":' || c.id || '}', 'UTF8'), c.priority, now()
    FROM inserted AS c
    WHERE $21::text IS NOT NULL AND c.status = 'queued' AND {{claim_unrestrained}}
    ORDER BY c.id
    RETURNING queue
), held AS (
    SELECT c.id, c.status::text AS status, NOT ({{claim_unrestrained}}) AS held_back
    FROM inserted AS c
)
SELECT (SELECT array_agg(id ORDER BY id) FROM missing) AS missing,
       (SELECT id FROM flow) AS workflow_id,
       coalesce((SELECT array_agg(id ORDER BY id) FROM held), '{}') AS ids,
       coalesce((SELECT array_agg(status ORDER BY id) FROM held), '{}') AS statuses,
       coalesce((SELECT array_agg(held_back ORDER BY id) FROM held), '{}') AS held_back,
       (SELECT count(*) FROM edges) AS edges,
       (SELECT count(*) FROM marked) AS marked,
       (SELECT count(pg_notify($21, q.queue))
        FROM (SELECT DISTINCT queue FROM notices) AS q)
     + (SELECT count(pg_notify($22, ''))
        FROM (SELECT FROM held
              WHERE $22::text IS NOT NULL AND status = 'queued' AND held_back
              LIMIT 1) AS h) AS woken;

-- name: dependency_settle :many
-- Settle the edges of those of the jobs $3 that have finished (see `settle_dependents`,
-- channels $1 and $2); return the dependents it released. Idempotent: edges settled before
-- are left alone.
-- transition: waiting -> queued | scheduled | cancelled
WITH finished AS (
    SELECT id, status::text AS status, result FROM {schema}.jobs
    WHERE id = ANY($3::bigint[]) AND has_dependents
      AND status NOT IN ('waiting', 'scheduled', 'queued', 'running')
), {{settle_dependents}}
SELECT r.id, r.status, r.run_at, r.queue, r.priority, r.held_back,
       (SELECT notices FROM woken) AS woken
FROM released AS r
ORDER BY r.id;

-- name: dependency_settle_stale :many
-- Up to $1 finished jobs whose edges are not all settled: a crash between an outcome and
-- its settle, or a dependency that finished while its dependent's insert committed.
SELECT DISTINCT e.depends_on AS id
FROM {schema}.job_dependencies AS e
WHERE NOT e.settled
  AND (SELECT j.status FROM {schema}.jobs AS j WHERE j.id = e.depends_on)
      NOT IN ('waiting', 'scheduled', 'queued', 'running')
LIMIT $1;

-- name: dependency_outcomes :many
-- The dependencies of job $1 in the order they were given: each edge's policy and the
-- dependency's name, status, result and error (NULL columns: the job is gone).
SELECT e.depends_on AS id, e.on_failure, j.name, j.status::text AS status,
       j.result::text AS result, j.error_type, j.error_message
FROM {schema}.job_dependencies AS e
LEFT JOIN {schema}.jobs AS j ON j.id = e.depends_on
WHERE e.job_id = $1
ORDER BY e.position;

-- name: workflow_get :one
-- One workflow's row.
SELECT id, name, on_failure, nodes, created_at FROM {schema}.workflows WHERE id = $1;

-- name: workflow_jobs :many
-- The jobs of workflow $1 in insertion order, each with its dependencies (in order) and
-- their policies.
SELECT j.id, j.name, j.queue, j.status::text AS status, j.attempt, j.max_attempts,
       j.waiting_on, j.payload_from, j.created_at, j.started_at, j.finished_at,
       j.error_type, j.error_message,
       coalesce(d.depends_on, '{}') AS depends_on, coalesce(d.policies, '{}') AS policies
FROM {schema}.jobs AS j
LEFT JOIN LATERAL (
    SELECT array_agg(e.depends_on ORDER BY e.position) AS depends_on,
           array_agg(e.on_failure ORDER BY e.position) AS policies
    FROM {schema}.job_dependencies AS e
    WHERE e.job_id = j.id
) AS d ON true
WHERE j.workflow_id = $1
ORDER BY j.id;

-- name: workflow_find :many
-- The newest $1 workflows with the number of their jobs per status (JSON object).
SELECT w.id, w.name, w.on_failure, w.nodes, w.created_at,
       coalesce((SELECT json_object_agg(s.status, s.jobs)
                 FROM (SELECT status::text AS status, count(*) AS jobs
                       FROM {schema}.jobs WHERE workflow_id = w.id
                       GROUP BY status) AS s), '{}')::text AS counts
FROM {schema}.workflows AS w
ORDER BY w.id DESC
LIMIT $1;

-- name: workflow_unfinished :many
-- The ids of workflow $1's jobs that have not finished (for cancelling the workflow).
SELECT id FROM {schema}.jobs
WHERE workflow_id = $1 AND status NOT IN ('succeeded', 'failed', 'cancelled')
ORDER BY id;
