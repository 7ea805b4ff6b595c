-- Approvals that clear (issue 12): a blocked run leaves pending_approvals (and the
-- groupsync_runs_awaiting_approval gauge) when an operator approves it (`groupsync apply`),
-- rejects it (`groupsync reject`), or a newer run of its flow supersedes it. Numbered after
-- the highest migration when written; renumber at merge if main gained others meanwhile.

ALTER TABLE runs ADD COLUMN rejected_at timestamptz,
                 ADD COLUMN rejected_by text,
                 ADD COLUMN reject_reason text,
                 ADD COLUMN superseded_by bigint REFERENCES runs (id) ON DELETE SET NULL;
COMMENT ON COLUMN runs.rejected_at IS 'When an operator rejected this blocked run (groupsync reject): its plan is never pushed.';
COMMENT ON COLUMN runs.rejected_by IS 'Who rejected it: --by, else the operating-system user running the CLI.';
COMMENT ON COLUMN runs.reject_reason IS 'Why it was rejected (--reason), as the operator wrote it.';
COMMENT ON COLUMN runs.superseded_by IS 'The later run of the same flow (succeeded, partial or blocked) that made this blocked run''s plan stale: only the newest plan of a flow awaits approval.';

-- Blocked runs that a later run already superseded before this migration.
UPDATE runs r
   SET superseded_by = (SELECT min(n.id) FROM runs n
                         WHERE n.flow = r.flow AND n.id > r.id AND n.status IN ('succeeded', 'partial', 'blocked')
                           AND n.trigger <> 'apply')
 WHERE r.status = 'blocked' AND r.approved_at IS NULL AND r.trigger <> 'apply';
-- Before this migration the re-plan that checks an approval could record a block of its own
-- (trigger apply): it never was one to approve.
UPDATE runs SET rejected_at = coalesce(finished_at, started_at), rejected_by = 'migration 012',
       reject_reason = 'the re-plan check of an approval, recorded as a block before migration 012'
 WHERE status = 'blocked' AND trigger = 'apply' AND approved_at IS NULL;

CREATE INDEX runs_awaiting_approval_idx ON runs (flow, id)
 WHERE status = 'blocked' AND approved_at IS NULL AND rejected_at IS NULL AND superseded_by IS NULL;

CREATE OR REPLACE VIEW pending_approvals AS
    SELECT r.id AS run_id, r.flow, r.started_at, r.blocked_reason,
           (SELECT count(*) FROM changes c WHERE c.run_id = r.id AND c.status = 'blocked') AS blocked_changes,
           'groupsync apply ' || r.id || ' --allow-deletes' AS approve_command,
           false AS superseded,
           'groupsync reject ' || r.id || ' --reason ''...''' AS reject_command
      FROM runs r
     WHERE r.status = 'blocked' AND r.approved_at IS NULL AND r.rejected_at IS NULL AND r.superseded_by IS NULL;
COMMENT ON VIEW pending_approvals IS 'Runs the guard blocked that await an operator: not approved, not rejected, not superseded by a newer run of their flow (so at most one per flow). Judge blocked_reason, inspect the blocked changes (SELECT * FROM changes WHERE run_id = ...), then run approve_command or reject_command.';
COMMENT ON COLUMN pending_approvals.superseded IS 'Always false since migration 012: a superseded run leaves this view (runs.superseded_by). Kept so existing queries keep working.';
COMMENT ON COLUMN pending_approvals.reject_command IS 'The command that clears the block without pushing, recorded with who, when and why.';
