-- Drops what 0003_reliability added.
DROP INDEX IF EXISTS {schema}.workers_stopped_at;
ALTER TABLE {schema}.jobs DROP COLUMN IF EXISTS republishes;
