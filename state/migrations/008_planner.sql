-- The planner's invariants: attempts belong to an intent, archived target groups can be
-- restored, and a configured link says which flow configured it.

-- restore_group brings an archived target group back when its source group is live again.
ALTER TABLE changes DROP CONSTRAINT IF EXISTS changes_operation_check;
ALTER TABLE changes ADD CONSTRAINT changes_operation_check CHECK (operation IN
    ('create_group', 'update_group', 'restore_group', 'archive_group', 'delete_group', 'add_member', 'remove_member'));
COMMENT ON COLUMN changes.operation IS 'create_group, update_group, restore_group, archive_group, delete_group, add_member or remove_member.';

-- The intent of a change: what it wants done, independent of the run that planned it.
-- Attempts are counted per intent; the target's current values (old_*) and a group-level
-- skip's member count are not part of what is wanted.
ALTER TABLE changes ADD COLUMN intent text GENERATED ALWAYS AS (md5(
    target_system || chr(31) || operation || chr(31) || coalesce(link_id::text, '') || chr(31) ||
    coalesce(account_email, '') || chr(31) || coalesce(target_account_id, '') || chr(31) ||
    coalesce(source_account_id, '') || chr(31) ||
    coalesce(md5((payload - 'old_name' - 'old_description' - 'old_visibility' - 'members')::text), ''))) STORED;
COMMENT ON COLUMN changes.intent IS 'Hash of what the change wants (target system, operation, link, member, payload without the target''s old values): the same intent in two runs has the same key. Attempts are counted per intent (see change_intents).';

-- The carry of attempts looks up the latest attempted row of an intent: one index probe
-- per planned change, whatever the flow's history.
CREATE INDEX changes_intent_attempted_idx ON changes (flow, intent, id) WHERE status IN ('failed', 'applied');
-- The carry used to self-join on these columns; nothing else reads them together.
DROP INDEX IF EXISTS changes_subject_idx;

CREATE TABLE change_intents (
    flow          text NOT NULL,
    intent        text NOT NULL,
    target_system text NOT NULL,
    since_run_id  bigint NOT NULL,
    seen_run_id   bigint NOT NULL,
    PRIMARY KEY (flow, intent)
);
CREATE INDEX change_intents_seen_idx ON change_intents (flow, target_system, seen_run_id);
COMMENT ON TABLE change_intents IS 'The intents in each flow''s latest pushed plan, and since which pushed run each has been continuously present. A change carries the attempts of its intent''s latest attempted row only when that row belongs to the current presence: an intent that left a pushed plan (or was applied) and returns starts again at 0. Previews (dry runs, plans, blocked runs, apply''s check) do not write here.';
COMMENT ON COLUMN change_intents.intent IS 'changes.intent.';
COMMENT ON COLUMN change_intents.since_run_id IS 'The pushed run from which the intent has been in every pushed plan of the flow for its target.';
COMMENT ON COLUMN change_intents.seen_run_id IS 'The latest pushed run whose plan had the intent.';

ALTER TABLE links ADD COLUMN configured_by_flow text;
COMMENT ON COLUMN links.configured_by_flow IS 'The flow whose configuration (links:) set this target link; NULL when the link was made by adoption or creation. Two flows that configure one target group for different source groups are refused.';
