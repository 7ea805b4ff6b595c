package state

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
)

// Run statuses.
const (
	RunRunning   = "running"
	RunSucceeded = "succeeded"
	RunPartial   = "partial"
	RunFailed    = "failed"
	RunBlocked   = "blocked"
	RunDryRun    = "dry_run"
	RunPlanned   = "planned"
	// RunInterrupted: a shutdown stopped the run before it finished (not a failure: the
	// change in flight was let finish, and the next run carries on).
	RunInterrupted = "interrupted"
)

// CountNarrowedGroups is the run count of a run narrowed to chosen source groups
// (sync --once --group): such a run is never a baseline for min_source_ratio.
const CountNarrowedGroups = "narrowed_groups"

// Run is one execution of a flow.
type Run struct {
	ID            int64
	Flow          string
	Trigger       string
	Status        string
	DryRun        bool
	StartedAt     time.Time
	FinishedAt    *time.Time
	Counts        map[string]int64
	Error         string
	BlockedReason string
	ApprovedAt    *time.Time
	ApprovedBy    string
	Holder        string
	// RejectedAt, RejectedBy and RejectReason record `groupsync reject`.
	RejectedAt   *time.Time
	RejectedBy   string
	RejectReason string
	// SupersededBy is the newer run of the flow that made this blocked run stale, 0 if none.
	SupersededBy int64
	// RevertsRunID is, for a revert run (and the re-plan checking its apply), the run it
	// undoes; 0 otherwise.
	RevertsRunID int64
}

// NewRun is what CreateRun records.
type NewRun struct {
	Flow      string
	Trigger   string
	DryRun    bool
	Holder    string
	LeaseTerm int64
	Tick      *time.Time
	// RevertsRunID is the run a revert run undoes; 0 for other runs.
	RevertsRunID int64
}

// CreateRun inserts a run in status running and returns its id.
func (s *Store) CreateRun(ctx context.Context, r NewRun) (_ int64, err error) {
	db, end, err := s.beginFenced(ctx)
	if err != nil {
		return 0, err
	}
	defer func() { err = end(err) }()
	var id int64
	err = db.QueryRow(ctx, `
		INSERT INTO runs (flow, trigger, status, dry_run, holder, lease_term, tick, reverts_run_id)
		VALUES ($1, $2, 'running', $3, $4, $5, $6, nullif($7, 0)) RETURNING id`,
		r.Flow, r.Trigger, r.DryRun, r.Holder, r.LeaseTerm, r.Tick, r.RevertsRunID).Scan(&id)
	if err != nil {
		return 0, fmt.Errorf("state: create run of flow %q: %w", r.Flow, err)
	}
	return id, nil
}

// FinishRun records a run's outcome.
func (s *Store) FinishRun(ctx context.Context, id int64, status string, counts map[string]int64, runErr, blockedReason string) (err error) {
	c, err := json.Marshal(counts)
	if err != nil {
		return fmt.Errorf("state: finish run %d: %w", id, err)
	}
	db, end, err := s.beginFenced(ctx)
	if err != nil {
		return err
	}
	defer func() { err = end(err) }()
	_, err = db.Exec(ctx, `
		UPDATE runs SET status = $2, finished_at = now(), counts = $3, error = nullif($4, ''),
		       blocked_reason = nullif($5, '')
		 WHERE id = $1`, id, status, string(c), runErr, blockedReason) // text: exec mode would send []byte as bytea
	if err != nil {
		return fmt.Errorf("state: finish run %d: %w", id, err)
	}
	if supersedes(status) {
		if err := supersedeBlocked(ctx, db, id); err != nil {
			return err
		}
	}
	return nil
}

// ApproveRun marks a run approved by who. It is the approval's claim: a run already
// approved, rejected or superseded meanwhile is refused (ErrNotPending), so an approval and
// a rejection racing on one run never both take effect.
func (s *Store) ApproveRun(ctx context.Context, id int64, who string) (err error) {
	db, end, err := s.beginFenced(ctx)
	if err != nil {
		return err
	}
	defer func() { err = end(err) }()
	tag, err := db.Exec(ctx, `UPDATE runs SET approved_at = now(), approved_by = $2
		WHERE id = $1 AND approved_at IS NULL AND rejected_at IS NULL AND superseded_by IS NULL`, id, who)
	if err != nil {
		return fmt.Errorf("state: approve run %d: %w", id, err)
	}
	if tag.RowsAffected() == 0 {
		return fmt.Errorf("state: approve run %d: %w (approved, rejected or superseded meanwhile)", id, ErrNotPending)
	}
	return nil
}

const runColumns = `id, flow, trigger, status, dry_run, started_at, finished_at, counts, coalesce(error, ''),
	coalesce(blocked_reason, ''), approved_at, coalesce(approved_by, ''), coalesce(holder, ''),
	rejected_at, coalesce(rejected_by, ''), coalesce(reject_reason, ''), coalesce(superseded_by, 0),
	coalesce(reverts_run_id, 0)`

func scanRun(row pgx.Row) (Run, error) {
	var r Run
	var counts []byte
	err := row.Scan(&r.ID, &r.Flow, &r.Trigger, &r.Status, &r.DryRun, &r.StartedAt, &r.FinishedAt, &counts,
		&r.Error, &r.BlockedReason, &r.ApprovedAt, &r.ApprovedBy, &r.Holder,
		&r.RejectedAt, &r.RejectedBy, &r.RejectReason, &r.SupersededBy, &r.RevertsRunID)
	if err != nil {
		return r, err
	}
	r.Counts = map[string]int64{}
	if len(counts) > 0 {
		if err := json.Unmarshal(counts, &r.Counts); err != nil {
			return r, fmt.Errorf("run %d counts: %w", r.ID, err)
		}
	}
	return r, nil
}

// GetRun reads one run; ErrNotFound if there is none.
func (s *Store) GetRun(ctx context.Context, id int64) (Run, error) {
	r, err := scanRun(s.pool.QueryRow(ctx, `SELECT `+runColumns+` FROM runs WHERE id = $1`, id))
	if errors.Is(err, pgx.ErrNoRows) {
		return r, fmt.Errorf("state: run %d: %w", id, ErrNotFound)
	}
	if err != nil {
		return r, fmt.Errorf("state: run %d: %w", id, err)
	}
	return r, nil
}

// LastRuns returns the latest run of each flow, newest first.
func (s *Store) LastRuns(ctx context.Context) ([]Run, error) {
	return s.queryRuns(ctx, `SELECT DISTINCT ON (flow) `+runColumns+` FROM runs ORDER BY flow, id DESC`)
}

// RunsByStatus returns the runs in status, newest first, at most limit.
func (s *Store) RunsByStatus(ctx context.Context, status string, limit int) ([]Run, error) {
	return s.queryRuns(ctx, `SELECT `+runColumns+` FROM runs WHERE status = $1 AND approved_at IS NULL ORDER BY id DESC LIMIT $2`, status, limit)
}

// LastBaselineRun returns the flow's latest succeeded or partial run whose source pull was
// complete and healthy (sourceComplete): the source counts it recorded are what the guard
// compares a new pull against. A run approved while its source failed is never a baseline,
// so an outage cannot lower the bar for the next shrink. ErrNotFound if none.
func (s *Store) LastBaselineRun(ctx context.Context, flow string) (Run, error) {
	r, err := scanRun(s.pool.QueryRow(ctx, `SELECT `+runColumns+` FROM runs
		WHERE flow = $1 AND status IN ('succeeded', 'partial') AND `+sourceComplete+`
		  AND NOT counts ? '`+CountNarrowedGroups+`' ORDER BY id DESC LIMIT 1`, flow))
	if errors.Is(err, pgx.ErrNoRows) {
		return r, ErrNotFound
	}
	if err != nil {
		return r, fmt.Errorf("state: baseline run of flow %q: %w", flow, err)
	}
	return r, nil
}

func (s *Store) queryRuns(ctx context.Context, sql string, args ...any) ([]Run, error) {
	rows, err := s.pool.Query(ctx, sql, args...)
	if err != nil {
		return nil, fmt.Errorf("state: list runs: %w", err)
	}
	defer rows.Close()
	var out []Run
	for rows.Next() {
		r, err := scanRun(rows)
		if err != nil {
			return nil, fmt.Errorf("state: list runs: %w", err)
		}
		out = append(out, r)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("state: list runs: %w", err)
	}
	return out, nil
}

// RecordFlow stores the flow's source, targets and schedule as configured now, writing only
// when they changed.
func (s *Store) RecordFlow(ctx context.Context, name, source string, targets []string, schedule string) (err error) {
	db, end, err := s.beginFenced(ctx)
	if err != nil {
		return err
	}
	defer func() { err = end(err) }()
	_, err = db.Exec(ctx, `
		INSERT INTO flows AS f (name, source, targets, schedule) VALUES ($1, $2, $3, $4)
		ON CONFLICT (name) DO UPDATE SET source = excluded.source, targets = excluded.targets,
		       schedule = excluded.schedule, updated_at = now()
		 WHERE (f.source, f.targets, f.schedule) IS DISTINCT FROM (excluded.source, excluded.targets, excluded.schedule)`,
		name, source, targets, schedule)
	if err != nil {
		return fmt.Errorf("state: record flow %q: %w", name, err)
	}
	return nil
}
