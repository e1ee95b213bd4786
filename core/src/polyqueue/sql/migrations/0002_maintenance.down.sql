-- Drops what 0002_maintenance added.
DROP TABLE IF EXISTS {schema}.cron_schedules;
DROP INDEX IF EXISTS {schema}.jobs_finished_at;
DROP INDEX IF EXISTS {schema}.jobs_running_timeout;
DROP INDEX IF EXISTS {schema}.jobs_queued_run_at;
ALTER TABLE {schema}.jobs DROP COLUMN IF EXISTS notified_at, DROP COLUMN IF EXISTS reclaims;
