-- The push lets a group's member additions start as soon as that group's create (or
-- restore) lands, so while a run's groups are being created each page of additions asks
-- for the create/restore changes of its groups (Store.GroupWrites). Partial: only group
-- operations are indexed (a few per group, never one per member), so the plan's inserts
-- of member changes pay nothing for it.
CREATE INDEX changes_group_write_idx ON changes (run_id, target_system, link_id)
    WHERE operation IN ('create_group', 'restore_group');
