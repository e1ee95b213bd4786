-- The demo's own SQL: `polyqueue demo` runs in a schema of its own and starts it afresh.

-- name: demo_reset :exec
-- Drop the demo schema and everything in it, so each run starts from an empty queue.
DROP SCHEMA IF EXISTS {schema} CASCADE;
