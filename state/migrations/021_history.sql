-- History (issue 14 items 1, 2, 4): who was in which group when, and which name and
-- visibility a group had when.
--
-- An interval is open while its mirror row is live: the open interval of a membership IS
-- its memberships row (valid_from, opened_by, opened_run below), and of a group's name and
-- visibility its groups row. Only closed intervals are stored apart, in membership_history
-- and group_history, written when the merge or the engine closes one. So a first load writes
-- no history rows at all (it stays one COPY into the mirror), a no-op pull writes nothing,
-- and the history tables only grow by what changed. membership_intervals and group_intervals
-- show both halves as one relation.
--
-- Nothing before this migration is known: live rows count as open since first_seen_at.

ALTER TABLE memberships
    ADD COLUMN valid_from timestamptz,
    ADD COLUMN opened_by  text CHECK (opened_by IN ('observed', 'written')),
    ADD COLUMN opened_run bigint;
COMMENT ON COLUMN memberships.valid_from IS 'Start of the open membership interval (when the member last became live); NULL means first_seen_at (the row was first stored live and never revived).';
COMMENT ON COLUMN memberships.opened_by IS 'What opened the current interval: observed (a pull listed the member) or written (groupsync added it); NULL is observed, by the pull recorded in history_pulls at first_seen_at.';
COMMENT ON COLUMN memberships.opened_run IS 'runs.id of the run whose pull or push opened the current interval, when opened_by is set; NULL for a pull outside a run.';

ALTER TABLE groups
    ADD COLUMN valid_from timestamptz,
    ADD COLUMN opened_by  text CHECK (opened_by IN ('observed', 'written')),
    ADD COLUMN opened_run bigint;
COMMENT ON COLUMN groups.valid_from IS 'Start of the group''s current (name, visibility) interval; NULL means first_seen_at.';
COMMENT ON COLUMN groups.opened_by IS 'What opened the current (name, visibility) interval: observed or written; NULL is observed, by the pull recorded in history_pulls at first_seen_at.';
COMMENT ON COLUMN groups.opened_run IS 'runs.id of the run that opened the current (name, visibility) interval, when opened_by is set.';

-- Rows inserted by a merge carry neither valid_from nor a run (a first load is a COPY the
-- merge does not widen); the merge instead records, once per commit that inserted rows
-- during a run, which run its transaction belonged to. Rows inserted by that transaction
-- have first_seen_at = at (both are the transaction's now()).
CREATE TABLE history_pulls (
    system text NOT NULL,
    at     timestamptz NOT NULL,
    run_id bigint NOT NULL,
    PRIMARY KEY (system, at)
);
COMMENT ON TABLE history_pulls IS 'One row per merge commit of a run that inserted rows: the run whose pull stored the rows with first_seen_at = at. Resolves opened_run of intervals opened by a first load or a newly listed record. Not pruned: one row per changing pull.';

CREATE TABLE membership_history (
    system           text NOT NULL,
    group_id         text NOT NULL,
    member_id        text NOT NULL,
    member_email_key text NOT NULL DEFAULT '',
    valid_from       timestamptz NOT NULL,
    valid_to         timestamptz NOT NULL,
    opened_by        text NOT NULL CHECK (opened_by IN ('observed', 'written')),
    opened_run       bigint,
    closed_by        text NOT NULL CHECK (closed_by IN ('observed', 'written')),
    closed_run       bigint
);
-- members_at and membership_changes look intervals up by group; retention by age.
CREATE INDEX membership_history_group_idx ON membership_history (system, group_id, valid_to);
CREATE INDEX membership_history_valid_to_idx ON membership_history (valid_to);
COMMENT ON TABLE membership_history IS 'Closed membership intervals: member_id was in group_id of system from valid_from until valid_to. Open intervals are the live memberships rows (see membership_intervals). Pruned past history.retention by valid_to.';
COMMENT ON COLUMN membership_history.member_email_key IS 'The member''s normalized email (identity key) when the interval closed: the membership''s inline email, else its account''s; empty when neither was known.';
COMMENT ON COLUMN membership_history.opened_by IS 'observed: a pull listed the member; written: groupsync added it (opened_run is the run).';
COMMENT ON COLUMN membership_history.closed_by IS 'observed: a complete listing no longer had the member, or its group was gone; written: groupsync removed it (closed_run is the run).';
COMMENT ON COLUMN membership_history.opened_run IS 'runs.id of the run whose pull or push opened the interval; NULL for a pull outside a run or before history was kept.';
COMMENT ON COLUMN membership_history.closed_run IS 'runs.id of the run whose pull or push closed the interval; NULL for a pull outside a run.';

CREATE TABLE group_history (
    system     text NOT NULL,
    group_id   text NOT NULL,
    name       text NOT NULL,
    visibility text NOT NULL,
    valid_from timestamptz NOT NULL,
    valid_to   timestamptz NOT NULL,
    opened_by  text NOT NULL CHECK (opened_by IN ('observed', 'written')),
    opened_run bigint,
    closed_by  text NOT NULL CHECK (closed_by IN ('observed', 'written')),
    closed_run bigint
);
CREATE INDEX group_history_group_idx ON group_history (system, group_id, valid_to);
CREATE INDEX group_history_valid_to_idx ON group_history (valid_to);
COMMENT ON TABLE group_history IS 'Closed (name, visibility) intervals of groups: the group had this name and visibility from valid_from until valid_to (when either changed or the group was tombstoned). Open intervals are the live groups rows (see group_intervals). Pruned past history.retention.';

CREATE VIEW membership_intervals AS
    SELECT system, group_id, member_id, member_email_key, valid_from, valid_to,
           opened_by, opened_run, closed_by, closed_run
      FROM membership_history
    UNION ALL
    SELECT m.system, m.group_id, m.account_id, coalesce(nullif(m.email, ''), a.email, ''),
           coalesce(m.valid_from, m.first_seen_at), NULL::timestamptz,
           coalesce(m.opened_by, 'observed'), coalesce(m.opened_run, p.run_id), NULL::text, NULL::bigint
      FROM memberships m
      LEFT JOIN accounts a ON a.system = m.system AND a.external_id = m.account_id
      LEFT JOIN history_pulls p ON m.valid_from IS NULL AND p.system = m.system AND p.at = m.first_seen_at
     WHERE m.deleted_at IS NULL;
COMMENT ON VIEW membership_intervals IS 'Every membership interval, closed (membership_history) and open (live memberships, valid_to NULL): member_id was in group_id of system from valid_from until valid_to.';

CREATE VIEW group_intervals AS
    SELECT system, group_id, name, visibility, valid_from, valid_to, opened_by, opened_run, closed_by, closed_run
      FROM group_history
    UNION ALL
    SELECT g.system, g.external_id, g.name, g.visibility, coalesce(g.valid_from, g.first_seen_at), NULL::timestamptz,
           coalesce(g.opened_by, 'observed'), coalesce(g.opened_run, p.run_id), NULL::text, NULL::bigint
      FROM groups g
      LEFT JOIN history_pulls p ON g.valid_from IS NULL AND p.system = g.system AND p.at = g.first_seen_at
     WHERE g.deleted_at IS NULL;
COMMENT ON VIEW group_intervals IS 'Every (name, visibility) interval of every group, closed (group_history) and open (live groups, valid_to NULL).';

CREATE VIEW membership_changes AS
    SELECT i.system, i.group_id, g.name AS group_name, i.member_id, i.member_email_key,
           i.valid_from AS at, 'joined'::text AS change, i.opened_by AS via, i.opened_run AS run_id
      FROM membership_intervals i
      LEFT JOIN groups g ON g.system = i.system AND g.external_id = i.group_id
    UNION ALL
    SELECT h.system, h.group_id, g.name, h.member_id, h.member_email_key,
           h.valid_to, 'left', h.closed_by, h.closed_run
      FROM membership_history h
      LEFT JOIN groups g ON g.system = h.system AND g.external_id = h.group_id;
COMMENT ON VIEW membership_changes IS 'Who joined or left which group in which system, when (at), and through what: via observed (a pull; run_id its run, if any) or written (groupsync''s push in run run_id). group_name is the group''s current name. What changed in X between T1 and T2: WHERE group_id = X AND at >= T1 AND at < T2.';

CREATE FUNCTION members_at(system text, group_id text, at timestamptz)
    RETURNS TABLE (member_id text, member_email_key text)
    LANGUAGE sql STABLE
    SET search_path FROM CURRENT
AS $$
    SELECT i.member_id, i.member_email_key
      FROM membership_intervals i
     WHERE i.system = members_at.system AND i.group_id = members_at.group_id
       AND i.valid_from <= members_at.at AND (i.valid_to IS NULL OR i.valid_to > members_at.at)
       -- A tombstoned group's memberships stay open (no listing of it can close them); the
       -- group's tombstone ends them.
       AND NOT EXISTS (SELECT 1 FROM groups g
                        WHERE g.system = members_at.system AND g.external_id = members_at.group_id
                          AND g.deleted_at IS NOT NULL AND g.deleted_at <= members_at.at)
     ORDER BY i.member_id
$$;
COMMENT ON FUNCTION members_at(text, text, timestamptz) IS 'The members (id, normalized email) of group group_id (external id) in system at instant at: the intervals with valid_from <= at < valid_to, none once the group is tombstoned (deleted_at <= at). Before history was kept (migration 021) only live members since first_seen_at are known.';
