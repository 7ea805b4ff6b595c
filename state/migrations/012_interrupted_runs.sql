-- A run stopped by a shutdown (SIGTERM: a deploy, a scale-down) is recorded interrupted,
-- not failed: it let the change in flight finish, and the next run carries on. Every
-- deploy adding failed runs would make failures meaningless.
ALTER TABLE runs DROP CONSTRAINT runs_status_check;
ALTER TABLE runs ADD CONSTRAINT runs_status_check
    CHECK (status IN ('running', 'succeeded', 'partial', 'failed', 'blocked', 'dry_run', 'planned', 'interrupted'));
COMMENT ON COLUMN runs.status IS 'running, succeeded, partial (some changes failed), failed, blocked (the guard held it; nothing pushed), dry_run, planned (groupsync plan), or interrupted (a shutdown stopped it; not a failure).';
