-- name: jobs_ready :one
-- Whether any job of the queues $1 is ready to run: queued, or scheduled and already due.
-- A burst worker (`polyqueue worker --burst`, `app.run_until_idle()`) stops once none is
-- and it runs nothing itself. A paused queue's jobs are not ready.
SELECT EXISTS (
    SELECT 1 FROM {schema}.jobs AS c
    WHERE queue = ANY($1::text[])
      AND (status = 'queued' OR (status = 'scheduled' AND run_at <= now()))
      AND NOT EXISTS (SELECT FROM {schema}.paused_queues AS p WHERE p.queue = c.queue)
) AS ready;
