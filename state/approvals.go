package state

import (
	"context"
	"errors"
	"fmt"
	"time"
)

// Approvals. A blocked run awaits an operator until it is approved (`groupsync apply`),
// rejected (`groupsync reject`) or superseded by a newer run of its flow; view
// pending_approvals and the groupsync_runs_awaiting_approval gauge list only the runs
// still awaiting one, so at most one per flow.

// ErrNotPending is returned when a run is no longer awaiting an approval or a rejection.
var ErrNotPending = errors.New("not awaiting approval")

// CountSourceComplete is the run counter saying the run's source pull was complete and
// healthy (1) or not (0): only such runs are a shrink baseline or a flow's last success.
const CountSourceComplete = "source_complete"

// sourceComplete selects runs whose source pull was complete and healthy. Runs recorded
// before the counter existed count when they planned (they recorded source_groups): a run
// whose source failed never did.
const sourceComplete = `coalesce(counts->>'` + CountSourceComplete + `', CASE WHEN counts ? 'source_groups' THEN '1' END) = '1'`

// supersedes reports whether a run finishing in status makes its flow's older blocked runs
// stale: it planned afresh (succeeded, partial) or holds a newer block. A failed run planned
// nothing, and a dry run or stored plan pushed nothing, so the older block stands.
func supersedes(status string) bool {
	return status == RunSucceeded || status == RunPartial || status == RunBlocked
}

// supersedeBlocked marks the flow's blocked runs older than run id, still awaiting an
// operator, as superseded by it.
func supersedeBlocked(ctx context.Context, db execer, id int64) error {
	_, err := db.Exec(ctx, `
		UPDATE runs o SET superseded_by = n.id
		  FROM runs n
		 WHERE n.id = $1 AND o.flow = n.flow AND o.id < n.id AND o.status = 'blocked'
		   AND o.approved_at IS NULL AND o.rejected_at IS NULL AND o.superseded_by IS NULL`, id)
	if err != nil {
		return fmt.Errorf("state: supersede blocked runs older than run %d: %w", id, err)
	}
	return nil
}

// NotPending says why run r no longer awaits an approval (approved, rejected, superseded),
// or returns nil when it still may.
func NotPending(r Run) error {
	switch {
	case r.ApprovedAt != nil:
		return fmt.Errorf("run %d was already applied (by %s at %s): %w", r.ID, r.ApprovedBy, stamp(*r.ApprovedAt), ErrNotPending)
	case r.RejectedAt != nil:
		return fmt.Errorf("run %d was rejected (by %s at %s: %s): %w", r.ID, r.RejectedBy, stamp(*r.RejectedAt), orNone(r.RejectReason), ErrNotPending)
	case r.SupersededBy != 0:
		return fmt.Errorf("run %d was superseded by run %d of flow %q, a newer plan: %w; see groupsync status", r.ID, r.SupersededBy, r.Flow, ErrNotPending)
	}
	return nil
}

func stamp(t time.Time) string { return t.UTC().Format("2006-01-02 15:04:05Z") }

func orNone(s string) string {
	if s == "" {
		return "no reason given"
	}
	return s
}

// RejectRun clears a blocked run's block without pushing anything, recording who, when and
// why. Its changes stay blocked, as the record of what was refused. A run that is not
// blocked, or no longer awaits an operator, is refused with the reason.
func (s *Store) RejectRun(ctx context.Context, id int64, who, reason string) (Run, error) {
	r, err := s.GetRun(ctx, id)
	if err != nil {
		return r, err
	}
	if err := NotPending(r); err != nil {
		return r, fmt.Errorf("state: reject: %w", err)
	}
	if r.Status != RunBlocked {
		return r, fmt.Errorf("state: reject: run %d is %s: only a blocked run can be rejected: %w", id, r.Status, ErrNotPending)
	}
	tag, err := s.pool.Exec(ctx, `
		UPDATE runs SET rejected_at = now(), rejected_by = $2, reject_reason = nullif($3, '')
		 WHERE id = $1 AND status = 'blocked' AND approved_at IS NULL AND rejected_at IS NULL AND superseded_by IS NULL`,
		id, who, reason)
	if err != nil {
		return r, fmt.Errorf("state: reject run %d: %w", id, err)
	}
	if tag.RowsAffected() == 0 {
		return r, fmt.Errorf("state: reject run %d: %w (approved, rejected or superseded meanwhile)", id, ErrNotPending)
	}
	return s.GetRun(ctx, id)
}
