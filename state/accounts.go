package state

import (
	"context"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/groupsync/groupsync/connectors"
)

// Fresh accounts (DESIGN.md, InvariantAccountsAreFresh). The mirror's accounts are what
// email matching and every member change rely on, so the ones a plan uses are re-read by
// id once they are older than accounts.max_age, when a membership's inline email
// contradicts them, or when a write to them failed. What a re-read finds is recorded by
// RecordAccounts, the one place that decides whether an account is live: returned and
// active (connectors.AccountInactive false). An account the system no longer returns, or
// returns deactivated, is tombstoned; the planner then neither adds it anywhere nor counts
// it as an unresolved member.

// StaleAccounts says which accounts of one system a plan relies on.
type StaleAccounts struct {
	System string
	// GroupIDs are the system's groups whose members' accounts the plan reads: a flow's
	// in-scope groups on its source, its linked groups on a target.
	GroupIDs []string
	// On a target, the accounts that source members' emails match are relied on too (the
	// accounts an add would write to): MatchSource's members of MatchScopeIDs, with the
	// flow's email overrides.
	MatchSource   string
	MatchScopeIDs []string
	Overrides     map[string]string
	// MaxAge is accounts.max_age: an account read longer ago is stale.
	MaxAge time.Duration
}

// StaleAccountIDs returns, ascending and after the id after, up to limit ids of accounts
// q relies on that must be read again: a member without an account row (even with an
// inline email: only the account says whether it is still active); an account row older than q.MaxAge (tombstones included, so a reactivated
// account comes back); an account whose membership's inline email changed since it was
// read and disagrees with it; an account whose membership of one of the groups ended
// after it was read; an account marked for a recheck (RecheckAccounts).
func (s *Store) StaleAccountIDs(ctx context.Context, q StaleAccounts, after string, limit int) ([]string, error) {
	ovSource, ovTarget := overrideArrays(q.Overrides)
	matchScope := q.MatchScopeIDs
	if matchScope == nil {
		matchScope = []string{}
	}
	rows, err := s.pool.Query(ctx, `
		WITH members AS (
			SELECT m.account_id AS id, m.email, m.updated_at FROM memberships m
			 WHERE m.system = $1 AND m.group_id = ANY($2::text[]) AND m.deleted_at IS NULL
			   AND m.member_type NOT LIKE 'group%' AND m.account_id > $3
		), desired AS (
			-- Stored emails are normalized at ingest (connectors.NormalizeEmail): compare, never normalize.
			SELECT DISTINCT coalesce(ov.target_email, coalesce(nullif(m.email, ''), a.email, '')) AS email
			  FROM memberships m
			  LEFT JOIN accounts a ON a.system = m.system AND a.external_id = m.account_id AND a.deleted_at IS NULL
			  LEFT JOIN unnest($6::text[], $7::text[]) AS ov(source_email, target_email)
			         ON ov.source_email = coalesce(nullif(m.email, ''), a.email, '')
			 WHERE $4 <> '' AND m.system = $4 AND m.group_id = ANY($5::text[]) AND m.deleted_at IS NULL
			   AND m.member_type NOT LIKE 'group%'
		)
		SELECT id FROM (
			SELECT mb.id FROM members mb
			  LEFT JOIN accounts a ON a.system = $1 AND a.external_id = mb.id
			 WHERE a.external_id IS NULL
			    OR a.checked_at < now() - make_interval(secs => $8::float8)
			    OR (mb.email <> '' AND a.email <> mb.email AND a.checked_at < mb.updated_at)
			UNION
			-- Someone left a group after their account was last read: when the system did
			-- it, the likeliest reason is a deleted or deactivated account, so the account
			-- is read again before anyone adds it back (one read when we removed them).
			SELECT m.account_id FROM memberships m
			  JOIN accounts a ON a.system = m.system AND a.external_id = m.account_id
			 WHERE m.system = $1 AND m.group_id = ANY($2::text[]) AND m.deleted_at > a.checked_at
			   AND m.member_type NOT LIKE 'group%' AND m.account_id > $3 AND a.deleted_at IS NULL
			UNION
			SELECT a.external_id FROM desired d
			  JOIN accounts a ON a.system = $1 AND a.email = d.email AND d.email <> ''
			 WHERE a.external_id > $3 AND a.checked_at < now() - make_interval(secs => $8::float8)
		) stale
		 ORDER BY id LIMIT $9`,
		q.System, q.GroupIDs, after, q.MatchSource, matchScope, ovSource, ovTarget, q.MaxAge.Seconds(), limit)
	if err != nil {
		return nil, fmt.Errorf("state: stale accounts of %s: %w", q.System, err)
	}
	ids, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return nil, fmt.Errorf("state: stale accounts of %s: %w", q.System, err)
	}
	return ids, nil
}

// GroupsWithStaleAccounts returns the groups among groupIDs with a live member whose
// account is stale by maxAge (or was never read): after a failed re-read, what the mirror
// says of those members is not positive knowledge, so no member is removed there.
func (s *Store) GroupsWithStaleAccounts(ctx context.Context, system string, groupIDs []string, maxAge time.Duration) ([]string, error) {
	rows, err := s.pool.Query(ctx, `
		SELECT DISTINCT m.group_id FROM memberships m
		  LEFT JOIN accounts a ON a.system = m.system AND a.external_id = m.account_id
		 WHERE m.system = $1 AND m.group_id = ANY($2::text[]) AND m.deleted_at IS NULL
		   AND m.member_type NOT LIKE 'group%'
		   AND ((a.external_id IS NULL AND m.email = '') OR a.checked_at < now() - make_interval(secs => $3::float8))
		 ORDER BY 1`, system, groupIDs, maxAge.Seconds())
	if err != nil {
		return nil, fmt.Errorf("state: groups with stale accounts in %s: %w", system, err)
	}
	ids, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return nil, fmt.Errorf("state: groups with stale accounts in %s: %w", system, err)
	}
	return ids, nil
}

// RecordAccounts records what a read of accounts by id or by email found: found are the
// accounts the system returned, missing the ids asked for that it did not return (deleted:
// only pass them when the read completed). Every row touched is marked checked now; a
// found, active account is live (revived if it was tombstoned), a found inactive account
// and a missing one are tombstoned. Content columns and updated_at change only when the
// record did. One short transaction; callers batch (a few thousand rows per call).
func (s *Store) RecordAccounts(ctx context.Context, system string, found []connectors.Account, missing []string) (MergeCounts, error) {
	var c MergeCounts
	n := len(found) + len(missing)
	if n == 0 {
		return c, nil
	}
	ids, emails, names, states, raws, hashes := make([]string, 0, n), make([]string, 0, n), make([]string, 0, n),
		make([]string, 0, n), make([]*string, 0, n), make([]string, 0, n)
	dead := make([]bool, 0, n)
	for _, a := range found {
		r, err := newAccountRow(system, a)
		if err != nil {
			return c, fmt.Errorf("state: record accounts of %s: %w", system, err)
		}
		ids, emails, names, states = append(ids, r.id), append(emails, r.email), append(names, r.displayName), append(states, r.state)
		raws, hashes = append(raws, r.raw), append(hashes, r.hash)
		dead = append(dead, connectors.AccountInactive(r.state))
	}
	for _, id := range missing {
		// An empty hash marks "not returned": the row keeps what it knew, tombstoned.
		ids, emails, names, states, raws, hashes = append(ids, id), append(emails, ""), append(names, ""),
			append(states, ""), append(raws, nil), append(hashes, "")
		dead = append(dead, true)
	}
	err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		if err := s.checkFence(ctx, tx); err != nil {
			return err
		}
		if err := tx.QueryRow(ctx, recordAccountsSQL, system, ids, emails, names, states, raws, hashes, dead).
			Scan(&c.Inserted, &c.Updated, &c.Revived, &c.Tombstoned, &c.Unchanged); err != nil {
			return fmt.Errorf("write: %w", err)
		}
		// The live count moves by this batch's deltas (a recount per batch would scan the
		// system's accounts once per thousand lookups).
		_, err := tx.Exec(ctx, `UPDATE systems SET account_count = account_count + $2 WHERE name = $1`,
			system, c.Inserted+c.Revived-c.Tombstoned)
		return err
	})
	if err != nil {
		return c, fmt.Errorf("state: record accounts of %s: %w", system, err)
	}
	return c, nil
}

// recordAccountsSQL classifies each row against the mirror, then upserts. "inserted"
// counts new live rows; a new row that is already dead (an id never seen, not returned)
// is stored as a tombstone and counted with the unchanged.
const recordAccountsSQL = `
WITH src AS (
	SELECT DISTINCT ON (external_id) *
	  FROM unnest($2::text[], $3::text[], $4::text[], $5::text[], $6::text[], $7::text[], $8::bool[])
	       AS s(external_id, email, display_name, state, raw, hash, dead)
	 ORDER BY external_id
), cls AS (
	SELECT s.*, a.external_id IS NOT NULL AS known, CASE
		WHEN a.external_id IS NULL THEN CASE WHEN s.dead THEN 'unchanged' ELSE 'inserted' END
		WHEN s.dead AND a.deleted_at IS NULL THEN 'tombstoned'
		WHEN NOT s.dead AND a.deleted_at IS NOT NULL THEN 'revived'
		WHEN s.hash <> '' AND (a.hash, a.email, a.display_name, a.state) IS DISTINCT FROM (s.hash, s.email, s.display_name, s.state)
			THEN 'updated'
		ELSE 'unchanged' END AS op
	  FROM src s
	  LEFT JOIN accounts a ON a.system = $1 AND a.external_id = s.external_id
), written AS (
	-- Runs to completion although nothing reads it (a data-modifying WITH always does).
	INSERT INTO accounts AS a (system, external_id, email, display_name, state, raw, hash, origin_system,
	                           last_sync_in_status, last_sync_in_date, checked_at, deleted_at)
	SELECT $1, external_id, email, display_name, state, raw::jsonb, hash, $1, 'succeeded', now(), now(),
	       CASE WHEN dead THEN now() END
	  FROM cls
	ON CONFLICT (system, external_id) DO UPDATE SET
		checked_at = now(),
		deleted_at = CASE WHEN excluded.deleted_at IS NULL THEN NULL ELSE coalesce(a.deleted_at, now()) END,
		email = CASE WHEN excluded.hash = '' THEN a.email ELSE excluded.email END,
		display_name = CASE WHEN excluded.hash = '' THEN a.display_name ELSE excluded.display_name END,
		state = CASE WHEN excluded.hash = '' THEN a.state ELSE excluded.state END,
		raw = CASE WHEN excluded.hash = '' THEN a.raw ELSE excluded.raw END,
		hash = CASE WHEN excluded.hash = '' THEN a.hash ELSE excluded.hash END,
		updated_at = CASE WHEN (a.deleted_at IS NULL) <> (excluded.deleted_at IS NULL)
		                    OR (excluded.hash <> '' AND (a.hash, a.email, a.display_name, a.state)
		                        IS DISTINCT FROM (excluded.hash, excluded.email, excluded.display_name, excluded.state))
		                  THEN now() ELSE a.updated_at END,
		last_sync_in_status = CASE WHEN (a.deleted_at IS NULL) <> (excluded.deleted_at IS NULL)
		                            OR (excluded.hash <> '' AND a.hash <> excluded.hash)
		                          THEN 'modified' ELSE a.last_sync_in_status END,
		last_sync_in_date = now(), last_sync_in_error = NULL
	RETURNING 1
)
SELECT count(*) FILTER (WHERE op = 'inserted'), count(*) FILTER (WHERE op = 'updated'),
       count(*) FILTER (WHERE op = 'revived'), count(*) FILTER (WHERE op = 'tombstoned'),
       count(*) FILTER (WHERE op = 'unchanged')
  FROM cls`

// RecheckAccounts marks accounts for a re-read at the next run whatever their age: a
// write to them failed, and a deleted or changed account is the likeliest reason.
func (s *Store) RecheckAccounts(ctx context.Context, system string, ids []string) error {
	if len(ids) == 0 {
		return nil
	}
	if _, err := s.fencedExec(ctx, `UPDATE accounts SET checked_at = '-infinity'
		WHERE system = $1 AND external_id = ANY($2::text[])`, system, ids); err != nil {
		return fmt.Errorf("state: mark accounts of %s for a recheck: %w", system, err)
	}
	return nil
}

// overrideArrays splits email overrides into parallel arrays for unnest.
func overrideArrays(overrides map[string]string) (source, target []string) {
	source, target = make([]string, 0, len(overrides)), make([]string, 0, len(overrides))
	for k, v := range overrides {
		source, target = append(source, k), append(target, v)
	}
	return source, target
}
