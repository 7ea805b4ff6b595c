-- What the sync engine needs beyond the mirror tables: per-tick deduplication on leases, the
-- lease term and replica on each run, and indexes for the engine's hot queries.

ALTER TABLE leases ADD COLUMN last_tick timestamptz;
COMMENT ON COLUMN leases.last_tick IS 'The latest scheduled tick that a replica started for this flow; a replica that wakes for the same tick later does not run it again.';

ALTER TABLE runs ADD COLUMN holder text;
ALTER TABLE runs ADD COLUMN lease_term bigint;
ALTER TABLE runs ADD COLUMN tick timestamptz;
COMMENT ON COLUMN runs.holder IS 'The replica (host:pid) that executed the run.';
COMMENT ON COLUMN runs.lease_term IS 'The lease term under which the run executed (fencing: a run whose term is stale stops pushing).';
COMMENT ON COLUMN runs.tick IS 'The scheduled time the run was started for (schedule trigger only).';

-- changes are looked up by subject to carry attempts across runs and to reconcile
-- interrupted writes.
CREATE INDEX changes_subject_idx ON changes (flow, target_system, operation, link_id, account_email);
CREATE INDEX changes_in_flight_idx ON changes (flow) WHERE status = 'in_flight';
CREATE INDEX runs_flow_started_idx ON runs (flow, started_at DESC);
CREATE INDEX links_link_id_idx ON links (link_id);
CREATE INDEX memberships_system_account_idx ON memberships (system, account_id);
