package state

import (
	"context"
	"encoding/json"
	"fmt"

	"github.com/jackc/pgx/v5"
)

// Read queries for `groupsync runs`, `groupsync changes` and `groupsync plan`. They stream
// rows to a callback instead of returning slices, so a caller printing them holds one row
// at a time whatever its limit; each is bounded by its filter's Limit.

// DefaultHistoryLimit is the Limit a filter without one gets.
const DefaultHistoryLimit = 20

// RunFilter selects runs, newest first.
type RunFilter struct {
	Flow string // "" = every flow
	// Limit bounds the runs returned; <= 0 means DefaultHistoryLimit.
	Limit int
}

// EachRun calls fn with the runs f selects, newest first; an error from fn stops the
// listing and is returned.
func (s *Store) EachRun(ctx context.Context, f RunFilter, fn func(Run) error) error {
	if f.Limit <= 0 {
		f.Limit = DefaultHistoryLimit
	}
	rows, err := s.pool.Query(ctx, `SELECT `+runColumns+` FROM runs
		WHERE ($1 = '' OR flow = $1) ORDER BY id DESC LIMIT $2`, f.Flow, f.Limit)
	if err != nil {
		return fmt.Errorf("state: list runs: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		r, err := scanRun(rows)
		if err != nil {
			return fmt.Errorf("state: list runs: %w", err)
		}
		if err := fn(r); err != nil {
			return err
		}
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("state: list runs: %w", err)
	}
	return nil
}

// ChangeDetail is a change with the names a person reads beside its ids: the group's name
// (as planned, else as the mirror knows the source or target group) and the member's email
// (as matched, else as the mirror knows the target or source account).
type ChangeDetail struct {
	Change
	GroupName   string
	MemberEmail string
}

// EachChangeDetail calls fn with a run's changes that f selects (RunID, Status, AfterID,
// Limit; <= 0 means DefaultHistoryLimit), ordered by id; an error from fn stops it.
func (s *Store) EachChangeDetail(ctx context.Context, f ChangeFilter, fn func(ChangeDetail) error) error {
	if f.Limit <= 0 {
		f.Limit = DefaultHistoryLimit
	}
	// Names come from the mirror rows as they are now: the group may have been renamed
	// since, which is what an operator looking at it today recognises.
	rows, err := s.pool.Query(ctx, `
		SELECT c.id, c.run_id, c.flow, c.target_system, c.operation, coalesce(c.link_id, 0),
		       coalesce(c.source_system, ''), coalesce(c.source_group_id, ''), coalesce(c.target_group_id, ''),
		       coalesce(c.account_email, ''), coalesce(c.source_account_id, ''), coalesce(c.target_account_id, ''),
		       c.payload, c.status, coalesce(c.reason, ''), c.attempts, coalesce(c.last_error, ''),
		       coalesce(nullif(c.payload->>'name', ''), sg.name, tg.name, ''),
		       coalesce(nullif(c.account_email, ''), nullif(ta.email, ''), sa.email, '')
		  FROM changes c
		  LEFT JOIN groups sg ON sg.system = c.source_system AND sg.external_id = c.source_group_id
		  LEFT JOIN groups tg ON tg.system = c.target_system AND tg.external_id = c.target_group_id
		  LEFT JOIN accounts sa ON sa.system = c.source_system AND sa.external_id = c.source_account_id
		  LEFT JOIN accounts ta ON ta.system = c.target_system AND ta.external_id = c.target_account_id
		 WHERE c.run_id = $1 AND ($2 = '' OR c.target_system = $2) AND ($3 = '' OR c.operation = $3)
		   AND ($4 = '' OR c.status = $4) AND c.id > $5
		 ORDER BY c.id LIMIT $6`, f.RunID, f.TargetSystem, f.Operation, f.Status, f.AfterID, f.Limit)
	if err != nil {
		return fmt.Errorf("state: changes of run %d: %w", f.RunID, err)
	}
	defer rows.Close()
	for rows.Next() {
		d, err := scanChangeDetail(rows)
		if err != nil {
			return fmt.Errorf("state: changes of run %d: %w", f.RunID, err)
		}
		if err := fn(d); err != nil {
			return err
		}
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("state: changes of run %d: %w", f.RunID, err)
	}
	return nil
}

func scanChangeDetail(row pgx.Row) (ChangeDetail, error) {
	var d ChangeDetail
	var payload []byte
	c := &d.Change
	err := row.Scan(&c.ID, &c.RunID, &c.Flow, &c.TargetSystem, &c.Operation, &c.LinkID, &c.SourceSystem,
		&c.SourceGroupID, &c.TargetGroupID, &c.AccountEmail, &c.SourceAccountID, &c.TargetAccountID, &payload,
		&c.Status, &c.Reason, &c.Attempts, &c.LastError, &d.GroupName, &d.MemberEmail)
	if err != nil {
		return d, err
	}
	if len(payload) > 0 {
		if err := json.Unmarshal(payload, &c.Payload); err != nil {
			return d, fmt.Errorf("change %d payload: %w", c.ID, err)
		}
	}
	return d, nil
}
