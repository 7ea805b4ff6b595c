-- Planning writes one change row per planned write (100k rows for a 100k-member sync) and
-- looks up, per planned change, the latest attempted row of its intent. This migration
-- takes per-row work off both.

-- changes_target_system_status_idx (target system, status) is no way in for any reader:
-- the engine's queries on changes all name a run, a flow or ids (changes_run_id_idx,
-- changes_in_flight_idx, changes_intent_attempted_idx, the primary key), and the views
-- filter on run (pending_approvals, group_overview's held changes), on failed rows
-- (recent_failures: changes_failed_idx) or read every row (flow_systems). Each planned
-- change paid an entry in it.
DROP INDEX IF EXISTS changes_target_system_status_idx;

-- The intent was an md5 in hex, text in the database's collation: every comparison in the
-- carry's index probe (flow, intent, id) went through the collation (strcoll), and each
-- key took 33 bytes. The same md5 as uuid is 16 bytes compared with memcmp: a smaller
-- index, a cheaper probe and a cheaper hash of change_intents. Same hash, same intents:
-- two changes share an intent exactly when they did before. A generation expression
-- cannot be altered in place, so the column is added again (this rewrites changes once)
-- and change_intents' keys are converted.
ALTER TABLE changes DROP COLUMN intent;
ALTER TABLE changes ADD COLUMN intent uuid GENERATED ALWAYS AS (md5(
    target_system || chr(31) || operation || chr(31) || coalesce(link_id::text, '') || chr(31) ||
    coalesce(account_email, '') || chr(31) || coalesce(target_account_id, '') || chr(31) ||
    coalesce(source_account_id, '') || chr(31) ||
    coalesce(md5((payload - 'old_name' - 'old_description' - 'old_visibility' - 'members')::text), ''))::uuid) STORED;
COMMENT ON COLUMN changes.intent IS 'Hash (md5, as uuid) of what the change wants (target system, operation, link, member, payload without the target''s old values): the same intent in two runs has the same key. Attempts are counted per intent (see change_intents).';
CREATE INDEX changes_intent_attempted_idx ON changes (flow, intent, id) WHERE status IN ('failed', 'applied');
ALTER TABLE change_intents ALTER COLUMN intent TYPE uuid USING intent::uuid;

-- The foreign key changes.run_id → runs ran one query per inserted change (≈ 25% of writing a
-- plan's rows). Postgres has no statement-level foreign key check, so the check moves to
-- where changes are written: the planner (state.PlanFlow, the only writer of change rows)
-- locks the run row FOR KEY SHARE at the start of its transaction and refuses a run that
-- does not exist. That is the lock the foreign key's check took, once per plan instead of
-- once per change: the run cannot be deleted (or its id changed) before the plan commits.
-- No code deletes runs. What is lost: a change row inserted by hand is not checked.
ALTER TABLE changes DROP CONSTRAINT IF EXISTS changes_run_id_fkey;
COMMENT ON COLUMN changes.run_id IS 'runs.id of the run that planned the change. Not a foreign key (a per-row check on every planned change): state.PlanFlow checks the run exists and holds it FOR KEY SHARE while it writes the run''s changes.';
