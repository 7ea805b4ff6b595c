package syncengine_test

import (
	"net"
	"strings"
	"testing"

	"github.com/groupsync/groupsync/connectors"
	"github.com/groupsync/groupsync/state"
	"github.com/groupsync/groupsync/syncengine"
)

// deadURL is an address nothing listens on: connecting to it is refused.
func deadURL(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	return "http://" + addr
}

// engineWithDown is an engine over the same mirror whose connector to system points at
// an address that refuses connections, one attempt per request.
func (e *env) engineWithDown(system string) *syncengine.Engine {
	e.t.Helper()
	url := deadURL(e.t)
	down, err := e.org.Open(nil, nil, func(c *connectors.SystemConfig) {
		if c.Name == system {
			c.BaseURL, c.MaxAttempts = url, 1
		}
	})
	if err != nil {
		e.t.Fatal(err)
	}
	conns := map[string]connectors.Connector{}
	for name, c := range e.conns {
		conns[name] = c
	}
	conns[system] = down[system]
	eng, err := syncengine.New(syncengine.Options{Store: e.store, Config: e.cfg, Connectors: conns, Holder: "replica-down"})
	if err != nil {
		e.t.Fatal(err)
	}
	return eng
}

// TestUnreachableSourceFailsTheRun: a source that refuses connections is a failure of the
// run, named as such, never a guard block with an approve command.
func TestUnreachableSourceFailsTheRun(t *testing.T) {
	t.Parallel()
	e, _, _ := pairEnv(t, defaultFlow("devrev", "airtable"), 12, 3, 4)
	e.mustStatus(e.run("f", syncengine.RunOptions{}), state.RunSucceeded)

	res, err := e.engineWithDown("devrev").RunFlow(t.Context(), "f", syncengine.RunOptions{Trigger: syncengine.TriggerOnce})
	if err != nil {
		t.Fatal(err)
	}
	e.mustStatus(res, state.RunFailed)
	if res.BlockedReason != "" || res.Err == nil || !strings.Contains(res.Err.Error(), "source devrev is unreachable") ||
		strings.Contains(res.Err.Error(), "apply") {
		t.Fatalf("run error = %v (blocked: %q), want a failure naming the unreachable source and no approve command", res.Err, res.BlockedReason)
	}
	pending, err := e.store.PendingApprovals(t.Context())
	if err != nil || len(pending) != 0 {
		t.Fatalf("pending approvals after a source outage = %+v (%v), want none", pending, err)
	}
}

// TestDryRunWithAFailedTargetFails: a preview that could not read a target is not a
// preview to act on: it fails, naming the target.
func TestDryRunWithAFailedTargetFails(t *testing.T) {
	t.Parallel()
	e, _, _ := pairEnv(t, defaultFlow("devrev", "airtable"), 12, 3, 4)
	e.sim("airtable").Faults().StatusNext("", -1, 401)
	res := e.run("f", syncengine.RunOptions{DryRun: true})
	e.mustStatus(res, state.RunFailed)
	if res.Err == nil || !strings.Contains(res.Err.Error(), "target airtable") {
		t.Fatalf("dry run error = %v, want one naming target airtable", res.Err)
	}
}
