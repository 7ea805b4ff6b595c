-- Drop the memberships -> groups foreign key. Its per-row RI trigger was the largest single
-- cost of a membership merge's first load (0.9-1.5 s of about 3 s for 200k rows, see
-- BENCHMARKS.md "Mirror merge"), and it protects against nothing that can happen:
--   * the membership merge stores only memberships whose group is in the mirror (the others
--     are counted as Orphaned and skipped), and
--   * groups are never hard-deleted (a group absent from a complete listing is tombstoned,
--     and so are its memberships), so a membership's group cannot disappear later.
-- The engine's RecordMembersAdded joins groups before inserting, for the same reason.
-- The other foreign keys (groups/accounts/links -> systems, runs, changes) stay.
ALTER TABLE memberships DROP CONSTRAINT IF EXISTS memberships_system_group_id_fkey;

COMMENT ON COLUMN memberships.group_id IS 'groups.external_id of the group in the same system. Not a foreign key (dropped by migration 004 for merge speed): every writer inserts only memberships whose group row exists, and group rows are never deleted.';
