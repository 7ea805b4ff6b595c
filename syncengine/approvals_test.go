package syncengine_test

import (
	"errors"
	"slices"
	"testing"

	"github.com/groupsync/groupsync/config"
	"github.com/groupsync/groupsync/connectors/simkit"
	"github.com/groupsync/groupsync/state"
	"github.com/groupsync/groupsync/syncengine"
)

// removalsEnv is a synced flow whose removal limit is 2, and the tenant it was seeded with.
func removalsEnv(t *testing.T) (*env, simkit.Tenant) {
	t.Helper()
	flow := defaultFlow("airtable", "devrev")
	flow.Limits.MaxMemberRemovals = 2
	e, _, tn := pairEnv(t, flow, 20, 2, 10)
	e.mustStatus(e.run("f", syncengine.RunOptions{}), state.RunSucceeded)
	return e, tn
}

// blockRemovals makes three members leave the source's first group (one above the limit)
// and runs the flow, which the guard blocks.
func (e *env) blockRemovals(tn simkit.Tenant) *syncengine.Result {
	e.t.Helper()
	tn.Groups[0].Members = tn.Groups[0].Members[3:]
	e.sim("airtable").Seed(tn)
	res := e.run("f", syncengine.RunOptions{})
	e.mustStatus(res, state.RunBlocked)
	return res
}

func (e *env) pending() []state.PendingApproval {
	e.t.Helper()
	p, err := e.store.PendingApprovals(e.t.Context())
	if err != nil {
		e.t.Fatal(err)
	}
	return p
}

// TestApprovalLeavesNoBlockBehind: a blocked run shows its held removals, and approving it
// pushes them without its own re-plan recording a new block: nothing awaits approval after.
func TestApprovalLeavesNoBlockBehind(t *testing.T) {
	t.Parallel()
	e, tn := removalsEnv(t)
	res := e.blockRemovals(tn)
	if n := e.changeCount(res.RunID, state.ChangeBlocked); n != 3 || res.Targets["devrev"].Blocked != 3 {
		t.Fatalf("blocked run holds %d changes (summary %d), want the 3 removals", n, res.Targets["devrev"].Blocked)
	}
	if p := e.pending(); len(p) != 1 || p[0].RunID != res.RunID || p[0].BlockedChanges != 3 {
		t.Fatalf("pending approvals = %+v, want run %d holding 3 changes", p, res.RunID)
	}
	applied, err := e.eng.Apply(t.Context(), res.RunID, true, "tester")
	if err != nil {
		t.Fatalf("Apply --allow-deletes: %v", err)
	}
	e.mustStatus(applied, state.RunSucceeded)
	e.assertMirrored("airtable", "devrev")
	if p := e.pending(); len(p) != 0 {
		t.Fatalf("after the approval, pending approvals = %+v, want none (the re-plan must not block)", p)
	}
	var blocked int
	if err := e.store.Pool().QueryRow(t.Context(), `SELECT count(*) FROM runs WHERE status = 'blocked' AND id > $1`, res.RunID).Scan(&blocked); err != nil || blocked != 0 {
		t.Fatalf("the approval's re-plan recorded %d blocked runs (%v), want 0", blocked, err)
	}
}

// TestNewerRunSupersedesOlderBlocks: only a flow's newest block awaits approval; an older
// one cannot be applied; a rejected one is cleared without pushing, recorded with who and why.
func TestNewerRunSupersedesOlderBlocks(t *testing.T) {
	t.Parallel()
	e, tn := removalsEnv(t)
	orig := slices.Clone(tn.Groups[0].Members)
	first := e.blockRemovals(tn)
	second := e.run("f", syncengine.RunOptions{})
	e.mustStatus(second, state.RunBlocked)
	if p := e.pending(); len(p) != 1 || p[0].RunID != second.RunID {
		t.Fatalf("pending approvals = %+v, want only the newer block, run %d", p, second.RunID)
	}
	if r, err := e.store.GetRun(t.Context(), first.RunID); err != nil || r.SupersededBy != second.RunID {
		t.Fatalf("run %d superseded by %d (%v), want %d", first.RunID, r.SupersededBy, err, second.RunID)
	}
	if _, err := e.eng.Apply(t.Context(), first.RunID, true, "tester"); !errors.Is(err, state.ErrNotPending) {
		t.Fatalf("applying a superseded block = %v, want ErrNotPending", err)
	}

	before := effects(e.sim("devrev"))
	r, err := e.store.RejectRun(t.Context(), second.RunID, "alice@ops", "HR import glitch")
	if err != nil {
		t.Fatalf("RejectRun: %v", err)
	}
	if r.RejectedAt == nil || r.RejectedBy != "alice@ops" || r.RejectReason != "HR import glitch" {
		t.Fatalf("rejected run = %+v, want who, when and why", r)
	}
	if p := e.pending(); len(p) != 0 {
		t.Fatalf("after the rejection, pending approvals = %+v, want none", p)
	}
	if _, err := e.eng.Apply(t.Context(), second.RunID, true, "tester"); !errors.Is(err, state.ErrNotPending) {
		t.Fatalf("applying a rejected run = %v, want ErrNotPending", err)
	}
	if _, err := e.store.RejectRun(t.Context(), second.RunID, "bob", ""); !errors.Is(err, state.ErrNotPending) {
		t.Fatalf("rejecting twice = %v, want ErrNotPending", err)
	}
	if got := effects(e.sim("devrev")); got != before {
		t.Fatalf("a rejection wrote to the target: %v → %v", before, got)
	}

	// The next run blocks again (the source is as it was); then the members come back, and
	// the successful run supersedes that block.
	third := e.run("f", syncengine.RunOptions{})
	e.mustStatus(third, state.RunBlocked)
	tn.Groups[0].Members = orig
	e.sim("airtable").Seed(tn)
	e.mustStatus(e.run("f", syncengine.RunOptions{}), state.RunSucceeded)
	if p := e.pending(); len(p) != 0 {
		t.Fatalf("after a successful run, pending approvals = %+v, want run %d superseded", p, third.RunID)
	}
}

// TestApprovalRefusedWhileSourceFails: the approval's re-plan cannot read the source, so
// nothing is pushed and the run still awaits approval.
func TestApprovalRefusedWhileSourceFails(t *testing.T) {
	t.Parallel()
	e, tn := removalsEnv(t)
	res := e.blockRemovals(tn)
	before := effects(e.sim("devrev"))
	_, err := e.engineWithDown("airtable").Apply(t.Context(), res.RunID, true, "tester")
	if !errors.Is(err, syncengine.ErrCheckFailed) {
		t.Fatalf("approving while the source is down = %v, want ErrCheckFailed", err)
	}
	if got := effects(e.sim("devrev")); got != before {
		t.Fatalf("a refused approval wrote to the target: %v → %v", before, got)
	}
	if p := e.pending(); len(p) != 1 || p[0].RunID != res.RunID {
		t.Fatalf("pending approvals = %+v, want run %d still awaiting", p, res.RunID)
	}
}

// TestOutageIsNeverAShrinkBaseline: a source outage, and an attempt to approve it, leave
// the last healthy pull as the baseline, so a later sharp shrink is still blocked.
func TestOutageIsNeverAShrinkBaseline(t *testing.T) {
	t.Parallel()
	flow := defaultFlow("airtable", "devrev")
	flow.DeleteGroups = config.DeleteArchive
	e, _, tn := pairEnv(t, flow, 20, 24, 2)
	e.mustStatus(e.run("f", syncengine.RunOptions{}), state.RunSucceeded)
	down := e.engineWithDown("airtable")
	outage, err := down.RunFlow(t.Context(), "f", syncengine.RunOptions{Trigger: syncengine.TriggerOnce})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := down.Apply(t.Context(), outage.RunID, true, "tester"); err == nil {
		t.Fatalf("the run of an outage (status %s) was approved", outage.Status)
	}
	tn.Groups = tn.Groups[:18]
	e.sim("airtable").Seed(tn)
	e.mustStatus(e.run("f", syncengine.RunOptions{}), state.RunBlocked)
}
