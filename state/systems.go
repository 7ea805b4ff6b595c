package state

import (
	"context"
	"fmt"
	"time"
)

// UpsertSystem registers a configured system, or updates its kind and base URL. Merges
// refuse systems that were never registered.
func (s *Store) UpsertSystem(ctx context.Context, name, kind, baseURL string) error {
	_, err := s.pool.Exec(ctx, `
INSERT INTO systems (name, kind, base_url) VALUES ($1, $2, $3)
ON CONFLICT (name) DO UPDATE SET kind = excluded.kind, base_url = excluded.base_url
WHERE (systems.kind, systems.base_url) IS DISTINCT FROM (excluded.kind, excluded.base_url)`, name, kind, baseURL)
	if err != nil {
		return fmt.Errorf("state: upsert system %q: %w", name, err)
	}
	return nil
}

// System is a systems row.
type System struct {
	Name               string
	Kind               string
	BaseURL            string
	FirstSeenAt        time.Time
	LastPullStartedAt  *time.Time
	LastPullFinishedAt *time.Time
	LastPullComplete   *bool
	LastCompletePullAt *time.Time
	GroupCount         int64
	AccountCount       int64
	MembershipCount    int64
}

// System reads one systems row; ErrNotFound if the system was never registered.
func (s *Store) System(ctx context.Context, name string) (System, error) {
	var sys System
	err := s.pool.QueryRow(ctx, `
SELECT name, kind, base_url, first_seen_at, last_pull_started_at, last_pull_finished_at, last_pull_complete,
       last_complete_pull_at, group_count, account_count, membership_count
FROM systems WHERE name = $1`, name).Scan(&sys.Name, &sys.Kind, &sys.BaseURL, &sys.FirstSeenAt,
		&sys.LastPullStartedAt, &sys.LastPullFinishedAt, &sys.LastPullComplete, &sys.LastCompletePullAt,
		&sys.GroupCount, &sys.AccountCount, &sys.MembershipCount)
	if err != nil {
		return System{}, fmt.Errorf("state: read system %q: %w", name, translate(err))
	}
	return sys, nil
}
