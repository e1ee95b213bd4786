-- The migration runner's own SQL: the ledger of applied versions and the lock around it.

-- name: migration_lock :exec
-- Serialize migrations of one schema across processes (transaction-scoped advisory lock).
SELECT pg_advisory_xact_lock(hashtext('polyqueue.migrate:' || $1));

-- name: migration_bootstrap :exec
-- Create the schema and the ledger of applied migrations if missing.
CREATE SCHEMA IF NOT EXISTS {schema};
CREATE TABLE IF NOT EXISTS {schema}.migrations (
    line       text NOT NULL,
    version    integer NOT NULL,
    name       text NOT NULL,
    applied_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (line, version)
);

-- name: migration_applied :many
-- Versions of line $1 already applied, in order.
SELECT version FROM {schema}.migrations WHERE line = $1 ORDER BY version;

-- name: migration_record :exec
-- Record one applied version of a line.
INSERT INTO {schema}.migrations (line, version, name) VALUES ($1, $2, $3);

-- name: migration_forget :exec
-- Forget one version of a line after its down migration ran.
DELETE FROM {schema}.migrations WHERE line = $1 AND version = $2;
