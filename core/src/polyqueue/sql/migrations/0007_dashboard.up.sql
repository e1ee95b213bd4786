-- The dashboard's indexes (docs/dashboard.md, bench/dashboard.py): its job list is ordered by
-- (created_at, id), newest first, and pages by keyset on it, which this index answers
-- without a sort, time ranges included; the dead-letter states, a small part of a big table,
-- get their own so that filtering on them reads only their rows.

CREATE INDEX jobs_created_at_id ON {schema}.jobs (created_at, id);
CREATE INDEX jobs_finished_badly ON {schema}.jobs (created_at, id)
    WHERE status IN ('failed', 'cancelled');
