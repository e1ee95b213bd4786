-- Drops what 0006_workflows added. PostgreSQL cannot drop an enum value: 'waiting' stays in
-- the type, unused (the up migration adds it only if it is missing).
UPDATE {schema}.jobs
SET status = 'cancelled', finished_at = now(), error_type = 'MigrationError',
    error_message = 'cancelled: migration 0006_workflows was reverted while it waited'
WHERE status::text = 'waiting';
DROP TABLE IF EXISTS {schema}.job_dependencies;
DROP INDEX IF EXISTS {schema}.jobs_workflow;
ALTER TABLE {schema}.jobs
    DROP COLUMN IF EXISTS payload_from,
    DROP COLUMN IF EXISTS has_dependents,
    DROP COLUMN IF EXISTS waiting_on,
    DROP COLUMN IF EXISTS workflow_id;
DROP TABLE IF EXISTS {schema}.workflows;
