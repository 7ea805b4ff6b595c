-- Views that answer what the README's queries ask (issue 12 item 9). Numbered after the
-- highest migration when written; renumber at merge if main gained others meanwhile.
--
-- group_overview.in_sync said true while members were missing in a target: it looked only
-- at the groups' own rows, and a member skipped for no_account, removed out of band, or held
-- by a blocked run leaves every group row "succeeded". It now also asks membership_drift and
-- the changes a pending block holds back for the group. New columns go at the end: CREATE OR
-- REPLACE VIEW keeps the existing ones, so queries written against 003 keep working.
CREATE OR REPLACE VIEW group_overview AS
    WITH per_link AS (
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
                        AND coalesce(g.last_sync_out_status, 'succeeded') IN ('succeeded', 'skipped')) AS groups_in_step,
               array_agg(DISTINCT l.flow ORDER BY l.flow) AS link_flows
          FROM links l
          LEFT JOIN groups g ON g.system = l.system AND g.external_id = l.external_id
         GROUP BY l.link_id
    ), missing AS (
        -- One row per (target, email): a person missing from the group in a target counts once
        -- even if two flows push the group there.
        SELECT link_id, count(DISTINCT (target_system, email)) AS n
          FROM membership_drift
         WHERE drift = 'missing_in_target'
         GROUP BY link_id
    ), held AS (
        -- Changes a block holds back that an operator can still approve. A block that was
        -- approved, or that a later run superseded, no longer holds anything back.
        SELECT c.link_id, count(*) AS n
          FROM changes c
          JOIN pending_approvals p ON p.run_id = c.run_id AND NOT p.superseded
         WHERE c.status = 'blocked' AND c.link_id IS NOT NULL
         GROUP BY c.link_id
    ), flows_of AS (
        -- Every flow that pushes the group: the link rows name the flow that made each
        -- target's row, and a flow can also reach the group through its source row alone.
        SELECT l.link_id, array_agg(DISTINCT fs.flow ORDER BY fs.flow) AS flows
          FROM links l
          JOIN flow_systems fs ON fs.source_system = l.system
          JOIN links t ON t.link_id = l.link_id AND t.system = fs.target_system AND t.flow = fs.flow
         GROUP BY l.link_id
    )
    SELECT o.link_id, o.flow, o.name, o.systems, o.per_system, o.system_count, o.missing_count, o.failed_count,
           o.groups_in_step AND coalesce(m.n, 0) = 0 AND coalesce(h.n, 0) = 0 AS in_sync,
           coalesce(m.n, 0) AS members_missing,
           coalesce(h.n, 0) AS changes_held,
           coalesce(f.flows, o.link_flows) AS flows
      FROM per_link o
      LEFT JOIN missing m USING (link_id)
      LEFT JOIN held h USING (link_id)
      LEFT JOIN flows_of f USING (link_id);
COMMENT ON COLUMN group_overview.flow IS 'The flow that made the link (the alphabetically first when several flows linked the same group); flows lists them all.';
COMMENT ON COLUMN group_overview.in_sync IS 'True when the group exists in every linked system, no last write for it failed, no member of the source group is missing in a target (membership_drift missing_in_target, whatever the cause: a failed add, no account in the target, a removal out of band) and no pending block holds back a change of it (changes_held). Members a target has beyond the source do not count unless their removal is held or failed: add_only flows keep them by design.';
COMMENT ON COLUMN group_overview.members_missing IS 'People in the source group missing from the group in a target, counted once per target and email (membership_drift drift = missing_in_target says who and where).';
COMMENT ON COLUMN group_overview.changes_held IS 'Changes of the group held back by a blocked run that awaits approval (pending_approvals, not superseded).';
COMMENT ON COLUMN group_overview.flows IS 'Every flow that pushes the group from its source to a target, sorted; one row per group whatever their number.';
