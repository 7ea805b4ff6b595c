package state_test

import (
	"errors"
	"testing"
	"time"

	"github.com/groupsync/groupsync/state"
)

// finishedRun inserts a finished run of flow with status and the counts' JSON.
func (f *factory) finishedRun(flow, status, counts string, finished time.Time) int64 {
	f.tb.Helper()
	id := f.run(flow, "once", status)
	f.exec(`UPDATE runs SET counts = $2::jsonb, finished_at = $3 WHERE id = $1`, id, counts, finished)
	return id
}

// TestShrinkBaselineIsACompleteHealthyPull: the guard's baseline and a flow's last success
// are runs whose source pull was complete; a later run that succeeded without one (an
// approval while its source failed) moves neither.
func TestShrinkBaselineIsACompleteHealthyPull(t *testing.T) {
	t.Parallel()
	f := newFactory(t)
	ctx := t.Context()
	t0 := time.Date(2026, 1, 2, 3, 0, 0, 0, time.UTC)
	healthy := f.finishedRun("f", state.RunSucceeded, `{"source_groups": 24, "source_members": 48, "source_complete": 1}`, t0)
	f.finishedRun("f", state.RunSucceeded, `{"source_groups_listed": 0, "source_complete": 0}`, t0.Add(time.Hour))
	// A run recorded before source_complete existed counts when it planned.
	legacy := f.finishedRun("g", state.RunPartial, `{"source_groups": 3, "source_members": 9}`, t0)
	f.finishedRun("g", state.RunSucceeded, `{"source_groups_listed": 0}`, t0.Add(time.Hour))

	for flow, want := range map[string]int64{"f": healthy, "g": legacy} {
		base, err := f.s.LastBaselineRun(ctx, flow)
		if err != nil || base.ID != want {
			t.Errorf("flow %s: baseline = run %d (%v), want run %d", flow, base.ID, err, want)
		}
	}
	last, err := f.s.LastSuccesses(ctx)
	if err != nil || !last["f"].Equal(t0) {
		t.Errorf("flow f: last success = %v (%v), want %v (the healthy run)", last["f"], err, t0)
	}
}

// TestRejectRecordsWhoWhenWhy: a rejection clears a block, is recorded, and is refused for
// runs that are not awaiting an operator.
func TestRejectRecordsWhoWhenWhy(t *testing.T) {
	t.Parallel()
	f := newFactory(t)
	ctx := t.Context()
	blocked := f.run("f", "once", state.RunBlocked)
	succeeded := f.run("f", "once", state.RunSucceeded)
	r, err := f.s.RejectRun(ctx, blocked, "alice@ops", "stale HR export")
	if err != nil || r.RejectedAt == nil || r.RejectedBy != "alice@ops" || r.RejectReason != "stale HR export" {
		t.Fatalf("RejectRun = %+v, %v; want who, when and why recorded", r, err)
	}
	if _, err := f.s.RejectRun(ctx, succeeded, "alice@ops", ""); !errors.Is(err, state.ErrNotPending) {
		t.Errorf("rejecting a succeeded run = %v, want ErrNotPending", err)
	}
	if _, err := f.s.RejectRun(ctx, 999999, "alice@ops", ""); !errors.Is(err, state.ErrNotFound) {
		t.Errorf("rejecting an unknown run = %v, want ErrNotFound", err)
	}
	if err := f.s.ApproveRun(ctx, blocked, "bob"); !errors.Is(err, state.ErrNotPending) {
		t.Errorf("approving a rejected run = %v, want ErrNotPending", err)
	}
	if p, err := f.s.PendingApprovals(ctx); err != nil || len(p) != 0 {
		t.Errorf("pending approvals = %+v (%v), want none", p, err)
	}
}
