package state

import (
	"context"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
)

// Read queries for `groupsync status` and the metrics gauges. They read the views of
// migration 003 and the counters the merges keep on systems rows, so each is a small query
// whatever the size of the mirror.

// SystemCount is one system's live record counts, as the last merges left them.
type SystemCount struct {
	Name               string
	Kind               string
	Groups             int64
	Accounts           int64
	Memberships        int64
	LastCompletePullAt *time.Time
}

// SystemCounts returns every registered system's counters, sorted by name.
func (s *Store) SystemCounts(ctx context.Context) ([]SystemCount, error) {
	rows, err := s.pool.Query(ctx, `
		SELECT name, kind, group_count, account_count, membership_count, last_complete_pull_at
		  FROM systems ORDER BY name`)
	if err != nil {
		return nil, fmt.Errorf("state: system counts: %w", err)
	}
	out, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (SystemCount, error) {
		var c SystemCount
		err := r.Scan(&c.Name, &c.Kind, &c.Groups, &c.Accounts, &c.Memberships, &c.LastCompletePullAt)
		return c, err
	})
	if err != nil {
		return nil, fmt.Errorf("state: system counts: %w", err)
	}
	return out, nil
}

// PendingApproval is a blocked run no operator approved yet (view pending_approvals).
type PendingApproval struct {
	RunID          int64     `json:"run_id"`
	Flow           string    `json:"flow"`
	StartedAt      time.Time `json:"started_at"`
	BlockedReason  string    `json:"blocked_reason"`
	BlockedChanges int64     `json:"blocked_changes"`
	ApproveCommand string    `json:"approve_command"`
	RejectCommand  string    `json:"reject_command"`
}

// PendingApprovals returns the blocked runs awaiting an operator (not approved, rejected or
// superseded), newest first.
func (s *Store) PendingApprovals(ctx context.Context) ([]PendingApproval, error) {
	rows, err := s.pool.Query(ctx, `
		SELECT run_id, flow, started_at, coalesce(blocked_reason, ''), blocked_changes, approve_command, reject_command
		  FROM pending_approvals ORDER BY run_id DESC`)
	if err != nil {
		return nil, fmt.Errorf("state: pending approvals: %w", err)
	}
	out, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (PendingApproval, error) {
		var p PendingApproval
		err := r.Scan(&p.RunID, &p.Flow, &p.StartedAt, &p.BlockedReason, &p.BlockedChanges, &p.ApproveCommand, &p.RejectCommand)
		return p, err
	})
	if err != nil {
		return nil, fmt.Errorf("state: pending approvals: %w", err)
	}
	return out, nil
}

// Failure is a failed change of the last 7 days (view recent_failures).
type Failure struct {
	ChangeID     int64     `json:"change_id"`
	RunID        int64     `json:"run_id"`
	Flow         string    `json:"flow"`
	TargetSystem string    `json:"target_system"`
	Operation    string    `json:"operation"`
	Group        string    `json:"group"`
	AccountEmail string    `json:"account_email,omitempty"`
	Attempts     int       `json:"attempts"`
	LastError    string    `json:"last_error"`
	FailedAt     time.Time `json:"failed_at"`
}

// RecentFailures returns at most limit failed changes of the last 7 days, the most
// attempted first (those are the ones that keep failing), then the newest.
func (s *Store) RecentFailures(ctx context.Context, limit int) ([]Failure, error) {
	rows, err := s.pool.Query(ctx, `
		SELECT change_id, run_id, flow, target_system, operation, coalesce(group_name, ''),
		       coalesce(account_email, ''), attempts, coalesce(last_error, ''), failed_at
		  FROM recent_failures ORDER BY attempts DESC, failed_at DESC, change_id DESC LIMIT $1`, limit)
	if err != nil {
		return nil, fmt.Errorf("state: recent failures: %w", err)
	}
	out, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (Failure, error) {
		var f Failure
		err := r.Scan(&f.ChangeID, &f.RunID, &f.Flow, &f.TargetSystem, &f.Operation, &f.Group,
			&f.AccountEmail, &f.Attempts, &f.LastError, &f.FailedAt)
		return f, err
	})
	if err != nil {
		return nil, fmt.Errorf("state: recent failures: %w", err)
	}
	return out, nil
}

// LastSuccesses returns, per flow, when its latest succeeded run finished, counting only
// runs whose source pull was complete and healthy (an approval does not make an outage a
// success). Flows that never succeeded are absent.
func (s *Store) LastSuccesses(ctx context.Context) (map[string]time.Time, error) {
	rows, err := s.pool.Query(ctx, `
		SELECT flow, max(finished_at) FROM runs
		 WHERE status = 'succeeded' AND finished_at IS NOT NULL AND `+sourceComplete+` GROUP BY flow`)
	if err != nil {
		return nil, fmt.Errorf("state: last successful runs: %w", err)
	}
	defer rows.Close()
	out := map[string]time.Time{}
	for rows.Next() {
		var flow string
		var at time.Time
		if err := rows.Scan(&flow, &at); err != nil {
			return nil, fmt.Errorf("state: last successful runs: %w", err)
		}
		out[flow] = at
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("state: last successful runs: %w", err)
	}
	return out, nil
}
