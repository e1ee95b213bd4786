-- Republishing backs off per job: how many times this wait in `queued` was rung for again.

ALTER TABLE {schema}.jobs
    ADD COLUMN republishes integer NOT NULL DEFAULT 0;

CREATE INDEX workers_stopped_at ON {schema}.workers (stopped_at)
    WHERE status IN ('stopped', 'dead');
