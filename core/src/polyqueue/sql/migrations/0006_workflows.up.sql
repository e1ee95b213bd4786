-- Workflows: jobs that wait for other jobs. A job with dependencies is inserted `waiting`
-- with `waiting_on` set to its number of edges; settling an edge (its dependency finished)
-- counts it down, in the statement that stores the dependency's outcome, and the edge that
-- brings it to 0 releases the job. `has_dependents` keeps that work off every other job.
-- PostgreSQL cannot use a new enum value in the transaction that adds it, so nothing below
-- names 'waiting'.

ALTER TYPE {schema}.job_status ADD VALUE IF NOT EXISTS 'waiting' BEFORE 'scheduled';

CREATE TABLE {schema}.workflows (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    name        text NOT NULL,
    on_failure  text NOT NULL CHECK (on_failure IN ('cancel', 'run', 'ignore')),
    nodes       integer NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now()
);

ALTER TABLE {schema}.jobs
    ADD COLUMN workflow_id bigint,
    ADD COLUMN waiting_on integer NOT NULL DEFAULT 0,
    ADD COLUMN has_dependents boolean NOT NULL DEFAULT false,
    ADD COLUMN payload_from bigint;

CREATE INDEX jobs_workflow ON {schema}.jobs (workflow_id) WHERE workflow_id IS NOT NULL;

-- One row per edge: `job_id` waits for `depends_on`; `position` keeps the order the
-- dependencies were given in (`ctx.results_of`); `settled` once the dependency finished.
CREATE TABLE {schema}.job_dependencies (
    job_id      bigint NOT NULL,
    depends_on  bigint NOT NULL,
    position    integer NOT NULL,
    on_failure  text NOT NULL CHECK (on_failure IN ('cancel', 'run', 'ignore')),
    settled     boolean NOT NULL DEFAULT false,
    PRIMARY KEY (job_id, depends_on)
);

CREATE INDEX job_dependencies_unsettled ON {schema}.job_dependencies (depends_on)
    WHERE NOT settled;
