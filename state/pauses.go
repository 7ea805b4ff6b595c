package state

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
)

// Pauses. A paused flow's scheduled, once and triggered runs do nothing until it is
// resumed: a revert pauses its flow, because the flow's source usually still says what the
// reverted run did, and the next run would redo it at once. Pauses are kept after they
// end (flow_pauses), as the record of who stopped a flow, when and why.

// Pause is one pause of a flow.
type Pause struct {
	Flow     string    `json:"flow"`
	PausedAt time.Time `json:"paused_at"`
	PausedBy string    `json:"paused_by"`
	Reason   string    `json:"reason"`
	// RevertRunID is the revert run that paused the flow; 0 for groupsync pause.
	RevertRunID int64      `json:"revert_run_id,omitempty"`
	ResumedAt   *time.Time `json:"resumed_at,omitempty"`
	ResumedBy   string     `json:"resumed_by,omitempty"`
}

// ErrNotPaused is returned by ResumeFlow for a flow that is not paused.
var ErrNotPaused = errors.New("flow is not paused")

const pauseColumns = `flow, paused_at, paused_by, reason, coalesce(revert_run_id, 0), resumed_at, coalesce(resumed_by, '')`

func scanPause(row pgx.Row) (Pause, error) {
	var p Pause
	err := row.Scan(&p.Flow, &p.PausedAt, &p.PausedBy, &p.Reason, &p.RevertRunID, &p.ResumedAt, &p.ResumedBy)
	return p, err
}

// PauseFlow pauses flow, recording who, why and the revert run that asks for it (0 for
// none). A flow already paused keeps its pause: the one in force is returned with
// created false. With a fence in ctx (a revert run) the write is fenced by its lease.
func (s *Store) PauseFlow(ctx context.Context, flow, who, reason string, revertRun int64) (_ Pause, created bool, err error) {
	db, end, err := s.beginFenced(ctx)
	if err != nil {
		return Pause{}, false, err
	}
	defer func() { err = end(err) }()
	p, err := scanPause(db.QueryRow(ctx, `
		INSERT INTO flow_pauses (flow, paused_by, reason, revert_run_id) VALUES ($1, $2, $3, nullif($4, 0))
		ON CONFLICT (flow) WHERE resumed_at IS NULL DO NOTHING
		RETURNING `+pauseColumns, flow, who, reason, revertRun))
	if err == nil {
		return p, true, nil
	}
	if !errors.Is(err, pgx.ErrNoRows) {
		return p, false, fmt.Errorf("state: pause flow %q: %w", flow, err)
	}
	p, err = scanPause(db.QueryRow(ctx, `SELECT `+pauseColumns+` FROM flow_pauses WHERE flow = $1 AND resumed_at IS NULL`, flow))
	if err != nil {
		return p, false, fmt.Errorf("state: pause flow %q: read the pause in force: %w", flow, err)
	}
	return p, false, nil
}

// ResumeFlow ends flow's pause, recording who; ErrNotPaused if it is not paused.
func (s *Store) ResumeFlow(ctx context.Context, flow, who string) (Pause, error) {
	p, err := scanPause(s.pool.QueryRow(ctx, `
		UPDATE flow_pauses SET resumed_at = now(), resumed_by = $2
		 WHERE flow = $1 AND resumed_at IS NULL
		RETURNING `+pauseColumns, flow, who))
	if errors.Is(err, pgx.ErrNoRows) {
		return p, fmt.Errorf("state: resume flow %q: %w", flow, ErrNotPaused)
	}
	if err != nil {
		return p, fmt.Errorf("state: resume flow %q: %w", flow, err)
	}
	return p, nil
}

// ActivePause returns the pause in force on flow; ErrNotFound if the flow is not paused.
func (s *Store) ActivePause(ctx context.Context, flow string) (Pause, error) {
	p, err := scanPause(s.pool.QueryRow(ctx, `SELECT `+pauseColumns+` FROM flow_pauses WHERE flow = $1 AND resumed_at IS NULL`, flow))
	if errors.Is(err, pgx.ErrNoRows) {
		return p, ErrNotFound
	}
	if err != nil {
		return p, fmt.Errorf("state: pause of flow %q: %w", flow, err)
	}
	return p, nil
}

// ActivePauses returns the pauses in force, by flow.
func (s *Store) ActivePauses(ctx context.Context) (map[string]Pause, error) {
	rows, err := s.pool.Query(ctx, `SELECT `+pauseColumns+` FROM flow_pauses WHERE resumed_at IS NULL`)
	if err != nil {
		return nil, fmt.Errorf("state: paused flows: %w", err)
	}
	ps, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (Pause, error) { return scanPause(r) })
	if err != nil {
		return nil, fmt.Errorf("state: paused flows: %w", err)
	}
	out := make(map[string]Pause, len(ps))
	for _, p := range ps {
		out[p.Flow] = p
	}
	return out, nil
}
