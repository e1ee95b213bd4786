-- Drops what 0005_flow_control added.
DROP INDEX IF EXISTS {schema}.jobs_queued_order;
DROP INDEX IF EXISTS {schema}.jobs_running_queue;
DROP INDEX IF EXISTS {schema}.jobs_running_name_key;
ALTER TABLE {schema}.jobs DROP COLUMN IF EXISTS concurrency_key;
DROP TABLE IF EXISTS {schema}.flow_starts;
DROP TABLE IF EXISTS {schema}.paused_queues;
DROP TABLE IF EXISTS {schema}.flow_limits;
