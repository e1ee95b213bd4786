-- Crash recovery and cron: reclaim counts, republish times, and the cron ledger.

ALTER TABLE {schema}.jobs
    ADD COLUMN reclaims integer NOT NULL DEFAULT 0,   -- times its worker died while running it
    ADD COLUMN notified_at timestamptz;               -- last republish of its notice

CREATE INDEX jobs_queued_run_at ON {schema}.jobs (run_at) WHERE status = 'queued';
CREATE INDEX jobs_running_timeout ON {schema}.jobs (timeout_at) WHERE status = 'running';
CREATE INDEX jobs_finished_at ON {schema}.jobs (finished_at)
    WHERE status IN ('succeeded', 'failed', 'cancelled');

CREATE TABLE {schema}.cron_schedules (
    name       text PRIMARY KEY,
    expression text NOT NULL,
    last_tick  timestamptz NOT NULL,
    updated_at timestamptz NOT NULL DEFAULT now()
);
