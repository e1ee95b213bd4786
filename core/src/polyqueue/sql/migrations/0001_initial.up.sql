-- The jobs table, the worker registry and the built-in postgres broker's message table.

CREATE TYPE {schema}.job_status AS ENUM (
    'scheduled', 'queued', 'running', 'succeeded', 'failed', 'cancelled'
);

CREATE TABLE {schema}.jobs (
    id               bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    name             text NOT NULL,
    queue            text NOT NULL,
    status           {schema}.job_status NOT NULL,
    payload          jsonb NOT NULL,
    result           jsonb,
    headers          jsonb NOT NULL DEFAULT '{}',
    priority         integer NOT NULL DEFAULT 0,
    attempt          integer NOT NULL DEFAULT 0,      -- claims so far: the fencing token
    attempt_base     integer NOT NULL DEFAULT 0,      -- attempt when last requeued by hand
    max_attempts     integer NOT NULL CHECK (max_attempts >= 1),
    max_run_seconds  double precision,
    timeout_strategy text NOT NULL DEFAULT 'retry'
                     CHECK (timeout_strategy IN ('retry', 'fail', 'ignore')),
    idempotency_key  text,
    run_at           timestamptz NOT NULL DEFAULT now(),
    error_type       text,
    error_message    text,
    error_traceback  text,
    progress         double precision,
    progress_message text,
    worker_id        text,
    created_at       timestamptz NOT NULL DEFAULT now(),
    started_at       timestamptz,
    heartbeat_at     timestamptz,
    timeout_at       timestamptz,
    finished_at      timestamptz
);

CREATE UNIQUE INDEX jobs_idempotency_key ON {schema}.jobs (idempotency_key)
    WHERE idempotency_key IS NOT NULL;
CREATE INDEX jobs_scheduled_run_at ON {schema}.jobs (run_at) WHERE status = 'scheduled';
CREATE INDEX jobs_running_worker ON {schema}.jobs (worker_id) WHERE status = 'running';
CREATE INDEX jobs_status_queue ON {schema}.jobs (status, queue);

CREATE TABLE {schema}.workers (
    id            text PRIMARY KEY,
    hostname      text NOT NULL,
    pid           integer NOT NULL,
    queues        text[] NOT NULL,
    concurrency   integer NOT NULL,
    current_jobs  integer NOT NULL DEFAULT 0,
    status        text NOT NULL DEFAULT 'running'
                  CHECK (status IN ('running', 'stopped', 'dead')),
    started_at    timestamptz NOT NULL DEFAULT now(),
    heartbeat_at  timestamptz NOT NULL DEFAULT now(),
    stopped_at    timestamptz
);

-- The built-in `postgres` broker: one row per notice, leased with SKIP LOCKED.
CREATE TABLE {schema}.broker_messages (
    id            bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    queue         text NOT NULL,
    body          bytea NOT NULL,
    priority      integer NOT NULL DEFAULT 0,
    available_at  timestamptz NOT NULL DEFAULT now(),
    deliveries    integer NOT NULL DEFAULT 0
);

CREATE INDEX broker_messages_ready
    ON {schema}.broker_messages (queue, priority DESC, available_at, id);
