-- The benchmarks' own SQL: observing the jobs table and managing throwaway databases.
-- `{schema}` is the quoted Polyqueue schema and `{database}` a quoted database name.

-- name: server_info :one
-- The server's version and durability settings, for the machine line.
SELECT current_setting('server_version') AS version,
       current_setting('fsync') AS fsync,
       current_setting('synchronous_commit') AS synchronous_commit;

-- name: database_create :exec
-- A fresh, empty database for one measurement.
CREATE DATABASE {database};

-- name: database_drop :exec
-- Drop a measurement's database, disconnecting anyone still on it.
DROP DATABASE IF EXISTS {database} WITH (FORCE);

-- name: job_counts :one
-- How many jobs exist, how many succeeded and how many failed (polled during the drain).
SELECT count(*) AS total,
       count(*) FILTER (WHERE status = 'succeeded') AS succeeded,
       count(*) FILTER (WHERE status = 'failed') AS failed
FROM {schema}.jobs;
