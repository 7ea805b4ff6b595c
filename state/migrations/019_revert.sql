-- groupsync revert RUN plans the inverse of a run's applied changes as a run of its own
-- (trigger revert), reviewed and applied like any stored plan; a revert pauses its flow so
-- the next scheduled run does not redo at once what was just undone.

ALTER TABLE runs DROP CONSTRAINT runs_trigger_check;
ALTER TABLE runs ADD CONSTRAINT runs_trigger_check
    CHECK (trigger IN ('schedule', 'once', 'manual', 'apply', 'plan', 'revert'));
COMMENT ON COLUMN runs.trigger IS 'What started the run: schedule (daemon), once (sync --once), manual (groupsync trigger), apply (the re-plan that checks groupsync apply RUN), plan (groupsync plan), revert (groupsync revert RUN).';

-- Not a foreign key, like changes.run_id (migration 017): no code deletes runs.
ALTER TABLE runs ADD COLUMN reverts_run_id bigint;
COMMENT ON COLUMN runs.reverts_run_id IS 'For a revert run (and the re-plan that checks its apply): the run whose applied changes it undoes.';

ALTER TABLE changes ADD COLUMN reverts_change_id bigint;
COMMENT ON COLUMN changes.reverts_change_id IS 'For a change of a revert run: the applied change of the reverted run it undoes (or, skipped, would have undone).';

-- The later applied member and group changes of a target are found by run id range
-- (changes_run_id_idx); nothing else reads reverts_change_id, so it has no index.

CREATE TABLE flow_pauses (
    id            bigserial PRIMARY KEY,
    flow          text NOT NULL,
    paused_at     timestamptz NOT NULL DEFAULT now(),
    paused_by     text NOT NULL,
    reason        text NOT NULL,
    revert_run_id bigint,
    resumed_at    timestamptz,
    resumed_by    text
);
-- At most one pause of a flow is in force.
CREATE UNIQUE INDEX flow_pauses_active_idx ON flow_pauses (flow) WHERE resumed_at IS NULL;
COMMENT ON TABLE flow_pauses IS 'Pauses of flows, kept after they end as the record of who stopped a flow, when and why. A flow with a row whose resumed_at is NULL is paused: its scheduled, once and triggered runs do nothing until groupsync resume FLOW. Previews (plan, --dry-run) and the apply of a revert still run.';
COMMENT ON COLUMN flow_pauses.paused_by IS 'Who paused it: --by, else the operating-system user @ host; for a revert, who asked for the revert.';
COMMENT ON COLUMN flow_pauses.reason IS 'Why, as the operator wrote it, or the revert that paused it.';
COMMENT ON COLUMN flow_pauses.revert_run_id IS 'The revert run that paused the flow; NULL for groupsync pause.';
COMMENT ON COLUMN flow_pauses.resumed_at IS 'When groupsync resume ended the pause; NULL while it is in force.';
COMMENT ON COLUMN flow_pauses.resumed_by IS 'Who resumed it.';
