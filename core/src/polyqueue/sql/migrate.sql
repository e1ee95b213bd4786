-- The migration runner's own SQL: the ledger of applied versions and the lock around it.

-- name: migration_lock :exec
-- Serialize migrations of one schema across processes (transaction-scoped advisory lock).
SELECT pg_advisory_xact_lock(hashtext('polyqueue.migrate:' || $1));

-- name: migration_bootstrap :exec
-- Create the schema and the ledger of applied migrations if missing.
CREATE SCHEMA IF NOT EXISTS {schema};
CREATE TABLE IF NOT EXISTS {schema}.migrations (
    version    integer PRIMARY KEY,
    name       text NOT NULL,
    applied_at timestamptz NOT NULL DEFAULT now()
);

-- name: migration_applied :many
-- Versions already applied, in order.
SELECT version FROM {schema}.migrations ORDER BY version;

-- name: migration_record :exec
-- Record one applied version.
INSERT INTO {schema}.migrations (version, name) VALUES ($1, $2);

-- name: migration_forget :exec
-- Forget one version after its down migration ran.
DELETE FROM {schema}.migrations WHERE version = $1;
