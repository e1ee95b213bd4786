-- The dashboard's indexes (docs/dashboard.md, bench/dashboard.py): its job list is ordered by
-- (created_at, id), newest first, and pages by keyset on it, which this index answers
-- without a sort, time ranges included; the dead-letter states, a small part of a big table,
-- get their own so that filtering on them reads only their rows.

CREATE INDEX jobs_created_at_id ON {schema}.jobs (created_at, id);
CREATE INDEX jobs_finished_badly ON {schema}.jobs (created_at, id)
    WHERE status IN ('failed', 'cancelled');

-- Every failed attempt, oldest first: {attempt, at, worker, type, message}, appended where an
-- attempt ends badly (an error, a time-out, a lost worker); the last one's traceback stays in
-- error_traceback. Succeeded attempts add nothing, so the hot path of a healthy queue does
-- not pay for it.
ALTER TABLE {schema}.jobs ADD COLUMN errors jsonb NOT NULL DEFAULT '[]';
