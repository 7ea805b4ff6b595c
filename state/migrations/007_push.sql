-- restore_group: the engine brings an archived target group back when its source group is
-- live again (where the target can un-archive; elsewhere the planner plans a new group).
ALTER TABLE changes DROP CONSTRAINT changes_operation_check;
ALTER TABLE changes ADD CONSTRAINT changes_operation_check
    CHECK (operation IN ('create_group', 'update_group', 'restore_group', 'archive_group', 'delete_group',
                         'add_member', 'remove_member'));
COMMENT ON COLUMN changes.operation IS 'create_group, update_group, restore_group (un-archive), archive_group, delete_group, add_member or remove_member.';
