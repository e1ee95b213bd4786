-- Drops everything 0001_initial created.
DROP TABLE IF EXISTS {schema}.broker_messages;
DROP TABLE IF EXISTS {schema}.workers;
DROP TABLE IF EXISTS {schema}.jobs;
DROP TYPE IF EXISTS {schema}.job_status;
