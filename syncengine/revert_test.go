package syncengine_test

import (
	"errors"
	"maps"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/groupsync/groupsync/connectors/simkit"
	"github.com/groupsync/groupsync/state"
	"github.com/groupsync/groupsync/syncengine"
)

// revertEnv is a synced flow airtable → devrev of 3 groups × 30 members whose limits let a
// bad run through, and the tenant it was seeded with.
func revertEnv(t *testing.T) (*env, simkit.Tenant) {
	t.Helper()
	flow := defaultFlow("airtable", "devrev")
	flow.Limits.MaxMemberRemovals, flow.Limits.MaxMemberRemovalsPercent, flow.Limits.MinSourceRatio = 100, 100, 0
	e, _, tn := pairEnv(t, flow, 100, 3, 30)
	e.mustStatus(e.run("f", syncengine.RunOptions{}), state.RunSucceeded)
	return e, tn
}

// members is each target group's member emails, by group name.
func members(s simkit.Sim) map[string][]string {
	out := map[string][]string{}
	for _, g := range s.Snapshot() {
		out[g.Name] = g.MemberEmails
	}
	return out
}

// badRun makes the source drop 20 members of each of its first two groups and runs the
// flow, which removes those 40 from the target.
func (e *env) badRun(tn simkit.Tenant) *syncengine.Result {
	e.t.Helper()
	bad := tn
	bad.Groups = slices.Clone(tn.Groups)
	for i := range 2 {
		bad.Groups[i].Members = slices.Clone(tn.Groups[i].Members[:10])
	}
	e.sim("airtable").Seed(bad)
	res := e.run("f", syncengine.RunOptions{})
	e.mustStatus(res, state.RunSucceeded)
	if res.Targets["devrev"].Removed != 40 {
		e.t.Fatalf("bad run removed %d members, want 40", res.Targets["devrev"].Removed)
	}
	return res
}

func (e *env) revert(of int64, dryRun bool) *syncengine.Result {
	e.t.Helper()
	res, err := e.eng.Revert(e.t.Context(), of, dryRun, "tester")
	if err != nil {
		e.t.Fatalf("Revert(%d): %v", of, err)
	}
	return res
}

func (e *env) apply(runID int64, allowDeletes bool) *syncengine.Result {
	e.t.Helper()
	res, err := e.eng.Apply(e.t.Context(), runID, allowDeletes, "tester")
	if err != nil {
		e.t.Fatalf("Apply(%d): %v", runID, err)
	}
	return res
}

func (e *env) assertMembers(want map[string][]string, what string) {
	e.t.Helper()
	if got := members(e.sim("devrev")); !maps.EqualFunc(got, want, slices.Equal) {
		e.t.Fatalf("%s: devrev members = %v, want %v", what, got, want)
	}
}

// skipReasons counts a run's skipped changes by reason.
func (e *env) skipReasons(runID int64) map[string]int {
	e.t.Helper()
	cs, err := e.store.Changes(e.t.Context(), state.ChangeFilter{RunID: runID, Status: state.ChangeSkipped, Limit: 1000})
	if err != nil {
		e.t.Fatal(err)
	}
	out := map[string]int{}
	for _, c := range cs {
		out[c.Reason]++
	}
	return out
}

// TestRevertRestoresExactlyTheRemovedMembers: a bad run removes 40 members; its revert plans
// 40 additions, pushes nothing until applied, and once applied the target holds exactly
// what it held before the bad run: 40 adds, nothing removed or created.
func TestRevertRestoresExactlyTheRemovedMembers(t *testing.T) {
	t.Parallel()
	e, tn := revertEnv(t)
	before := members(e.sim("devrev"))
	bad := e.badRun(tn)

	e.sim("devrev").Effects().Reset()
	rv := e.revert(bad.RunID, false)
	e.mustStatus(rv, state.RunPlanned)
	if s := rv.Targets["devrev"]; s.Planned != 40 || s.Skipped != 0 {
		t.Fatalf("revert plan: %+v, want 40 planned additions and nothing skipped", *s)
	}
	if n := effects(e.sim("devrev")); n != [3]int{} {
		t.Fatalf("planning the revert wrote to devrev: creates/adds/removes = %v", n)
	}
	run, err := e.store.GetRun(t.Context(), rv.RunID)
	if err != nil || run.Trigger != syncengine.TriggerRevert || run.RevertsRunID != bad.RunID {
		t.Fatalf("revert run = %+v (%v), want trigger revert of run %d", run, err, bad.RunID)
	}

	e.mustStatus(e.apply(rv.RunID, false), state.RunSucceeded)
	e.assertMembers(before, "after the revert")
	if n := effects(e.sim("devrev")); n != [3]int{0, 40, 0} {
		t.Fatalf("revert wrote creates/adds/removes = %v, want exactly the 40 adds", n)
	}
}

// TestRevertSkipsAMemberALaterRunReAdded: one of the removed members is added back by a
// later run before the revert: the revert does not add it again but lists it, skipped with
// the later run's id, and restores the other 39.
func TestRevertSkipsAMemberALaterRunReAdded(t *testing.T) {
	t.Parallel()
	e, tn := revertEnv(t)
	before := members(e.sim("devrev"))
	bad := e.badRun(tn)
	// The source gives one removed member back; the next run re-adds it.
	partly := tn
	partly.Groups = slices.Clone(tn.Groups)
	partly.Groups[0].Members = slices.Clone(tn.Groups[0].Members[:11])
	partly.Groups[1].Members = slices.Clone(tn.Groups[1].Members[:10])
	e.sim("airtable").Seed(partly)
	later := e.run("f", syncengine.RunOptions{})
	e.mustStatus(later, state.RunSucceeded)
	if later.Targets["devrev"].Added != 1 {
		t.Fatalf("later run added %d, want 1", later.Targets["devrev"].Added)
	}

	rv := e.revert(bad.RunID, false)
	e.mustStatus(rv, state.RunPlanned)
	want := map[string]int{"superseded_by_run " + itoa(later.RunID): 1}
	if got := e.skipReasons(rv.RunID); !maps.Equal(got, want) {
		t.Fatalf("revert skips = %v, want %v", got, want)
	}
	if rv.Targets["devrev"].Planned != 39 {
		t.Fatalf("revert plans %d changes, want the other 39", rv.Targets["devrev"].Planned)
	}
	e.sim("devrev").Effects().Reset()
	e.mustStatus(e.apply(rv.RunID, false), state.RunSucceeded)
	e.assertMembers(before, "after the revert")
	if n := effects(e.sim("devrev")); n != [3]int{0, 39, 0} {
		t.Fatalf("revert wrote creates/adds/removes = %v, want 39 adds", n)
	}
}

// TestRevertOfARevertRestoresTheOriginalOutcome: undoing the undo removes the 40 again,
// and its removals pass the flow's limits like any plan's: beyond them it is blocked until
// approved.
func TestRevertOfARevertRestoresTheOriginalOutcome(t *testing.T) {
	t.Parallel()
	e, tn := revertEnv(t)
	bad := e.badRun(tn)
	afterBad := members(e.sim("devrev"))
	rv := e.revert(bad.RunID, false)
	e.mustStatus(e.apply(rv.RunID, false), state.RunSucceeded)

	flow := e.cfg.Flows["f"]
	flow.Limits.MaxMemberRemovals = 10
	e.cfg.Flows["f"] = flow
	e.sim("devrev").Effects().Reset()
	rv2 := e.revert(rv.RunID, false)
	e.mustStatus(rv2, state.RunBlocked)
	if !strings.Contains(rv2.BlockedReason, "40 member removals exceed max_member_removals 10") {
		t.Fatalf("blocked reason = %q, want the removal limit", rv2.BlockedReason)
	}
	if _, err := e.eng.Apply(t.Context(), rv2.RunID, false, "tester"); err == nil {
		t.Fatal("a blocked revert applied without --allow-deletes")
	}
	if n := effects(e.sim("devrev")); n != [3]int{} {
		t.Fatalf("blocked revert wrote creates/adds/removes = %v", n)
	}
	e.mustStatus(e.apply(rv2.RunID, true), state.RunSucceeded)
	e.assertMembers(afterBad, "after the revert of the revert")
	if n := effects(e.sim("devrev")); n != [3]int{0, 0, 40} {
		t.Fatalf("revert of the revert wrote creates/adds/removes = %v, want the 40 removals", n)
	}
}

// TestPausedFlowRunsPushNothingUntilResumed: a revert pauses its flow; its scheduled and
// once runs then do nothing (no run row, no write) and say so, as does applying a sync plan
// of the flow; a dry run still previews; after resume the next run plans from the source
// again, which here redoes the 40 removals (why a revert pauses).
func TestPausedFlowRunsPushNothingUntilResumed(t *testing.T) {
	t.Parallel()
	e, tn := revertEnv(t)
	bad := e.badRun(tn)
	if dry := e.revert(bad.RunID, true); dry.Status != state.RunDryRun || dry.Paused != nil {
		t.Fatalf("dry-run revert: status %s, paused %+v; want dry_run and no pause", dry.Status, dry.Paused)
	}
	if _, err := e.store.ActivePause(t.Context(), "f"); !errors.Is(err, state.ErrNotFound) {
		t.Fatalf("after a dry-run revert the flow is paused (%v)", err)
	}
	plan := e.run("f", syncengine.RunOptions{Trigger: syncengine.TriggerPlan, PlanOnly: true})
	rv := e.revert(bad.RunID, false)
	if rv.Paused == nil || rv.Paused.RevertRunID != rv.RunID || rv.Paused.PausedBy != "tester" {
		t.Fatalf("revert pause = %+v, want one by tester for run %d", rv.Paused, rv.RunID)
	}
	e.mustStatus(e.apply(rv.RunID, false), state.RunSucceeded)

	e.sim("devrev").Effects().Reset()
	lastRun := e.lastRunID()
	for _, trigger := range []string{syncengine.TriggerSchedule, syncengine.TriggerOnce} {
		res := e.run("f", syncengine.RunOptions{Trigger: trigger})
		if res.Status != syncengine.StatusPaused || res.Paused == nil || res.RunID != 0 {
			t.Fatalf("%s run of a paused flow: status %s run %d, want paused and no run", trigger, res.Status, res.RunID)
		}
	}
	if got := e.lastRunID(); got != lastRun {
		t.Fatalf("runs of a paused flow recorded runs up to %d (was %d), want none", got, lastRun)
	}
	if _, err := e.eng.Apply(t.Context(), plan.RunID, false, "tester"); !errors.Is(err, syncengine.ErrFlowPaused) {
		t.Fatalf("applying a sync plan of a paused flow: %v, want ErrFlowPaused", err)
	}
	e.mustStatus(e.run("f", syncengine.RunOptions{DryRun: true}), state.RunDryRun)
	if n := effects(e.sim("devrev")); n != [3]int{} {
		t.Fatalf("paused flow wrote creates/adds/removes = %v", n)
	}

	if _, err := e.store.ResumeFlow(t.Context(), "f", "tester"); err != nil {
		t.Fatal(err)
	}
	res := e.run("f", syncengine.RunOptions{Trigger: syncengine.TriggerSchedule})
	e.mustStatus(res, state.RunSucceeded)
	if res.Targets["devrev"].Removed != 40 {
		t.Fatalf("resumed run removed %d, want the 40 the source still leaves out", res.Targets["devrev"].Removed)
	}
}

func (e *env) lastRunID() int64 {
	e.t.Helper()
	var id int64
	if err := e.store.Pool().QueryRow(e.t.Context(), `SELECT coalesce(max(id), 0) FROM runs`).Scan(&id); err != nil {
		e.t.Fatal(err)
	}
	return id
}

func itoa(n int64) string { return strconv.FormatInt(n, 10) }
