-- Flow control: limits on how many jobs run at once and how many start per window, per
-- handler (optionally per key) and per queue; paused queues; the starts a rate limit counts.

CREATE TABLE {schema}.flow_limits (
    scope text NOT NULL CHECK (scope IN ('handler', 'queue')),
    name text NOT NULL,
    per_key boolean NOT NULL DEFAULT false,
    concurrency_limit integer CHECK (concurrency_limit > 0),
    rate_limit integer CHECK (rate_limit > 0),
    rate_window double precision CHECK (rate_window > 0),
    updated_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (scope, name),
    CHECK ((rate_limit IS NULL) = (rate_window IS NULL)),
    CHECK (concurrency_limit IS NOT NULL OR rate_limit IS NOT NULL),
    CHECK (scope = 'handler' OR NOT per_key)
);

CREATE TABLE {schema}.paused_queues (
    queue text PRIMARY KEY,
    paused_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE {schema}.flow_starts (
    scope text NOT NULL,
    key text NOT NULL DEFAULT '',
    started_at timestamptz NOT NULL
);
CREATE INDEX flow_starts_scope ON {schema}.flow_starts (scope, key, started_at);

ALTER TABLE {schema}.jobs ADD COLUMN concurrency_key text;

CREATE INDEX jobs_running_name_key ON {schema}.jobs (name, concurrency_key)
    WHERE status = 'running';
CREATE INDEX jobs_running_queue ON {schema}.jobs (queue) WHERE status = 'running';
CREATE INDEX jobs_queued_order ON {schema}.jobs (queue, priority DESC, id)
    WHERE status = 'queued';
