-- Views for people: the questions an operator or analyst asks of the mirror, answered without
-- knowing how links, sync metadata and change rows fit together. Views hold no data, so
-- they are cheap to change in a later migration (CREATE OR REPLACE VIEW).

-- group_overview: one row per mirror group (link). The per-system detail is a JSON object
-- keyed by system name because the set of systems is configuration, not schema.
CREATE VIEW group_overview AS
    SELECT l.link_id,
           min(l.flow) AS flow,
           (array_agg(g.name ORDER BY l.created_at, l.system) FILTER (WHERE g.name IS NOT NULL))[1] AS name,
           array_agg(l.system ORDER BY l.system) AS systems,
           jsonb_object_agg(l.system, jsonb_build_object(
               'id', l.external_id,
               'name', g.name,
               'deleted', g.deleted_at IS NOT NULL,
               'archived', coalesce(g.state = 'archived', false),
               'last_sync_in_status', g.last_sync_in_status,
               'last_sync_out_status', g.last_sync_out_status,
               'last_sync_out_date', g.last_sync_out_date,
               'last_sync_out_error', g.last_sync_out_error)) AS per_system,
           count(*) AS system_count,
           count(*) FILTER (WHERE g.external_id IS NULL OR g.deleted_at IS NOT NULL) AS missing_count,
           count(*) FILTER (WHERE g.last_sync_out_status = 'failed') AS failed_count,
           bool_and(g.external_id IS NOT NULL AND g.deleted_at IS NULL
                    AND coalesce(g.last_sync_out_status, 'succeeded') IN ('succeeded', 'skipped')) AS in_sync
      FROM links l
      LEFT JOIN groups g ON g.system = l.system AND g.external_id = l.external_id
     GROUP BY l.link_id;
COMMENT ON VIEW group_overview IS 'One row per mirror group (links.link_id): its name, the systems it is linked in, and per system its id, name, tombstone/archive state and last sync status. Start here to see whether a group is in step everywhere.';
COMMENT ON COLUMN group_overview.flow IS 'The flow that made the link (the alphabetically first when several flows linked the same group).';
COMMENT ON COLUMN group_overview.name IS 'The group name in the system linked first (the source of the flow that made the link).';
COMMENT ON COLUMN group_overview.systems IS 'Names of the systems the group is linked in, sorted.';
COMMENT ON COLUMN group_overview.per_system IS 'JSON object keyed by system name: id, name, deleted, archived, last_sync_in_status, last_sync_out_status, last_sync_out_date, last_sync_out_error. Query one system with per_system->''devrev-prod''->>''id''.';
COMMENT ON COLUMN group_overview.system_count IS 'How many systems the group is linked in.';
COMMENT ON COLUMN group_overview.missing_count IS 'Linked systems where the group is not (or no longer) in the mirror: just created and not pulled yet, or tombstoned.';
COMMENT ON COLUMN group_overview.failed_count IS 'Linked systems whose last write for this group failed.';
COMMENT ON COLUMN group_overview.in_sync IS 'True when the group exists in every linked system and no last write failed or is pending.';

-- Which systems a flow reads and writes: the engine records both on every change row it
-- plans (the configuration is not in the database).
CREATE VIEW flow_systems AS
    SELECT DISTINCT flow, source_system, target_system
      FROM changes
     WHERE source_system IS NOT NULL;
COMMENT ON VIEW flow_systems IS 'Each flow''s source system and target systems, as recorded on its change rows. A flow that never planned any change (already in step at its first run) has no row here yet.';

-- member_emails: the live user members of every group with their email, from the
-- membership row (Airtable returns it inline) or else from the member's account.
CREATE VIEW member_emails AS
    SELECT m.system, m.group_id, m.account_id,
           coalesce(nullif(m.email, ''), a.email, '') AS email
      FROM memberships m
      LEFT JOIN accounts a ON a.system = m.system AND a.external_id = m.account_id AND a.deleted_at IS NULL
     WHERE m.deleted_at IS NULL AND m.member_type LIKE 'user%';
COMMENT ON VIEW member_emails IS 'Live user memberships with the member''s normalized email (inline on the membership, else from the account). Empty email: the system did not reveal it, or the account is not mirrored yet.';

CREATE VIEW membership_drift AS
    WITH pairs AS (
        SELECT fs.flow, sl.link_id,
               sl.system AS source_system, sl.external_id AS source_group_id,
               tl.system AS target_system, tl.external_id AS target_group_id
          FROM flow_systems fs
          JOIN links sl ON sl.system = fs.source_system
          JOIN groups sg ON sg.system = sl.system AND sg.external_id = sl.external_id AND sg.deleted_at IS NULL
          JOIN links tl ON tl.link_id = sl.link_id AND tl.system = fs.target_system AND tl.flow = fs.flow
          JOIN groups tg ON tg.system = tl.system AND tg.external_id = tl.external_id AND tg.deleted_at IS NULL
         WHERE NOT tg.membership_managed
    ), src AS (
        SELECT p.*, e.email
          FROM pairs p JOIN member_emails e ON e.system = p.source_system AND e.group_id = p.source_group_id
         WHERE e.email <> ''
    ), tgt AS (
        SELECT p.*, e.email
          FROM pairs p JOIN member_emails e ON e.system = p.target_system AND e.group_id = p.target_group_id
         WHERE e.email <> ''
    )
    SELECT flow, link_id, source_system, source_group_id, target_system, target_group_id, email,
           'missing_in_target'::text AS drift
      FROM (SELECT * FROM src EXCEPT SELECT * FROM tgt) s
    UNION ALL
    SELECT flow, link_id, source_system, source_group_id, target_system, target_group_id, email,
           'extra_in_target'::text
      FROM (SELECT * FROM tgt EXCEPT SELECT * FROM src) t;
COMMENT ON VIEW membership_drift IS 'Members that differ between a flow''s source group and each target group that flow linked it to, one row per email, as of the last pulls. Right after a successful run it lists what the target cannot take (no account, unsupported) and, in add_only flows, the extra target members groupsync leaves alone. Targets whose membership the system manages itself are left out.';
COMMENT ON COLUMN membership_drift.email IS 'Normalized email of the member that differs. Members whose email is unknown are left out: they cannot be compared.';
COMMENT ON COLUMN membership_drift.drift IS 'missing_in_target: in the source group, not in the target group. extra_in_target: in the target group, not in the source group.';

CREATE VIEW recent_failures AS
    SELECT c.id AS change_id, c.run_id, c.flow, c.target_system, c.operation,
           coalesce(nullif(c.payload->>'name', ''), tg.name, c.target_group_id) AS group_name,
           c.target_group_id, c.account_email, c.attempts, c.reason, c.last_error, c.updated_at AS failed_at
      FROM changes c
      LEFT JOIN groups tg ON tg.system = c.target_system AND tg.external_id = c.target_group_id
     WHERE c.status = 'failed' AND c.updated_at > now() - interval '7 days';
COMMENT ON VIEW recent_failures IS 'Changes that failed in the last 7 days, with the error. A failed change is planned again (attempts carried over) by the next run of its flow until the flow''s max_change_attempts is reached.';
COMMENT ON COLUMN recent_failures.group_name IS 'Group name from the change payload, else the target group''s mirrored name, else its id.';
COMMENT ON COLUMN recent_failures.failed_at IS 'When the change row last changed, i.e. when its last attempt failed.';

CREATE VIEW pending_approvals AS
    SELECT r.id AS run_id, r.flow, r.started_at, r.blocked_reason,
           (SELECT count(*) FROM changes c WHERE c.run_id = r.id AND c.status = 'blocked') AS blocked_changes,
           'groupsync apply ' || r.id || ' --allow-deletes' AS approve_command,
           EXISTS (SELECT 1 FROM runs n WHERE n.flow = r.flow AND n.id > r.id
                     AND n.status IN ('succeeded', 'partial')) AS superseded
      FROM runs r
     WHERE r.status = 'blocked' AND r.approved_at IS NULL;
COMMENT ON VIEW pending_approvals IS 'Runs the guard blocked that no operator has approved. Judge blocked_reason, inspect the blocked changes (SELECT * FROM changes WHERE run_id = ...), then run approve_command.';
COMMENT ON COLUMN pending_approvals.blocked_changes IS 'Changes of the run held back by the guard (status blocked).';
COMMENT ON COLUMN pending_approvals.approve_command IS 'The exact command that pushes this run''s stored plan. It re-plans first and refuses if the mirror moved since.';
COMMENT ON COLUMN pending_approvals.superseded IS 'True when a later run of the same flow succeeded: the block is likely stale and approving it will probably be refused as moved.';

-- Columns 001 and 002 left without a comment although their meaning is not obvious.
COMMENT ON COLUMN changes.run_id IS 'runs.id of the run that planned the change.';
COMMENT ON COLUMN changes.flow IS 'The flow whose run planned the change.';
COMMENT ON COLUMN changes.target_system IS 'The system the change writes to.';
COMMENT ON COLUMN changes.operation IS 'create_group, update_group, archive_group, delete_group, add_member or remove_member.';
COMMENT ON COLUMN changes.source_system IS 'The flow''s source system the desired state came from.';
COMMENT ON COLUMN changes.source_group_id IS 'Group id in the source system.';
COMMENT ON COLUMN changes.source_account_id IS 'Member''s account id in the source system.';
COMMENT ON COLUMN changes.target_account_id IS 'Member''s account id in the target system, when matched.';
COMMENT ON COLUMN changes.applied_at IS 'When the change was written to the target.';
COMMENT ON COLUMN runs.flow IS 'The configured flow the run belongs to.';
COMMENT ON COLUMN runs.dry_run IS 'True for runs that planned without pushing (dry_run, plan, the re-plan check of an apply).';
COMMENT ON COLUMN runs.error IS 'Why the run failed or partly failed; NULL when it did not.';
COMMENT ON COLUMN runs.started_at IS 'When the run started.';
COMMENT ON COLUMN runs.finished_at IS 'When the run ended; NULL while it is running or when the process died during it.';
COMMENT ON COLUMN groups.system IS 'systems.name the group lives in.';
COMMENT ON COLUMN groups.name IS 'Display name as the system returns it; groups are matched across systems by the normalized form of it when no link exists yet.';
COMMENT ON COLUMN accounts.system IS 'systems.name the account lives in.';
COMMENT ON COLUMN accounts.display_name IS 'Display name as the system returns it.';
COMMENT ON COLUMN memberships.system IS 'systems.name the membership lives in.';
COMMENT ON COLUMN links.system IS 'systems.name of the linked group.';
COMMENT ON COLUMN leases.acquired_at IS 'When the current holder took the lease.';
