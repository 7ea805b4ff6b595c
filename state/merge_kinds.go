package state

import (
	"context"
	"fmt"

	"github.com/groupsync/groupsync/connectors"
	"github.com/jackc/pgx/v5"
)

// GroupMerge streams one listing of a system's groups into the mirror. Begin it with
// BeginGroupMerge, Write every page, then Commit; defer Rollback. Not safe for concurrent
// use.
type GroupMerge struct{ m *merge }

// BeginGroupMerge starts a group merge for a registered system (see UpsertSystem). ctx
// must outlive the merge: cancelling it aborts the staging. Group merges of one system
// take turns.
func (s *Store) BeginGroupMerge(ctx context.Context, system string) (*GroupMerge, error) {
	m, err := s.beginMerge(ctx, "group", system, `CREATE TEMP TABLE stage_groups (
		seq bigint, external_id text, name text, description text, visibility text, state text,
		membership_managed boolean, is_system boolean, remote_created_at timestamptz,
		remote_modified_at timestamptz, raw text, hash text) ON COMMIT DROP`,
		"stage_groups", []string{"seq", "external_id", "name", "description", "visibility", "state",
			"membership_managed", "is_system", "remote_created_at", "remote_modified_at", "raw", "hash"})
	if err != nil {
		return nil, err
	}
	return &GroupMerge{m: m}, nil
}

// Write stages one page. Nothing from the page is staged when a record is invalid
// (*InvalidRecordError), and the merge is then aborted.
func (w *GroupMerge) Write(ctx context.Context, page []connectors.Group) error {
	if err := w.m.usable(); err != nil {
		return err
	}
	rows := make([][]any, len(page))
	for i, g := range page {
		c := recordChecker{system: w.m.system, kind: "group", id: g.ID}
		c.nonEmpty("id", g.ID)
		c.text("name", g.Name)
		c.text("description", g.Description)
		c.text("visibility", string(g.Visibility))
		c.text("state", g.State)
		c.text("hash", g.Hash)
		c.json("raw", g.Raw)
		if c.err != nil {
			return w.m.fail(c.err)
		}
		hash := hashOr(g.Hash, g.ID, g.Name, g.Description, string(g.Visibility), g.State, string(g.Raw))
		rows[i] = []any{nil, g.ID, g.Name, g.Description, string(g.Visibility), g.State,
			g.MembershipManaged, g.System, timeOrNull(g.CreatedAt), timeOrNull(g.ModifiedAt), rawText(g.Raw), hash}
	}
	return w.m.write(ctx, rows)
}

// Commit merges the staged groups. With complete (every page of the listing was read),
// live groups absent from the stream are tombstoned, and so are their memberships. An
// incomplete listing tombstones nothing.
func (w *GroupMerge) Commit(ctx context.Context, complete bool) (MergeCounts, error) {
	return w.m.commit(ctx, func(ctx context.Context, tx pgx.Tx) (MergeCounts, error) {
		var c MergeCounts
		// One statement: dedupe (last occurrence wins, so ON CONFLICT never meets a key
		// twice), classify against the mirror with a hash join, write only what differs.
		err := tx.QueryRow(ctx, `
WITH src AS (
	SELECT DISTINCT ON (external_id) * FROM stage_groups ORDER BY external_id, seq DESC
), cls AS (
	SELECT src.*, CASE
		WHEN g.external_id IS NULL THEN 'inserted'
		WHEN g.deleted_at IS NOT NULL THEN 'revived'
		WHEN (g.hash, g.name, g.description, g.visibility, g.state, g.membership_managed, g.is_system,
		      g.remote_created_at, g.remote_modified_at)
		     IS DISTINCT FROM
		     (src.hash, src.name, src.description, src.visibility, src.state, src.membership_managed,
		      src.is_system, src.remote_created_at, src.remote_modified_at) THEN 'updated'
		ELSE 'unchanged' END AS op
	FROM src LEFT JOIN groups g ON g.system = $1 AND g.external_id = src.external_id
), written AS (
	INSERT INTO groups AS g (system, external_id, name, description, visibility, state, membership_managed,
		is_system, remote_created_at, remote_modified_at, raw, hash, origin_system,
		last_sync_in_status, last_sync_in_date)
	SELECT $1, external_id, name, description, visibility, state, membership_managed,
		is_system, remote_created_at, remote_modified_at, raw::jsonb, hash, $1, 'succeeded', now()
	FROM cls WHERE op <> 'unchanged'
	ON CONFLICT (system, external_id) DO UPDATE SET
		name = excluded.name, description = excluded.description, visibility = excluded.visibility,
		state = excluded.state, membership_managed = excluded.membership_managed,
		is_system = excluded.is_system, remote_created_at = excluded.remote_created_at,
		remote_modified_at = excluded.remote_modified_at, raw = excluded.raw, hash = excluded.hash,
		updated_at = now(), deleted_at = NULL,
		origin_system = coalesce(g.origin_system, excluded.origin_system),
		last_sync_in_status = 'modified', last_sync_in_date = now(), last_sync_in_error = NULL
	WHERE g.deleted_at IS NOT NULL
	   OR (g.hash, g.name, g.description, g.visibility, g.state, g.membership_managed, g.is_system,
	       g.remote_created_at, g.remote_modified_at)
	      IS DISTINCT FROM
	      (excluded.hash, excluded.name, excluded.description, excluded.visibility, excluded.state,
	       excluded.membership_managed, excluded.is_system, excluded.remote_created_at,
	       excluded.remote_modified_at)
	RETURNING 1
)
SELECT count(*) FILTER (WHERE op = 'inserted'), count(*) FILTER (WHERE op = 'updated'),
       count(*) FILTER (WHERE op = 'revived'), count(*) FILTER (WHERE op = 'unchanged')
FROM cls`, w.m.system).Scan(&c.Inserted, &c.Updated, &c.Revived, &c.Unchanged)
		if err != nil {
			return c, fmt.Errorf("upsert groups: %w", err)
		}
		var membersGone int64
		if complete {
			err := tx.QueryRow(ctx, `
WITH gone AS (
	UPDATE groups g SET deleted_at = now(), updated_at = now(),
		last_sync_in_status = 'modified', last_sync_in_date = now(), last_sync_in_error = NULL
	WHERE g.system = $1 AND g.deleted_at IS NULL
	  AND NOT EXISTS (SELECT 1 FROM stage_groups s WHERE s.external_id = g.external_id)
	RETURNING g.external_id
), members AS (
	UPDATE memberships m SET deleted_at = now(), updated_at = now(),
		last_sync_in_status = 'modified', last_sync_in_date = now(), last_sync_in_error = NULL
	FROM gone WHERE m.system = $1 AND m.group_id = gone.external_id AND m.deleted_at IS NULL
	RETURNING 1
)
SELECT (SELECT count(*) FROM gone), (SELECT count(*) FROM members)`, w.m.system).Scan(&c.Tombstoned, &membersGone)
			if err != nil {
				return c, fmt.Errorf("tombstone groups: %w", err)
			}
		}
		set := `, ` + countGroups
		if membersGone > 0 {
			set += `, ` + countMemberships
		}
		return c, updateSystem(ctx, tx, w.m.system, set, &complete)
	})
}

// Rollback abandons the merge. It is a no-op after Commit, so it can be deferred.
func (w *GroupMerge) Rollback(ctx context.Context) { w.m.rollback(ctx) }

// AccountMerge streams one listing of a system's accounts into the mirror; same protocol
// as GroupMerge.
type AccountMerge struct{ m *merge }

// BeginAccountMerge starts an account merge for a registered system.
func (s *Store) BeginAccountMerge(ctx context.Context, system string) (*AccountMerge, error) {
	m, err := s.beginMerge(ctx, "account", system, `CREATE TEMP TABLE stage_accounts (
		seq bigint, external_id text, email text, display_name text, state text, raw text, hash text) ON COMMIT DROP`,
		"stage_accounts", []string{"seq", "external_id", "email", "display_name", "state", "raw", "hash"})
	if err != nil {
		return nil, err
	}
	return &AccountMerge{m: m}, nil
}

// Write stages one page; emails are stored normalized.
func (w *AccountMerge) Write(ctx context.Context, page []connectors.Account) error {
	if err := w.m.usable(); err != nil {
		return err
	}
	rows := make([][]any, len(page))
	for i, a := range page {
		c := recordChecker{system: w.m.system, kind: "account", id: a.ID}
		c.nonEmpty("id", a.ID)
		c.text("email", a.Email)
		c.text("display_name", a.DisplayName)
		c.text("state", a.State)
		c.text("hash", a.Hash)
		c.json("raw", a.Raw)
		if c.err != nil {
			return w.m.fail(c.err)
		}
		email := connectors.NormalizeEmail(a.Email)
		hash := hashOr(a.Hash, a.ID, email, a.DisplayName, a.State, string(a.Raw))
		rows[i] = []any{nil, a.ID, email, a.DisplayName, a.State, rawText(a.Raw), hash}
	}
	return w.m.write(ctx, rows)
}

// Commit merges the staged accounts; with complete, live accounts absent from the stream
// are tombstoned.
func (w *AccountMerge) Commit(ctx context.Context, complete bool) (MergeCounts, error) {
	return w.m.commit(ctx, func(ctx context.Context, tx pgx.Tx) (MergeCounts, error) {
		var c MergeCounts
		err := tx.QueryRow(ctx, `
WITH src AS (
	SELECT DISTINCT ON (external_id) * FROM stage_accounts ORDER BY external_id, seq DESC
), cls AS (
	SELECT src.*, CASE
		WHEN a.external_id IS NULL THEN 'inserted'
		WHEN a.deleted_at IS NOT NULL THEN 'revived'
		WHEN (a.hash, a.email, a.display_name, a.state) IS DISTINCT FROM (src.hash, src.email, src.display_name, src.state)
			THEN 'updated'
		ELSE 'unchanged' END AS op
	FROM src LEFT JOIN accounts a ON a.system = $1 AND a.external_id = src.external_id
), written AS (
	INSERT INTO accounts AS a (system, external_id, email, display_name, state, raw, hash, origin_system,
		last_sync_in_status, last_sync_in_date)
	SELECT $1, external_id, email, display_name, state, raw::jsonb, hash, $1, 'succeeded', now()
	FROM cls WHERE op <> 'unchanged'
	ON CONFLICT (system, external_id) DO UPDATE SET
		email = excluded.email, display_name = excluded.display_name, state = excluded.state,
		raw = excluded.raw, hash = excluded.hash, updated_at = now(), deleted_at = NULL,
		origin_system = coalesce(a.origin_system, excluded.origin_system),
		last_sync_in_status = 'modified', last_sync_in_date = now(), last_sync_in_error = NULL
	WHERE a.deleted_at IS NOT NULL
	   OR (a.hash, a.email, a.display_name, a.state)
	      IS DISTINCT FROM (excluded.hash, excluded.email, excluded.display_name, excluded.state)
	RETURNING 1
)
SELECT count(*) FILTER (WHERE op = 'inserted'), count(*) FILTER (WHERE op = 'updated'),
       count(*) FILTER (WHERE op = 'revived'), count(*) FILTER (WHERE op = 'unchanged')
FROM cls`, w.m.system).Scan(&c.Inserted, &c.Updated, &c.Revived, &c.Unchanged)
		if err != nil {
			return c, fmt.Errorf("upsert accounts: %w", err)
		}
		if complete {
			tag, err := tx.Exec(ctx, `
UPDATE accounts a SET deleted_at = now(), updated_at = now(),
	last_sync_in_status = 'modified', last_sync_in_date = now(), last_sync_in_error = NULL
WHERE a.system = $1 AND a.deleted_at IS NULL
  AND NOT EXISTS (SELECT 1 FROM stage_accounts s WHERE s.external_id = a.external_id)`, w.m.system)
			if err != nil {
				return c, fmt.Errorf("tombstone accounts: %w", err)
			}
			c.Tombstoned = tag.RowsAffected()
		}
		return c, updateSystem(ctx, tx, w.m.system, `, `+countAccounts, &complete)
	})
}

// Rollback abandons the merge. It is a no-op after Commit, so it can be deferred.
func (w *AccountMerge) Rollback(ctx context.Context) { w.m.rollback(ctx) }

// MembershipMerge streams the member listings of a system's groups into the mirror. A
// membership is tombstoned only within groups passed to CompleteGroup: a group whose member
// listing failed keeps its rows.
type MembershipMerge struct {
	m        *merge
	complete []string
}

// BeginMembershipMerge starts a membership merge for a registered system.
func (s *Store) BeginMembershipMerge(ctx context.Context, system string) (*MembershipMerge, error) {
	m, err := s.beginMerge(ctx, "membership", system, `CREATE TEMP TABLE stage_memberships (
		seq bigint, group_id text, account_id text, member_type text, role text, email text) ON COMMIT DROP`,
		"stage_memberships", []string{"seq", "group_id", "account_id", "member_type", "role", "email"})
	if err != nil {
		return nil, err
	}
	return &MembershipMerge{m: m}, nil
}

// Write stages one page of members (of one group or several).
func (w *MembershipMerge) Write(ctx context.Context, page []connectors.Member) error {
	if err := w.m.usable(); err != nil {
		return err
	}
	rows := make([][]any, len(page))
	for i, mb := range page {
		c := recordChecker{system: w.m.system, kind: "membership", id: mb.GroupID + "/" + mb.AccountID}
		c.nonEmpty("group_id", mb.GroupID)
		c.nonEmpty("account_id", mb.AccountID)
		c.text("type", mb.Type)
		c.text("role", mb.Role)
		c.text("email", mb.Email)
		if c.err != nil {
			return w.m.fail(c.err)
		}
		rows[i] = []any{nil, mb.GroupID, mb.AccountID, mb.Type, mb.Role, connectors.NormalizeEmail(mb.Email)}
	}
	return w.m.write(ctx, rows)
}

// CompleteGroup records that every member page of groupID was read (whether or not any
// member was written): at Commit its live memberships absent from the stream are
// tombstoned.
func (w *MembershipMerge) CompleteGroup(groupID string) {
	w.complete = append(w.complete, groupID)
}

// Commit merges the staged memberships. Memberships of groups the mirror does not hold
// are counted as Orphaned and not stored.
func (w *MembershipMerge) Commit(ctx context.Context) (MergeCounts, error) {
	return w.m.commit(ctx, func(ctx context.Context, tx pgx.Tx) (MergeCounts, error) {
		var c MergeCounts
		err := tx.QueryRow(ctx, `
WITH src AS (
	SELECT DISTINCT ON (group_id, account_id) group_id, account_id, member_type, role, email
	FROM stage_memberships ORDER BY group_id, account_id, seq DESC
), cls AS (
	SELECT src.*, CASE
		WHEN gr.external_id IS NULL THEN 'orphaned'
		WHEN m.account_id IS NULL THEN 'inserted'
		WHEN m.deleted_at IS NOT NULL THEN 'revived'
		WHEN (m.member_type, m.role, m.email) IS DISTINCT FROM (src.member_type, src.role, src.email) THEN 'updated'
		ELSE 'unchanged' END AS op
	FROM src
	LEFT JOIN groups gr ON gr.system = $1 AND gr.external_id = src.group_id
	LEFT JOIN memberships m ON m.system = $1 AND m.group_id = src.group_id AND m.account_id = src.account_id
), written AS (
	INSERT INTO memberships AS m (system, group_id, account_id, member_type, role, email, origin_system,
		last_sync_in_status, last_sync_in_date)
	SELECT $1, group_id, account_id, member_type, role, email, $1, 'succeeded', now()
	FROM cls WHERE op IN ('inserted', 'updated', 'revived')
	ON CONFLICT (system, group_id, account_id) DO UPDATE SET
		member_type = excluded.member_type, role = excluded.role, email = excluded.email,
		updated_at = now(), deleted_at = NULL,
		origin_system = coalesce(m.origin_system, excluded.origin_system),
		last_sync_in_status = 'modified', last_sync_in_date = now(), last_sync_in_error = NULL
	WHERE m.deleted_at IS NOT NULL
	   OR (m.member_type, m.role, m.email) IS DISTINCT FROM (excluded.member_type, excluded.role, excluded.email)
	RETURNING 1
)
SELECT count(*) FILTER (WHERE op = 'inserted'), count(*) FILTER (WHERE op = 'updated'),
       count(*) FILTER (WHERE op = 'revived'), count(*) FILTER (WHERE op = 'unchanged'),
       count(*) FILTER (WHERE op = 'orphaned')
FROM cls`, w.m.system).Scan(&c.Inserted, &c.Updated, &c.Revived, &c.Unchanged, &c.Orphaned)
		if err != nil {
			return c, fmt.Errorf("upsert memberships: %w", err)
		}
		if len(w.complete) > 0 {
			tag, err := tx.Exec(ctx, `
UPDATE memberships m SET deleted_at = now(), updated_at = now(),
	last_sync_in_status = 'modified', last_sync_in_date = now(), last_sync_in_error = NULL
WHERE m.system = $1 AND m.deleted_at IS NULL AND m.group_id = ANY ($2::text[])
  AND NOT EXISTS (SELECT 1 FROM stage_memberships s WHERE s.group_id = m.group_id AND s.account_id = m.account_id)`,
				w.m.system, w.complete)
			if err != nil {
				return c, fmt.Errorf("tombstone memberships: %w", err)
			}
			c.Tombstoned = tag.RowsAffected()
		}
		return c, updateSystem(ctx, tx, w.m.system, `, `+countMemberships, nil)
	})
}

// Rollback abandons the merge. It is a no-op after Commit, so it can be deferred.
func (w *MembershipMerge) Rollback(ctx context.Context) { w.m.rollback(ctx) }
