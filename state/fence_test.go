package state_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/groupsync/groupsync/connectors"
	"github.com/groupsync/groupsync/state"
	"github.com/groupsync/groupsync/state/statetest"
)

// snapshot digests every table a run's writes touch, to prove a refused write changed nothing.
func snapshot(t *testing.T, st *state.Store) string {
	t.Helper()
	var d string
	if err := st.Pool().QueryRow(context.Background(), `SELECT concat_ws('|',
		(SELECT md5(coalesce(string_agg(c::text, ',' ORDER BY c.id), '')) FROM changes c),
		(SELECT md5(coalesce(string_agg(r::text, ',' ORDER BY r.id), '')) FROM runs r),
		(SELECT md5(coalesce(string_agg(g::text, ',' ORDER BY g.system, g.external_id), '')) FROM groups g),
		(SELECT md5(coalesce(string_agg(m::text, ',' ORDER BY m.system, m.group_id, m.account_id), '')) FROM memberships m),
		(SELECT md5(coalesce(string_agg(l::text, ',' ORDER BY l.system, l.external_id), '')) FROM links l),
		(SELECT md5(coalesce(string_agg(a::text, ',' ORDER BY a.system, a.external_id), '')) FROM accounts a),
		(SELECT md5(coalesce(string_agg(f::text, ',' ORDER BY f.name), '')) FROM flows f),
		(SELECT md5(coalesce(string_agg(x::text, ',' ORDER BY x.system, x.email), '')) FROM account_misses x))`).Scan(&d); err != nil {
		t.Fatal(err)
	}
	return d
}

// TestInvariantEveryWriteOfARunIsFencedByItsLeaseTerm: once another replica took the flow's
// lease over, every status write made under the old term's fence returns ErrFenced and
// changes nothing; under the live fence the same writes go through.
func TestInvariantEveryWriteOfARunIsFencedByItsLeaseTerm(t *testing.T) {
	st := statetest.Store(t)
	bg := t.Context()
	old, err := st.AcquireLease(bg, "f", "host:1:aaaa", time.Minute, nil)
	if err != nil {
		t.Fatal(err)
	}
	ctx := state.WithFence(bg, state.NewFence(old, time.Now().Add(time.Minute), time.Minute, nil))
	runID, err := st.CreateRun(ctx, state.NewRun{Flow: "f", Trigger: "once", Holder: old.Holder, LeaseTerm: old.Term})
	if err != nil {
		t.Fatalf("a write under the live fence: %v", err)
	}
	var ids []int64
	for _, op := range []string{"create_group", "add_member", "remove_member", "delete_group"} {
		var id int64
		if err := st.Pool().QueryRow(bg, `INSERT INTO changes (run_id, flow, target_system, operation, link_id, target_group_id, target_account_id)
			VALUES ($1, 'f', 'devrev', $2, 1, 'g1', 'a1') RETURNING id`, runID, op).Scan(&id); err != nil {
			t.Fatal(err)
		}
		ids = append(ids, id)
	}
	if err := st.MarkInFlight(ctx, ids[:1]); err != nil {
		t.Fatalf("MarkInFlight under the live fence: %v", err)
	}
	// Another replica takes over after the lease expired.
	if _, err := st.Pool().Exec(bg, `UPDATE leases SET expires_at = now() - interval '1 second'`); err != nil {
		t.Fatal(err)
	}
	if _, err := st.AcquireLease(bg, "f", "host:1:bbbb", time.Minute, nil); err != nil {
		t.Fatal(err)
	}
	c := state.Change{ID: ids[0], RunID: runID, Flow: "f", TargetSystem: "devrev", Operation: "create_group",
		LinkID: 1, TargetGroupID: "g1", TargetAccountID: "a1"}
	member := c
	member.ID, member.Operation = ids[1], "add_member"
	writes := map[string]func() error{
		"MarkInFlight": func() error { return st.MarkInFlight(ctx, ids) },
		"MarkFailed":   func() error { return st.MarkFailed(ctx, ids, "", "boom") },
		"MarkApplied":  func() error { return st.MarkApplied(ctx, ids) },
		"RecordGroupWritten": func() error {
			return st.RecordGroupWritten(ctx, c, connectors.Group{ID: "g1", Name: "Eng"})
		},
		"RecordGroupDeleted":   func() error { return st.RecordGroupDeleted(ctx, c, false) },
		"RecordMembersAdded":   func() error { return st.RecordMembersAdded(ctx, []state.Change{member}) },
		"RecordMembersRemoved": func() error { return st.RecordMembersRemoved(ctx, []state.Change{member}) },
		"RecordSourceSyncOut":  func() error { return st.RecordSourceSyncOut(ctx, runID) },
		"ReconcileInterrupted": func() error { _, err := st.ReconcileInterrupted(ctx, "f"); return err },
		"PruneSkipped":         func() error { _, err := st.PruneSkipped(ctx, "f", runID+1); return err },
		"CreateRun":            func() error { _, err := st.CreateRun(ctx, state.NewRun{Flow: "f", Trigger: "once"}); return err },
		"FinishRun":            func() error { return st.FinishRun(ctx, runID, state.RunSucceeded, nil, "", "") },
		"ApproveRun":           func() error { return st.ApproveRun(ctx, runID, "me") },
		"RecordFlow":           func() error { return st.RecordFlow(ctx, "f", "airtable", []string{"devrev"}, "@hourly") },
		"SetPlannedStatus": func() error {
			_, err := st.SetPlannedStatus(ctx, runID, nil, state.ChangeBlocked, "guard")
			return err
		},
		"ReleaseBlocked": func() error { _, err := st.ReleaseBlocked(ctx, runID); return err },
		"SettleUnattempted": func() error {
			_, err := st.SettleUnattempted(ctx, runID, "", state.ChangeFailed, "not_attempted")
			return err
		},
		"RecordAccounts": func() error {
			_, err := st.RecordAccounts(ctx, "devrev", []connectors.Account{{ID: "a9", Email: "a9@x.io", Hash: "h"}}, []string{"a1"})
			return err
		},
		"RecheckAccounts": func() error { return st.RecheckAccounts(ctx, "devrev", []string{"a1"}) },
		"RecordAccountMisses": func() error {
			return st.RecordAccountMisses(ctx, "devrev", []string{"nobody@x.io"}, time.Hour)
		},
		"LinkFlow": func() error {
			return st.LinkFlow(ctx, state.LinkInput{RunID: runID, Flow: "f", Source: "airtable", Targets: []string{"devrev"}})
		},
		"PlanFlow": func() error {
			_, err := st.PlanFlow(ctx, state.PlanInput{RunID: runID, Flow: "f", Source: "airtable", MaxAttempts: 3})
			return err
		},
	}
	before := snapshot(t, st)
	for name, write := range writes {
		err := write()
		var fe *state.FencedError
		if !errors.Is(err, state.ErrFenced) || !errors.As(err, &fe) {
			t.Errorf("%s of the old term: %v, want ErrFenced", name, err)
			continue
		}
		if fe.By != "host:1:bbbb" || fe.ByTerm != old.Term+1 {
			t.Errorf("%s: fenced error %q does not name the new holder and term", name, err)
		}
	}
	if after := snapshot(t, st); after != before {
		t.Fatal("a write of the fenced-out term changed the mirror")
	}
	// The fenced run records that it was, on its own rows only.
	reported, err := st.RecordFenced(bg, runID, state.FenceFrom(ctx), errors.New("fenced"))
	if err != nil {
		t.Fatal(err)
	}
	run, err := st.GetRun(bg, runID)
	if err != nil {
		t.Fatal(err)
	}
	if run.Status != state.RunFailed || run.Error != reported.Error() || !errors.Is(reported, state.ErrFenced) {
		t.Fatalf("fenced run recorded as %s %q (reported %v)", run.Status, run.Error, reported)
	}
	var inFlight int
	if err := st.Pool().QueryRow(bg, `SELECT count(*) FROM changes WHERE status IN ('in_flight', 'planned')`).Scan(&inFlight); err != nil {
		t.Fatal(err)
	}
	if inFlight != 0 {
		t.Fatalf("%d changes of the fenced run left planned or in flight", inFlight)
	}
}

// TestFenceLocalDeadlineStopsWritesWithoutTheDatabase: past its local deadline (on the
// injected clock) a run's writes are refused before the database is asked, even though the
// lease is still live there, and a later renewal does not revive it.
func TestFenceLocalDeadlineStopsWritesWithoutTheDatabase(t *testing.T) {
	st := statetest.Store(t)
	l, err := st.AcquireLease(t.Context(), "f", "host:1:aaaa", time.Hour, nil)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	f := state.NewFence(l, now.Add(time.Minute), time.Hour, func() time.Time { return now })
	ctx := state.WithFence(t.Context(), f)
	if err := st.RecordFlow(ctx, "f", "a", []string{"b"}, "@hourly"); err != nil {
		t.Fatalf("before the deadline: %v", err)
	}
	now = now.Add(time.Minute)
	st.Close() // the database is gone: only the local check can answer
	if err := st.MarkInFlight(ctx, []int64{1}); !errors.Is(err, state.ErrFenced) {
		t.Fatalf("a write past the local deadline: %v, want ErrFenced", err)
	}
	f.Extend(now.Add(time.Hour))
	if err := f.Check(); !errors.Is(err, state.ErrFenced) {
		t.Fatalf("a renewal revived a fence whose deadline had passed: %v", err)
	}
}

// TestLeaseIsReenteredOnlyByTheSameHolder: two processes with one hostname and PID (two
// containers running as PID 1) are two holders; only the very same holder re-enters.
func TestLeaseIsReenteredOnlyByTheSameHolder(t *testing.T) {
	st := statetest.Store(t)
	a, err := st.AcquireLease(t.Context(), "f", "web:1:aaaa", time.Minute, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := st.AcquireLease(t.Context(), "f", "web:1:bbbb", time.Minute, nil); !errors.Is(err, state.ErrLeaseHeld) {
		t.Fatalf("another process with the same host and PID entered a live lease: %v", err)
	}
	again, err := st.AcquireLease(t.Context(), "f", "web:1:aaaa", time.Minute, nil)
	if err != nil || again.Term <= a.Term {
		t.Fatalf("re-entry by the same holder = %+v, %v; want a new term", again, err)
	}
}
