-- Unique jobs: the key a job holds while it is scheduled, queued or running and, enqueued
-- with `unique_for`, until `unique_until` whatever its status. The unique index is the
-- arbiter between producers; an enqueue takes a key over from a job that no longer holds
-- it by setting that job's `unique_key` to NULL (`job_insert_unique`).

ALTER TABLE {schema}.jobs
    ADD COLUMN unique_key text,
    ADD COLUMN unique_until timestamptz;

CREATE UNIQUE INDEX jobs_unique_key ON {schema}.jobs (unique_key)
    WHERE unique_key IS NOT NULL;
