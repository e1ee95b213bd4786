ALTER TABLE {schema}.jobs DROP COLUMN IF EXISTS errors;
DROP INDEX IF EXISTS {schema}.jobs_finished_badly;
DROP INDEX IF EXISTS {schema}.jobs_created_at_id;
