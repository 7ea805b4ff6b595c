package state

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
)

// RunRequest is one `groupsync trigger` request.
type RunRequest struct {
	ID          int64
	Flow        string
	RequestedBy string
	RequestedAt time.Time
	ClaimedBy   string
	RunID       int64
	Outcome     string
}

// staleClaim is how long a claimed request may go without a run before another replica
// may claim it (the claiming replica died between claim and run).
const staleClaim = 10 * time.Minute

// RequestRun stores a request to run flow now and returns its id.
func (s *Store) RequestRun(ctx context.Context, flow, by string) (int64, error) {
	var id int64
	if err := s.pool.QueryRow(ctx, `INSERT INTO run_requests (flow, requested_by) VALUES ($1, $2) RETURNING id`,
		flow, by).Scan(&id); err != nil {
		return 0, fmt.Errorf("state: request a run of flow %q: %w", flow, err)
	}
	return id, nil
}

// ClaimRunRequest claims, for holder, the oldest pending request of one of flows, together
// with every other pending request of the same flow (one run serves them all). ok is false
// when none is pending. Replicas polling at once never claim the same request.
func (s *Store) ClaimRunRequest(ctx context.Context, flows []string, holder string) (flow string, ids []int64, ok bool, err error) {
	err = pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		err := tx.QueryRow(ctx, `
			SELECT flow FROM run_requests
			 WHERE run_id IS NULL AND outcome IS NULL AND flow = ANY($1::text[])
			   AND (claimed_at IS NULL OR claimed_at < now() - make_interval(secs => $2::float8))
			 ORDER BY id LIMIT 1 FOR UPDATE SKIP LOCKED`, flows, staleClaim.Seconds()).Scan(&flow)
		if errors.Is(err, pgx.ErrNoRows) {
			return nil
		}
		if err != nil {
			return err
		}
		rows, err := tx.Query(ctx, `
			UPDATE run_requests SET claimed_by = $2, claimed_at = now()
			 WHERE id IN (SELECT id FROM run_requests
			               WHERE flow = $1 AND run_id IS NULL AND outcome IS NULL
			                 AND (claimed_at IS NULL OR claimed_at < now() - make_interval(secs => $3::float8))
			               FOR UPDATE SKIP LOCKED)
			RETURNING id`, flow, holder, staleClaim.Seconds())
		if err != nil {
			return err
		}
		ids, err = pgx.CollectRows(rows, pgx.RowTo[int64])
		return err
	})
	if err != nil {
		return "", nil, false, fmt.Errorf("state: claim a run request: %w", err)
	}
	return flow, ids, len(ids) > 0, nil
}

// ServeRunRequests records the run that served the claimed requests ids.
func (s *Store) ServeRunRequests(ctx context.Context, ids []int64, runID int64) error {
	if _, err := s.pool.Exec(ctx, `UPDATE run_requests SET run_id = $2 WHERE id = ANY($1::bigint[])`, ids, runID); err != nil {
		return fmt.Errorf("state: record run %d for requests %v: %w", runID, ids, err)
	}
	return nil
}

// ReleaseRunRequests gives claimed requests back (the flow was busy: a later poll serves
// them once the run in progress ends).
func (s *Store) ReleaseRunRequests(ctx context.Context, ids []int64) error {
	if _, err := s.pool.Exec(ctx, `UPDATE run_requests SET claimed_by = NULL, claimed_at = NULL
		WHERE id = ANY($1::bigint[]) AND run_id IS NULL`, ids); err != nil {
		return fmt.Errorf("state: release run requests %v: %w", ids, err)
	}
	return nil
}

// RefuseRunRequests closes claimed requests without a run, saying why.
func (s *Store) RefuseRunRequests(ctx context.Context, ids []int64, outcome string) error {
	if _, err := s.pool.Exec(ctx, `UPDATE run_requests SET outcome = $2 WHERE id = ANY($1::bigint[])`, ids, outcome); err != nil {
		return fmt.Errorf("state: refuse run requests %v: %w", ids, err)
	}
	return nil
}

// GetRunRequest reads one request.
func (s *Store) GetRunRequest(ctx context.Context, id int64) (RunRequest, error) {
	var r RunRequest
	err := s.pool.QueryRow(ctx, `SELECT id, flow, requested_by, requested_at, coalesce(claimed_by, ''),
		       coalesce(run_id, 0), coalesce(outcome, '') FROM run_requests WHERE id = $1`, id).
		Scan(&r.ID, &r.Flow, &r.RequestedBy, &r.RequestedAt, &r.ClaimedBy, &r.RunID, &r.Outcome)
	if errors.Is(err, pgx.ErrNoRows) {
		return r, fmt.Errorf("state: run request %d: %w", id, ErrNotFound)
	}
	if err != nil {
		return r, fmt.Errorf("state: run request %d: %w", id, err)
	}
	return r, nil
}
