package syncengine_test

import (
	"context"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/groupsync/groupsync/state"
	"github.com/groupsync/groupsync/syncengine"
)

// cancelOnFirstAdd returns a context cancelled (as SIGTERM cancels the daemon's) as soon as
// the target has answered its first member add: the next add is then on its way or about
// to be, mid-push.
func cancelOnFirstAdd(t *testing.T, e *env, target string) context.Context {
	t.Helper()
	ctx, cancel := context.WithCancel(t.Context())
	t.Cleanup(cancel)
	var once sync.Once
	e.sim(target).Faults().Observe(func(method, path string, status int) {
		if strings.Contains(path, "members.add") {
			once.Do(cancel)
		}
	})
	return ctx
}

// TestShutdownLetsTheChangeInFlightFinish: a shutdown mid-push is not a failure. The run
// starts no new change, lets the one in flight finish and records it, records itself
// interrupted, and leaves what it did not attempt skipped (reason interrupted), not failed
// and not in flight; the next run finishes the job.
func TestShutdownLetsTheChangeInFlightFinish(t *testing.T) {
	t.Parallel()
	e, _, _ := pairEnv(t, defaultFlow("airtable", "devrev"), 30, 1, 30)
	e.sim("devrev").Faults().Latency(150 * time.Millisecond)
	ctx := cancelOnFirstAdd(t, e, "devrev")
	res, err := e.eng.RunFlow(ctx, "f", syncengine.RunOptions{Trigger: syncengine.TriggerSchedule})
	if err != nil {
		t.Fatal(err)
	}
	e.mustStatus(res, state.RunInterrupted)
	if n := e.changeCount(res.RunID, state.ChangeFailed, state.ChangeInFlight, state.ChangePlanned); n != 0 {
		t.Fatalf("%d changes failed, in flight or pending after a shutdown, want 0; targets %s", n, describe(res))
	}
	var applied int64
	if err := e.store.Pool().QueryRow(t.Context(), `SELECT count(*) FROM changes
		WHERE run_id = $1 AND status = 'applied' AND operation = 'add_member'`, res.RunID).Scan(&applied); err != nil {
		t.Fatal(err)
	}
	if _, adds, _ := e.sim("devrev").Effects().Totals(); int64(adds) != applied || applied == 0 || applied >= 30 {
		t.Fatalf("devrev took %d adds, the mirror recorded %d applied: want the same, mid-run", adds, applied)
	}
	var reason string
	if err := e.store.Pool().QueryRow(t.Context(), `SELECT string_agg(DISTINCT coalesce(reason, ''), ',') FROM changes
		WHERE run_id = $1 AND status = 'skipped' AND operation = 'add_member'`, res.RunID).Scan(&reason); err != nil {
		t.Fatal(err)
	}
	if reason != "interrupted" {
		t.Fatalf("unattempted adds skipped with reasons %q, want interrupted", reason)
	}
	e.sim("devrev").Faults().Observe(nil)
	e.mustStatus(e.run("f", syncengine.RunOptions{}), state.RunSucceeded)
	e.assertMirrored("airtable", "devrev")
}

// TestShutdownGraceIsBounded: a request in flight that outlasts the shutdown grace is
// cancelled, so the run (and the process) stops within it.
func TestShutdownGraceIsBounded(t *testing.T) {
	t.Parallel()
	e, _, _ := pairEnv(t, defaultFlow("airtable", "devrev"), 10, 1, 10)
	eng, err := syncengine.New(syncengine.Options{Store: e.store, Config: e.cfg, Connectors: e.conns, Holder: "grace",
		ShutdownGrace: 200 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	e.sim("devrev").Faults().Latency(3 * time.Second)
	ctx, cancel := context.WithCancel(t.Context())
	go func() {
		time.Sleep(500 * time.Millisecond) // mid-pull or mid-push: either way a request is in flight
		cancel()
	}()
	start := time.Now()
	res, err := eng.RunFlow(ctx, "f", syncengine.RunOptions{Trigger: syncengine.TriggerSchedule})
	if err != nil {
		t.Fatal(err)
	}
	if took := time.Since(start); took > 2500*time.Millisecond {
		t.Fatalf("the run took %s to stop with a 200ms grace", took)
	}
	e.mustStatus(res, state.RunInterrupted)
}
