-- Drops what 0004_unique_jobs added.
DROP INDEX IF EXISTS {schema}.jobs_unique_key;
ALTER TABLE {schema}.jobs DROP COLUMN IF EXISTS unique_until, DROP COLUMN IF EXISTS unique_key;
