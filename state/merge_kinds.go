package state

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"time"

	"github.com/groupsync/groupsync/connectors"
	"github.com/jackc/pgx/v5"
)

// Classification pieces shared by the merges.
const (
	groupDiffers = `(cur.hash, cur.name, cur.name_key, cur.description, cur.visibility, cur.state, cur.membership_managed,
		      cur.is_system, cur.remote_created_at, cur.remote_modified_at)
		     IS DISTINCT FROM
		     (src.hash, src.name, src.name_key, src.description, src.visibility, src.state, src.membership_managed,
		      src.is_system, src.remote_created_at, src.remote_modified_at)`
	accountDiffers = `(cur.hash, cur.email, cur.display_name, cur.state)
		     IS DISTINCT FROM (src.hash, src.email, src.display_name, src.state)`
)

// GroupMerge streams one listing of a system's groups into the mirror. Begin it with
// BeginGroupMerge, Write every page, then Commit; defer Rollback. Not safe for concurrent
// use.
type GroupMerge struct{ m *merge }

// BeginGroupMerge starts a group merge for a registered system (see UpsertSystem). ctx
// must outlive the merge: cancelling it aborts the staging. Group merges of one system
// stage at the same time and apply in turns, each against the mirror as the previous one
// left it.
func (s *Store) BeginGroupMerge(ctx context.Context, system string) (*GroupMerge, error) {
	m, err := s.beginMerge(ctx, "group", system, mergeShape{table: "groups", stageCols: `(
		seq bigint, external_id text, name text, name_key text, description text, visibility text, state text,
		membership_managed boolean, is_system boolean, remote_created_at timestamptz,
		remote_modified_at timestamptz, raw text, hash text)`, deltaCols: `(op text, external_id text, name text, name_key text,
		description text, visibility text, state text, membership_managed boolean, is_system boolean,
		remote_created_at timestamptz, remote_modified_at timestamptz, raw text, hash text)`,
		columns: []string{"seq", "external_id", "name", "name_key", "description", "visibility", "state",
			"membership_managed", "is_system", "remote_created_at", "remote_modified_at", "raw", "hash"}}, nil)
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
	rows := make(groupRows, len(page))
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
		rows[i] = groupRow{id: g.ID, name: g.Name, nameKey: connectors.NormalizeName(g.Name), description: g.Description, visibility: string(g.Visibility),
			state: g.State, managed: g.MembershipManaged, system: g.System,
			created: timeOrNull(g.CreatedAt), modified: timeOrNull(g.ModifiedAt), raw: rawText(g.Raw),
			hash: hashOr(g.Hash, g.ID, g.Name, g.Description, string(g.Visibility), g.State, string(g.Raw))}
	}
	for i := range rows {
		w.m.noteKey(rows[i].id, "")
		w.m.seq++
		rows[i].seq = w.m.seq
	}
	return w.m.write(ctx, rows)
}

type groupRow struct {
	seq                                               int64
	id, name, nameKey, description, visibility, state string
	managed, system                                   bool
	created, modified                                 *time.Time
	raw                                               *string
	hash                                              string
}

type groupRows []groupRow

func (p groupRows) len() int { return len(p) }

// appendCopy: seq, then the record's fields in the staging table's order.
func (p groupRows) appendCopy(b []byte) []byte {
	for i := range p {
		r := &p[i]
		b = appendCopyInt(appendCopyRow(b, 1+12), r.seq)
		b = appendCopyText(b, r.id)
		b = appendCopyText(b, r.name)
		b = appendCopyText(b, r.nameKey)
		b = appendCopyText(b, r.description)
		b = appendCopyText(b, r.visibility)
		b = appendCopyText(b, r.state)
		b = appendCopyBool(b, r.managed)
		b = appendCopyBool(b, r.system)
		b = appendCopyTime(b, r.created)
		b = appendCopyTime(b, r.modified)
		b = appendCopyJSON(b, r.raw)
		b = appendCopyText(b, r.hash)
	}
	return b
}

// groupColumns are the mirror columns a merge writes for a new group, and groupValues the
// staged expressions for them (with $1 the system).
const (
	groupColumns = `system, external_id, name, name_key, description, visibility, state, membership_managed,
		is_system, remote_created_at, remote_modified_at, raw, hash, origin_system,
		last_sync_in_status, last_sync_in_date`
	groupValues = `$1, external_id, name, name_key, description, visibility, state, membership_managed,
		is_system, remote_created_at, remote_modified_at, raw::jsonb, hash, $1, 'succeeded', now()`
)

// Commit merges the staged groups. With complete (every page of the listing was read),
// live groups absent from the stream are tombstoned, and so are their memberships. An
// incomplete listing tombstones nothing.
func (w *GroupMerge) Commit(ctx context.Context, complete bool) (MergeCounts, error) {
	// The system had no groups: the live count is what was inserted.
	loaded := func(ctx context.Context, tx pgx.Tx, n int64) (MergeCounts, error) {
		if err := recordPull(ctx, tx, w.m.system, n); err != nil {
			return MergeCounts{}, err
		}
		return MergeCounts{Inserted: n}, updateSystem(ctx, tx, w.m.system, w.m.begun, fmt.Sprintf(`, group_count = %d`, n), &complete)
	}
	d := directCopy{table: "groups", columns: groupColumns, jsonb: 11, finish: loaded}
	return w.m.commit(ctx, d, func(ctx context.Context, tx pgx.Tx, first bool) (MergeCounts, error) {
		if first {
			// Every staged group is new and there is nothing to tombstone: insert them
			// without classifying.
			tag, err := tx.Exec(ctx, `INSERT INTO groups (`+groupColumns+`)
				SELECT `+groupValues+` FROM (`+w.m.source("*", "external_id")+`) src`, w.m.system)
			if err != nil {
				return MergeCounts{}, fmt.Errorf("insert groups: %w", err)
			}
			return loaded(ctx, tx, tag.RowsAffected())
		}
		return w.applyStaged(ctx, tx, complete)
	})
}

// applyStaged merges the staged groups into a mirror that has some: it classifies them
// into the delta table, records history, writes the delta and counts.
func (w *GroupMerge) applyStaged(ctx context.Context, tx pgx.Tx, complete bool) (MergeCounts, error) {
	deltaRows, err := w.classifyDelta(ctx, tx, complete)
	if err != nil {
		return MergeCounts{}, err
	}
	if err := analyzeDelta(ctx, tx, w.m.area.delta, deltaRows); err != nil {
		return MergeCounts{}, err
	}
	if err := groupMergeHistory(ctx, tx, w.m.system, w.m.area.delta, deltaRows); err != nil {
		return MergeCounts{}, err
	}
	c, membersGone, err := w.writeDelta(ctx, tx)
	if err != nil {
		return c, err
	}
	if err := recordPull(ctx, tx, w.m.system, c.Inserted); err != nil {
		return c, err
	}
	distinct, err := w.m.distinct(ctx, tx, "external_id")
	if err != nil {
		return c, err
	}
	c.Unchanged = distinct - c.Inserted - c.Updated - c.Revived
	set := `, ` + countGroups
	if membersGone > 0 {
		set += `, ` + countMemberships
	}
	return c, updateSystem(ctx, tx, w.m.system, w.m.begun, set, &complete)
}

// classifyDelta fills the delta table with the keys that need a write (staged keys, and
// the mirror's live keys when the listing is complete) and returns how many.
func (w *GroupMerge) classifyDelta(ctx context.Context, tx pgx.Tx, complete bool) (int64, error) {
	// Two statements. The first makes one pass over the system's groups: it takes
	// the stream (deduped when a key repeated: last occurrence wins), full-joins it
	// to the mirror to classify every key, and keeps only the keys that need a
	// write in the delta table. Unchanged rows stop there: nothing is written for
	// them. A FULL JOIN must be a hash or merge join, so stale statistics cannot
	// turn it into a nested loop over the staging table. Writing the delta to a
	// table rather than a CTE read by several DML statements avoids materializing
	// every classified row: the no-op merge of 200k memberships is three times
	// faster this way.
	tag, err := tx.Exec(ctx, `
INSERT INTO `+w.m.area.delta+`
SELECT * FROM (
	SELECT CASE
		WHEN src.external_id IS NULL THEN
			CASE WHEN $2 AND cur.deleted_at IS NULL THEN 'tombstoned' ELSE 'absent' END
		WHEN cur.external_id IS NULL THEN 'inserted'
		WHEN cur.deleted_at IS NOT NULL THEN 'revived'
		WHEN `+groupDiffers+` THEN 'updated'
		ELSE 'unchanged' END AS op,
		coalesce(src.external_id, cur.external_id), src.name, src.name_key, src.description, src.visibility, src.state,
		src.membership_managed, src.is_system, src.remote_created_at, src.remote_modified_at, src.raw, src.hash
	FROM (`+w.m.source("*", "external_id")+`) src
	FULL JOIN (SELECT external_id, hash, name, name_key, description, visibility, state, membership_managed, is_system,
			remote_created_at, remote_modified_at, deleted_at
		FROM groups WHERE system = $1) cur ON cur.external_id = src.external_id
) classified WHERE op NOT IN ('unchanged', 'absent')`, w.m.system, complete)
	if err != nil {
		return 0, fmt.Errorf("classify groups: %w", err)
	}
	return tag.RowsAffected(), nil
}

// writeDelta applies the delta table to the mirror and counts it by operation, with the
// memberships that went with tombstoned groups.
func (w *GroupMerge) writeDelta(ctx context.Context, tx pgx.Tx) (c MergeCounts, membersGone int64, err error) {
	// New rows go in with a plain INSERT, not ON CONFLICT: speculative insertion
	// costs about 15% of a first load, and merges of one system and kind apply
	// under an advisory lock, so only a writer outside the merge path could race
	// us; that fails this merge with a unique violation (retried by the next pull)
	// and damages nothing.
	err = tx.QueryRow(ctx, `
WITH inserted AS (
	INSERT INTO groups (`+groupColumns+`)
	SELECT `+groupValues+`
	FROM `+w.m.area.delta+` WHERE op = 'inserted'
	RETURNING 1
), updated AS (
	UPDATE groups g SET
		name = d.name, name_key = d.name_key, description = d.description, visibility = d.visibility,
		state = d.state, membership_managed = d.membership_managed,
		is_system = d.is_system, remote_created_at = d.remote_created_at,
		remote_modified_at = d.remote_modified_at, raw = d.raw::jsonb, hash = d.hash,
		updated_at = now(), deleted_at = NULL, `+reopenedGroup(`$2::bigint`)+`,
		origin_system = coalesce(g.origin_system, $1),
		last_sync_in_status = 'modified', last_sync_in_date = now(), last_sync_in_error = NULL
	FROM `+w.m.area.delta+` d WHERE d.op IN ('updated', 'revived') AND g.system = $1 AND g.external_id = d.external_id
	RETURNING 1
), gone AS (
	UPDATE groups g SET deleted_at = now(), updated_at = now(),
		last_sync_in_status = 'modified', last_sync_in_date = now(), last_sync_in_error = NULL
	FROM `+w.m.area.delta+` d WHERE d.op = 'tombstoned' AND g.system = $1 AND g.external_id = d.external_id
	RETURNING 1
), members_gone AS (
	-- A tombstoned group's members are gone with it; nobody will list them again.
	UPDATE memberships m SET deleted_at = now(), updated_at = now(),
		last_sync_in_status = 'modified', last_sync_in_date = now(), last_sync_in_error = NULL
	FROM `+w.m.area.delta+` d WHERE d.op = 'tombstoned' AND m.system = $1 AND m.group_id = d.external_id AND m.deleted_at IS NULL
	RETURNING 1
)
SELECT count(*) FILTER (WHERE op = 'inserted'), count(*) FILTER (WHERE op = 'updated'),
       count(*) FILTER (WHERE op = 'revived'), count(*) FILTER (WHERE op = 'tombstoned'),
       (SELECT count(*) FROM members_gone)
FROM `+w.m.area.delta, w.m.system, runArg(ctx)).Scan(&c.Inserted, &c.Updated, &c.Revived, &c.Tombstoned, &membersGone)
	if err != nil {
		return c, 0, fmt.Errorf("write groups: %w", err)
	}
	return c, membersGone, nil
}

// Rollback abandons the merge. It is a no-op after Commit, so it can be deferred.
func (w *GroupMerge) Rollback(ctx context.Context) { w.m.rollback(ctx) }

// AccountMerge streams one listing of a system's accounts into the mirror; same protocol
// as GroupMerge.
type AccountMerge struct{ m *merge }

// BeginAccountMerge starts an account merge for a registered system.
func (s *Store) BeginAccountMerge(ctx context.Context, system string) (*AccountMerge, error) {
	m, err := s.beginMerge(ctx, "account", system, mergeShape{table: "accounts",
		stageCols: `(seq bigint, external_id text, email text, display_name text, state text, raw text, hash text)`,
		deltaCols: `(op text, external_id text, email text, display_name text, state text, raw text, hash text)`,
		columns:   []string{"seq", "external_id", "email", "display_name", "state", "raw", "hash"}}, nil)
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
	rows := make(accountRows, len(page))
	for i, a := range page {
		r, err := newAccountRow(w.m.system, a)
		if err != nil {
			return w.m.fail(err)
		}
		rows[i] = r
	}
	for i := range rows {
		w.m.noteKey(rows[i].id, "")
		w.m.seq++
		rows[i].seq = w.m.seq
	}
	return w.m.write(ctx, rows)
}

// newAccountRow checks an account from a system (the text and JSON the mirror can store)
// and normalizes it into a row: the one way accounts enter the mirror, by a listing
// (AccountMerge) or a lookup (RecordAccounts).
func newAccountRow(system string, a connectors.Account) (accountRow, error) {
	c := recordChecker{system: system, kind: "account", id: a.ID}
	c.nonEmpty("id", a.ID)
	c.text("email", a.Email)
	c.text("display_name", a.DisplayName)
	c.text("state", a.State)
	c.text("hash", a.Hash)
	c.json("raw", a.Raw)
	if c.err != nil {
		return accountRow{}, c.err
	}
	email := connectors.NormalizeEmail(a.Email)
	return accountRow{id: a.ID, email: email, displayName: a.DisplayName, state: a.State, raw: rawText(a.Raw),
		hash: hashOr(a.Hash, a.ID, email, a.DisplayName, a.State, string(a.Raw))}, nil
}

type accountRow struct {
	seq                           int64
	id, email, displayName, state string
	raw                           *string
	hash                          string
}

type accountRows []accountRow

func (p accountRows) len() int { return len(p) }
func (p accountRows) appendCopy(b []byte) []byte {
	for i := range p {
		r := &p[i]
		b = appendCopyInt(appendCopyRow(b, 1+6), r.seq)
		b = appendCopyText(b, r.id)
		b = appendCopyText(b, r.email)
		b = appendCopyText(b, r.displayName)
		b = appendCopyText(b, r.state)
		b = appendCopyJSON(b, r.raw)
		b = appendCopyText(b, r.hash)
	}
	return b
}

// accountColumns and accountValues: as groupColumns and groupValues.
const (
	accountColumns = `system, external_id, email, display_name, state, raw, hash, origin_system,
		last_sync_in_status, last_sync_in_date`
	accountValues = `$1, external_id, email, display_name, state, raw::jsonb, hash, $1, 'succeeded', now()`
)

// Commit merges the staged accounts; with complete, live accounts absent from the stream
// are tombstoned.
func (w *AccountMerge) Commit(ctx context.Context, complete bool) (MergeCounts, error) {
	loaded := func(ctx context.Context, tx pgx.Tx, n int64) (MergeCounts, error) {
		return MergeCounts{Inserted: n}, updateSystem(ctx, tx, w.m.system, w.m.begun, fmt.Sprintf(`, account_count = %d`, n), nil)
	}
	d := directCopy{table: "accounts", columns: accountColumns, jsonb: 5, finish: loaded}
	return w.m.commit(ctx, d, func(ctx context.Context, tx pgx.Tx, first bool) (MergeCounts, error) {
		var c MergeCounts
		if first {
			tag, err := tx.Exec(ctx, `INSERT INTO accounts (`+accountColumns+`)
				SELECT `+accountValues+` FROM (`+w.m.source("*", "external_id")+`) src`, w.m.system)
			if err != nil {
				return c, fmt.Errorf("insert accounts: %w", err)
			}
			return loaded(ctx, tx, tag.RowsAffected())
		}
		// Same shape as the group merge.
		tag, err := tx.Exec(ctx, `
INSERT INTO `+w.m.area.delta+`
SELECT * FROM (
	SELECT CASE
		WHEN src.external_id IS NULL THEN
			CASE WHEN $2 AND cur.deleted_at IS NULL THEN 'tombstoned' ELSE 'absent' END
		WHEN cur.external_id IS NULL THEN 'inserted'
		WHEN cur.deleted_at IS NOT NULL THEN 'revived'
		WHEN `+accountDiffers+` THEN 'updated'
		ELSE 'unchanged' END AS op,
		coalesce(src.external_id, cur.external_id), src.email, src.display_name, src.state, src.raw, src.hash
	FROM (`+w.m.source("*", "external_id")+`) src
	FULL JOIN (SELECT external_id, hash, email, display_name, state, deleted_at FROM accounts WHERE system = $1) cur
		ON cur.external_id = src.external_id
) classified WHERE op NOT IN ('unchanged', 'absent')`, w.m.system, complete)
		if err != nil {
			return c, fmt.Errorf("classify accounts: %w", err)
		}
		if err := analyzeDelta(ctx, tx, w.m.area.delta, tag.RowsAffected()); err != nil {
			return c, err
		}
		err = tx.QueryRow(ctx, `
WITH inserted AS (
	INSERT INTO accounts (`+accountColumns+`)
	SELECT `+accountValues+`
	FROM `+w.m.area.delta+` WHERE op = 'inserted'
	RETURNING 1
), updated AS (
	UPDATE accounts a SET
		email = d.email, display_name = d.display_name, state = d.state,
		raw = d.raw::jsonb, hash = d.hash, updated_at = now(), deleted_at = NULL,
		origin_system = coalesce(a.origin_system, $1),
		last_sync_in_status = 'modified', last_sync_in_date = now(), last_sync_in_error = NULL
	FROM `+w.m.area.delta+` d WHERE d.op IN ('updated', 'revived') AND a.system = $1 AND a.external_id = d.external_id
	RETURNING 1
), gone AS (
	UPDATE accounts a SET deleted_at = now(), updated_at = now(),
		last_sync_in_status = 'modified', last_sync_in_date = now(), last_sync_in_error = NULL
	FROM `+w.m.area.delta+` d WHERE d.op = 'tombstoned' AND a.system = $1 AND a.external_id = d.external_id
	RETURNING 1
)
SELECT count(*) FILTER (WHERE op = 'inserted'), count(*) FILTER (WHERE op = 'updated'),
       count(*) FILTER (WHERE op = 'revived'), count(*) FILTER (WHERE op = 'tombstoned')
FROM `+w.m.area.delta, w.m.system).Scan(&c.Inserted, &c.Updated, &c.Revived, &c.Tombstoned)
		if err != nil {
			return c, fmt.Errorf("write accounts: %w", err)
		}
		distinct, err := w.m.distinct(ctx, tx, "external_id")
		if err != nil {
			return c, err
		}
		c.Unchanged = distinct - c.Inserted - c.Updated - c.Revived
		// Account merges never touch last_pull_complete / last_complete_pull_at: those say
		// how the system's group listing went, and a by-id or email lookup (complete=false)
		// must not overwrite the last complete pull (completeness is per kind).
		return c, updateSystem(ctx, tx, w.m.system, w.m.begun, `, `+countAccounts, nil)
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
	// known holds the system's group ids at Begin while the merge spools: a member of any
	// other group keeps the spool out of the mirror table (Commit stages it and decides,
	// against the groups then, whether the member is an orphan). Groups are never deleted,
	// so every group known at Begin is still there at Commit.
	known     map[string]struct{}
	lastKnown string     // the last group found in known
	rows      memberRows // Write's buffer, reused: write encodes the rows before it returns
	// gate leaves out the groups whose members match the mirror's (merge_digest.go); nil
	// on a first load, or when the mirror has too many groups to hold their digests.
	gate    *digestGate
	staging []byte // writeGated's buffer, reused
}

// BeginMembershipMerge starts a membership merge for a registered system.
func (s *Store) BeginMembershipMerge(ctx context.Context, system string) (*MembershipMerge, error) {
	w := &MembershipMerge{}
	// A spooling merge holds the system's group ids; past the bound it stages instead.
	canSpool := func(ctx context.Context) (bool, error) {
		known, err := s.groupIDs(ctx, system, s.knobs().maxGroups)
		w.known = known
		return known != nil, err
	}
	m, err := s.beginMerge(ctx, "membership", system, mergeShape{table: "memberships",
		stageCols: `(seq bigint, group_id text, account_id text, member_type text, role text, email text)`,
		deltaCols: `(op text, group_id text, account_id text, member_type text, role text, email text)`,
		columns:   []string{"seq", "group_id", "account_id", "member_type", "role", "email"}}, canSpool)
	if err != nil {
		return nil, err
	}
	w.m = m
	if m.spool == nil {
		if err := w.startGate(ctx, s); err != nil {
			m.rollback(ctx)
			return nil, fmt.Errorf("state: begin membership merge for system %q: %w", system, err)
		}
		m.settle = w.settle
		// Begin's time in the debug log includes the mirror's digests.
		m.beginTook += time.Since(m.opened)
		m.opened = time.Now()
	}
	return w, nil
}

// groupIDs are the external ids of the system's groups (tombstoned ones too), or nil when
// it has more than limit.
func (s *Store) groupIDs(ctx context.Context, system string, limit int) (map[string]struct{}, error) {
	rows, err := s.pool.Query(ctx, `SELECT external_id FROM groups WHERE system = $1 LIMIT $2`, system, limit+1)
	if err != nil {
		return nil, fmt.Errorf("list group ids: %w", err)
	}
	ids, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil || len(ids) > limit {
		if err != nil {
			return nil, fmt.Errorf("list group ids: %w", err)
		}
		return nil, nil
	}
	known := make(map[string]struct{}, len(ids))
	for _, id := range ids {
		known[id] = struct{}{}
	}
	return known, nil
}

// Write stages one page of members (of one group or several).
func (w *MembershipMerge) Write(ctx context.Context, page []connectors.Member) error {
	if err := w.m.usable(); err != nil {
		return err
	}
	// The rows are encoded before write returns, so one buffer serves every page.
	rows := w.rows[:0]
	for _, mb := range page {
		c := recordChecker{system: w.m.system, kind: "membership", id: mb.GroupID, sub: mb.AccountID}
		c.nonEmpty("group_id", mb.GroupID)
		c.nonEmpty("account_id", mb.AccountID)
		c.text("type", mb.Type)
		c.text("role", mb.Role)
		c.text("email", mb.Email)
		if c.err != nil {
			return w.m.fail(c.err)
		}
		rows = append(rows, memberRow{group: mb.GroupID, account: mb.AccountID, typ: mb.Type, role: mb.Role,
			email: connectors.NormalizeEmail(mb.Email)})
	}
	w.rows = rows
	for i := range rows {
		w.m.noteKey(rows[i].group, rows[i].account)
		w.noteGroup(rows[i].group)
		w.m.seq++
		rows[i].seq = w.m.seq
	}
	if w.gate != nil {
		return w.writeGated(ctx, rows)
	}
	return w.m.write(ctx, rows)
}

// writeGated stages the rows the gate does not hold, and the rows of groups it released
// since the last Write.
func (w *MembershipMerge) writeGated(ctx context.Context, rows memberRows) error {
	g := w.gate
	if g.err != nil {
		// Later merges of this store stage every member: they need no local disk.
		w.m.store.noSpool.Store(true)
		return w.m.fail(fmt.Errorf("state: membership merge for system %q: %w", w.m.system, g.err))
	}
	if w.m.dups {
		g.distrust()
	}
	b, n := w.staging[:0], 0
	for i := range rows {
		if !g.hold(&rows[i]) {
			b = rows[i].appendCopy(b)
			n++
		}
	}
	b, n = append(b, g.release...), n+g.releaseRows
	g.release, g.releaseRows = g.release[:0], 0
	w.staging = b
	return w.m.write(ctx, rawRows{b: b, n: n})
}

// noteGroup marks the spool unfit for the mirror table when a member's group was not in
// the mirror at Begin. Members come group by group, so the last group's answer is kept.
func (w *MembershipMerge) noteGroup(group string) {
	if w.known == nil || w.m.unfit || group == w.lastKnown {
		return
	}
	if _, ok := w.known[group]; !ok {
		w.m.unfit = true
		return
	}
	w.lastKnown = group
}

type memberRow struct {
	seq                              int64
	group, account, typ, role, email string
}

type memberRows []memberRow

func (p memberRows) len() int { return len(p) }
func (p memberRows) appendCopy(b []byte) []byte {
	for i := range p {
		b = p[i].appendCopy(b)
	}
	return b
}

// appendCopy appends the row in the staging layout, seq first.
func (r *memberRow) appendCopy(b []byte) []byte {
	b = appendCopyInt(appendCopyRow(b, 1+5), r.seq)
	b = appendCopyText(b, r.group)
	b = appendCopyText(b, r.account)
	b = appendCopyText(b, r.typ)
	b = appendCopyText(b, r.role)
	return appendCopyText(b, r.email)
}

// CompleteGroup records that every member page of groupID was read (whether or not any
// member was written): at Commit its live memberships absent from the stream are
// tombstoned. Write no more members of the group after it.
func (w *MembershipMerge) CompleteGroup(groupID string) {
	w.complete = append(w.complete, groupID)
	w.m.forgetKeys(groupID)
	if w.gate != nil {
		w.gate.complete(groupID)
	}
}

// membershipColumns and membershipValues: as groupColumns and groupValues.
const (
	membershipColumns = `system, group_id, account_id, member_type, role, email, origin_system,
		last_sync_in_status, last_sync_in_date`
	membershipValues = `$1, group_id, account_id, member_type, role, email, $1, 'succeeded', now()`
)

// Commit merges the staged memberships. Memberships of groups the mirror does not hold
// are counted as Orphaned and not stored.
func (w *MembershipMerge) Commit(ctx context.Context) (MergeCounts, error) {
	// Straight from the spool: every group was known and no key repeated, so nothing is
	// orphaned and the live count is what went in.
	loaded := func(ctx context.Context, tx pgx.Tx, n int64) (MergeCounts, error) {
		if err := recordPull(ctx, tx, w.m.system, n); err != nil {
			return MergeCounts{}, err
		}
		return MergeCounts{Inserted: n}, updateSystem(ctx, tx, w.m.system, w.m.begun, fmt.Sprintf(`, membership_count = %d`, n), nil)
	}
	d := directCopy{table: "memberships", columns: membershipColumns, finish: loaded}
	defer w.gate.close()
	if err := w.releaseHeld(ctx); err != nil {
		w.m.fail(err) // commit reports it, and rolls back
	}
	return w.m.commit(ctx, d, func(ctx context.Context, tx pgx.Tx, first bool) (MergeCounts, error) {
		if first {
			return w.firstLoad(ctx, tx)
		}
		return w.classify(ctx, tx)
	})
}

// releaseHeld stages what the gate still holds: the groups that never completed (their
// listing was cut short: they are compared, not tombstoned) and the rows released since
// the last Write.
func (w *MembershipMerge) releaseHeld(ctx context.Context) error {
	g := w.gate
	if g == nil || w.m.err != nil || w.m.ended {
		return nil
	}
	for id, h := range g.held {
		g.releaseGroup(id, h)
	}
	return w.writeGated(ctx, nil)
}

// firstLoad inserts the staged memberships of groups the mirror holds: the system has no
// memberships, so every one is new and nothing is tombstoned.
func (w *MembershipMerge) firstLoad(ctx context.Context, tx pgx.Tx) (MergeCounts, error) {
	var c MergeCounts
	tag, err := tx.Exec(ctx, `INSERT INTO memberships (`+membershipColumns+`)
		SELECT `+membershipValues+` FROM (`+w.m.source("group_id, account_id, member_type, role, email", "group_id, account_id")+`) src
		WHERE group_id IN (SELECT external_id FROM groups WHERE system = $1)`, w.m.system)
	if err != nil {
		return c, fmt.Errorf("insert memberships: %w", err)
	}
	c.Inserted = tag.RowsAffected()
	distinct, err := w.m.distinct(ctx, tx, "group_id, account_id")
	if err != nil {
		return c, err
	}
	c.Orphaned = distinct - c.Inserted
	c.Unchanged = w.m.left // groups the digests left out, verified empty
	if err := recordPull(ctx, tx, w.m.system, c.Inserted); err != nil {
		return c, err
	}
	// The system had no memberships, so the live count is what was inserted (recounting
	// 200k rows costs 40-150 ms).
	return c, updateSystem(ctx, tx, w.m.system, w.m.begun, fmt.Sprintf(`, membership_count = %d`, c.Inserted), nil)
}

// classify merges the staged memberships into a system that has some: same shape as the
// group merge; tombstones are limited to the completed groups, and members of groups the
// mirror lacks are left out (the mirror stores no membership without its group). Both
// lookups are hashed subplans over small sets. Groups the member digests left out are
// neither read nor tombstoned; when they are all there is, nothing is classified.
func (w *MembershipMerge) classify(ctx context.Context, tx pgx.Tx) (MergeCounts, error) {
	var c MergeCounts
	complete, only, narrow := w.compared()
	if narrow && len(only) == 0 {
		c.Unchanged = w.m.left
		return c, updateSystem(ctx, tx, w.m.system, w.m.begun, "", nil) // every group matched: the count stands
	}
	deltaRows, err := w.classifyDelta(ctx, tx, complete, only, narrow)
	if err != nil {
		return c, err
	}
	if err := analyzeDelta(ctx, tx, w.m.area.delta, deltaRows); err != nil {
		return c, err
	}
	if err := membershipMergeHistory(ctx, tx, w.m.system, w.m.area.delta, deltaRows); err != nil {
		return c, err
	}
	if c, err = w.writeDelta(ctx, tx); err != nil {
		return c, err
	}
	if err := recordPull(ctx, tx, w.m.system, c.Inserted); err != nil {
		return c, err
	}
	distinct, err := w.m.distinct(ctx, tx, "group_id, account_id")
	if err != nil {
		return c, err
	}
	c.Unchanged = distinct - c.Inserted - c.Updated - c.Revived - c.Orphaned + w.m.left
	// The count moves by what this merge changed: a no-op merge reads no extra rows.
	// The engine's own membership writes keep it in step the same way.
	return c, updateSystem(ctx, tx, w.m.system, w.m.begun,
		fmt.Sprintf(`, membership_count = membership_count + %d`, c.Inserted+c.Revived-c.Tombstoned), nil)
}

// compared says what classify compares: complete is the completed groups the digests did
// not leave out (their members absent from the stream are tombstoned). With narrow, some
// group was left out, and only the mirror rows of the groups in only (the staged and the
// completed ones) are read: the others cannot change. Without it, every row of the system
// is read, as before digests (a left-out group's rows are then found unlisted and not
// tombstoned: written nothing).
func (w *MembershipMerge) compared() (complete, only []string, narrow bool) {
	complete = make([]string, 0, len(w.complete))
	for _, id := range w.complete {
		if !w.gate.left(id) {
			complete = append(complete, id)
		}
	}
	g := w.gate
	if g == nil || g.restored || len(g.skipped) == 0 || g.staged == nil {
		return complete, nil, false
	}
	// Each group once: a group read twice would be classified twice.
	seen := make(map[string]struct{}, len(g.staged)+len(complete))
	only = make([]string, 0, len(g.staged)+len(complete))
	for _, ids := range [][]string{slices.Collect(maps.Keys(g.staged)), complete} {
		for _, id := range ids {
			if _, dup := seen[id]; !dup {
				seen[id] = struct{}{}
				only = append(only, id)
			}
		}
	}
	return complete, only, true
}

// classifyDelta fills the delta table with the staged keys (and, among the completed
// groups, the mirror's) that need a write, and returns how many.
func (w *MembershipMerge) classifyDelta(ctx context.Context, tx pgx.Tx, complete, only []string, narrow bool) (int64, error) {
	cur, args := `memberships WHERE system = $1`, []any{w.m.system, complete}
	if narrow {
		// One index scan per group read, whatever the statistics say.
		cur = `unnest($3::text[]) AS o(gid) CROSS JOIN LATERAL (SELECT * FROM memberships WHERE system = $1 AND group_id = o.gid) mb`
		args = append(args, only)
	}
	tag, err := tx.Exec(ctx, `
INSERT INTO `+w.m.area.delta+`
SELECT * FROM (
	SELECT CASE
		WHEN src.group_id IS NULL THEN
			CASE WHEN cur.deleted_at IS NULL AND cur.group_id IN (SELECT unnest($2::text[])) THEN 'tombstoned'
			ELSE 'absent' END
		WHEN src.group_id NOT IN (SELECT external_id FROM groups WHERE system = $1) THEN 'orphaned'
		WHEN cur.group_id IS NULL THEN 'inserted'
		WHEN cur.deleted_at IS NOT NULL THEN 'revived'
		WHEN (cur.member_type, cur.role, cur.email) IS DISTINCT FROM (src.member_type, src.role, src.email) THEN 'updated'
		ELSE 'unchanged' END AS op,
		coalesce(src.group_id, cur.group_id), coalesce(src.account_id, cur.account_id),
		src.member_type, src.role, src.email
	FROM (`+w.m.source("group_id, account_id, member_type, role, email", "group_id, account_id")+`) src
	FULL JOIN (SELECT group_id, account_id, member_type, role, email, deleted_at FROM `+cur+`) cur
		ON cur.group_id = src.group_id AND cur.account_id = src.account_id
) classified WHERE op NOT IN ('unchanged', 'absent')`, args...)
	if err != nil {
		return 0, fmt.Errorf("classify memberships: %w", err)
	}
	return tag.RowsAffected(), nil
}

// writeDelta applies the delta table to the mirror and counts it by operation.
func (w *MembershipMerge) writeDelta(ctx context.Context, tx pgx.Tx) (MergeCounts, error) {
	var c MergeCounts
	err := tx.QueryRow(ctx, `
WITH inserted AS (
	INSERT INTO memberships (`+membershipColumns+`)
	SELECT `+membershipValues+`
	FROM `+w.m.area.delta+` WHERE op = 'inserted'
	RETURNING 1
), updated AS (
	UPDATE memberships m SET
		member_type = d.member_type, role = d.role, email = d.email,
		updated_at = now(), deleted_at = NULL, `+reopenedMembership(`$2::bigint`)+`,
		origin_system = coalesce(m.origin_system, $1),
		last_sync_in_status = 'modified', last_sync_in_date = now(), last_sync_in_error = NULL
	FROM `+w.m.area.delta+` d WHERE d.op IN ('updated', 'revived')
	  AND m.system = $1 AND m.group_id = d.group_id AND m.account_id = d.account_id
	RETURNING 1
), gone AS (
	UPDATE memberships m SET deleted_at = now(), updated_at = now(),
		last_sync_in_status = 'modified', last_sync_in_date = now(), last_sync_in_error = NULL
	FROM `+w.m.area.delta+` d WHERE d.op = 'tombstoned'
	  AND m.system = $1 AND m.group_id = d.group_id AND m.account_id = d.account_id
	RETURNING 1
)
SELECT count(*) FILTER (WHERE op = 'inserted'), count(*) FILTER (WHERE op = 'updated'),
       count(*) FILTER (WHERE op = 'revived'), count(*) FILTER (WHERE op = 'orphaned'),
       count(*) FILTER (WHERE op = 'tombstoned')
FROM `+w.m.area.delta, w.m.system, runArg(ctx)).Scan(&c.Inserted, &c.Updated, &c.Revived, &c.Orphaned, &c.Tombstoned)
	if err != nil {
		return c, fmt.Errorf("write memberships: %w", err)
	}
	return c, nil
}

// Rollback abandons the merge. It is a no-op after Commit, so it can be deferred.
func (w *MembershipMerge) Rollback(ctx context.Context) {
	w.m.rollback(ctx)
	w.gate.close()
}
