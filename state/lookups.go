package state

import (
	"context"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/groupsync/groupsync/connectors"
)

// GroupRef is a group's id and name, for evaluating a flow's scope.
type GroupRef struct {
	ID      string
	Name    string
	Deleted bool
	// Visibility is the group's visibility as last listed.
	Visibility connectors.Visibility
}

// EachGroup streams every group of a system (tombstoned ones included) to fn.
func (s *Store) EachGroup(ctx context.Context, system string, fn func(GroupRef) error) error {
	rows, err := s.pool.Query(ctx, `SELECT external_id, name, deleted_at IS NOT NULL, visibility FROM groups WHERE system = $1`, system)
	if err != nil {
		return fmt.Errorf("state: groups of %s: %w", system, err)
	}
	defer rows.Close()
	var g GroupRef
	var vis string
	_, err = pgx.ForEachRow(rows, []any{&g.ID, &g.Name, &g.Deleted, &vis}, func() error {
		g.Visibility = connectors.Visibility(vis)
		return fn(g)
	})
	if err != nil {
		return fmt.Errorf("state: groups of %s: %w", system, err)
	}
	return nil
}

// EmailsMissingInTarget returns the target-side emails of in-scope source members that have
// no account in the target's mirror: the ones to look up in the target by email. An email
// the target answered it did not have less than missTTL ago (RecordAccountMisses) is left
// out; a missTTL of 0 leaves none out.
func (s *Store) EmailsMissingInTarget(ctx context.Context, source string, scopeIDs []string, target string,
	overrides map[string]string, missTTL time.Duration) ([]string, error) {
	ovSource, ovTarget := overrideArrays(overrides)
	rows, err := s.pool.Query(ctx, `
		SELECT DISTINCT coalesce(ov.target_email, e.email)
		  FROM memberships m
		  LEFT JOIN accounts a ON a.system = m.system AND a.external_id = m.account_id
		  -- Stored emails are normalized at ingest (connectors.NormalizeEmail): compare, never normalize.
		  CROSS JOIN LATERAL (SELECT coalesce(nullif(m.email, ''), a.email, '') AS email) e
		  LEFT JOIN unnest($4::text[], $5::text[]) AS ov(source_email, target_email) ON ov.source_email = e.email
		 WHERE m.system = $1 AND m.group_id = ANY($2::text[]) AND m.deleted_at IS NULL
		   AND m.member_type NOT LIKE 'group%' AND coalesce(ov.target_email, e.email) <> ''
		   AND NOT EXISTS (SELECT 1 FROM accounts t WHERE t.system = $3 AND t.email = coalesce(ov.target_email, e.email)
		                      AND t.deleted_at IS NULL)
		   AND NOT EXISTS (SELECT 1 FROM account_misses x WHERE x.system = $3 AND x.email = coalesce(ov.target_email, e.email)
		                      AND x.missed_at > now() - make_interval(secs => $6))
		 ORDER BY 1`, source, scopeIDs, target, ovSource, ovTarget, missTTL.Seconds())
	if err != nil {
		return nil, fmt.Errorf("state: emails missing in %s: %w", target, err)
	}
	emails, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return nil, fmt.Errorf("state: emails missing in %s: %w", target, err)
	}
	return emails, nil
}

// RecordAccountMisses records that system answered it has no account for each of emails
// (normalized, as EmailsMissingInTarget returns them), so that they are not asked for again
// within the TTL, and forgets the system's misses older than ttl: a person who left every
// synced group leaves no row behind for long. It is a write of the run (fenced).
func (s *Store) RecordAccountMisses(ctx context.Context, system string, emails []string, ttl time.Duration) error {
	if emails == nil {
		emails = []string{} // pgx sends a nil slice as NULL, and NOT (x = ANY(NULL)) is never true
	}
	// One statement: the old misses of emails asked again are updated, not deleted too.
	_, err := s.fencedExec(ctx, `WITH forgotten AS (
			DELETE FROM account_misses
			 WHERE system = $1 AND missed_at <= now() - make_interval(secs => $3) AND NOT (email = ANY($2::text[])))
		INSERT INTO account_misses (system, email) SELECT $1, unnest($2::text[])
		ON CONFLICT (system, email) DO UPDATE SET missed_at = now()`, system, emails, ttl.Seconds())
	if err != nil {
		return fmt.Errorf("state: record account misses of %s: %w", system, err)
	}
	return nil
}

// SettleUnattempted gives a run's changes still planned when pushing stopped the status
// (failed or skipped) and reason of why it stopped: failed when a target refused the
// credentials or the run lost its lease, skipped when a shutdown stopped it (not a failure;
// the next run plans them again). None is left looking pending.
func (s *Store) SettleUnattempted(ctx context.Context, runID int64, target, status, reason string) (int64, error) {
	if status != ChangeFailed && status != ChangeSkipped {
		return 0, fmt.Errorf("state: settle unattempted changes of run %d: status %q is neither failed nor skipped", runID, status)
	}
	tag, err := s.fencedExec(ctx, `UPDATE changes SET status = $4, reason = $3, updated_at = now()
		WHERE run_id = $1 AND status = 'planned' AND ($2 = '' OR target_system = $2)`, runID, target, reason, status)
	if err != nil {
		return 0, fmt.Errorf("state: settle unattempted changes of run %d: %w", runID, err)
	}
	return tag.RowsAffected(), nil
}
