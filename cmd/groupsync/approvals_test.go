package main

import (
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/groupsync/groupsync/connectors/simkit"
	"github.com/groupsync/groupsync/observe"
	"github.com/groupsync/groupsync/state"
	"github.com/groupsync/groupsync/state/statetest"
)

// statusJSON runs `status --output json` and decodes it.
func (e *opsEnv) statusJSON() statusReport {
	e.t.Helper()
	st := e.exec("status", "--output", "json")
	var rep statusReport
	if err := json.Unmarshal([]byte(st.stdout), &rep); err != nil {
		e.t.Fatalf("status --output json: %v\n%s\n%s", err, st.stdout, st.stderr)
	}
	return rep
}

// awaitingGauge scrapes groupsync_runs_awaiting_approval as the daemon's /metrics would.
func (e *opsEnv) awaitingGauge() float64 {
	e.t.Helper()
	store, err := state.Open(e.t.Context(), statetest.URL(), state.Options{Schema: e.schema, MaxConns: 2})
	if err != nil {
		e.t.Fatal(err)
	}
	defer store.Close()
	reg := prometheus.NewRegistry()
	observe.NewMetrics(reg, "test").WatchMirror(store, 5*time.Second, nil)
	families, err := reg.Gather()
	if err != nil {
		e.t.Fatal(err)
	}
	for _, f := range families {
		if f.GetName() == observe.MetricAwaitingApproval {
			return f.GetMetric()[0].GetGauge().GetValue()
		}
	}
	e.t.Fatalf("no %s gauge", observe.MetricAwaitingApproval)
	return 0
}

// summaryBlocked reads the BLOCKED column of the summary row of run and target.
func summaryBlocked(t *testing.T, stdout string, run int64, target string) string {
	t.Helper()
	lines := strings.Split(stdout, "\n")
	col := slices.Index(strings.Fields(lines[0]), "BLOCKED")
	for _, l := range lines {
		f := strings.Fields(l)
		if len(f) > col && f[1] == fmt.Sprint(run) && f[3] == target {
			return f[col]
		}
	}
	t.Fatalf("no summary row for run %d and %s:\n%s", run, target, stdout)
	return ""
}

// TestApprovalsClear walks an operator through blocks: held counts shown everywhere, a
// newer block superseding an older one, an approval that leaves nothing awaiting, and a
// rejection recorded with who, when and why.
func TestApprovalsClear(t *testing.T) {
	e := newOpsEnv(t, "@every 1h", "")
	e.exec("sync", "--once").want(t, 0, "succeeded", "")
	// Two of the four groups lose all their members: 8 removals per target, 50% of them.
	gen := simkit.Generate(simkit.GenOptions{Groups: 4, People: 12, MembersPerGroup: 4, Seed: 11})
	gen.Groups[0].Members, gen.Groups[1].Members = nil, nil
	e.devrev.Seed(gen)

	e.exec("sync", "--once").want(t, 3, "BLOCKED", "blocked by a safety limit")
	r := e.exec("sync", "--once")
	r.want(t, 3, "BLOCKED", "reject")
	rep := e.statusJSON()
	if len(rep.PendingApprovals) != 1 {
		t.Fatalf("pending approvals = %+v, want only the newer block", rep.PendingApprovals)
	}
	p := rep.PendingApprovals[0]
	older := p.RunID - 1
	if p.BlockedChanges != 16 || rep.Flows[0].LastRun.Blocked != 16 || summaryBlocked(t, r.stdout, p.RunID, "airtable") != "8" {
		t.Errorf("held changes: pending %d, status %d, summary %s; want 16, 16 and 8 per target\n%s",
			p.BlockedChanges, rep.Flows[0].LastRun.Blocked, summaryBlocked(t, r.stdout, p.RunID, "airtable"), r.stdout)
	}
	if want := fmt.Sprintf("groupsync reject %d", p.RunID); !strings.HasPrefix(p.RejectCommand, want) {
		t.Errorf("reject command = %q, want %q...", p.RejectCommand, want)
	}
	if g := e.awaitingGauge(); g != 1 {
		t.Errorf("%s = %g, want 1", observe.MetricAwaitingApproval, g)
	}
	e.exec("apply", fmt.Sprint(older), "--allow-deletes").want(t, 1, "", fmt.Sprintf("superseded by run %d", p.RunID))

	e.exec("apply", fmt.Sprint(p.RunID), "--allow-deletes", "--by", "alice").want(t, 0, "succeeded", "")
	e.exec("status").want(t, 0, "No runs awaiting approval.", "")
	if g := e.awaitingGauge(); g != 0 {
		t.Errorf("after the approval, %s = %g, want 0", observe.MetricAwaitingApproval, g)
	}

	// A third group empties: blocked again, and this time rejected.
	gen.Groups[2].Members = nil
	e.devrev.Seed(gen)
	e.exec("sync", "--once").want(t, 3, "BLOCKED", "")
	rep = e.statusJSON()
	if len(rep.PendingApprovals) != 1 {
		t.Fatalf("pending approvals = %+v, want the new block", rep.PendingApprovals)
	}
	id := rep.PendingApprovals[0].RunID
	e.exec("reject", fmt.Sprint(id), "--reason", "HR export was truncated", "--by", "bob").
		want(t, 0, fmt.Sprintf("run %d of flow people rejected by bob", id), "")
	e.exec("status").want(t, 0, fmt.Sprintf("people run %d rejected by bob: HR export was truncated", id), "")
	e.exec("status").want(t, 0, "No runs awaiting approval.", "")
	if g := e.awaitingGauge(); g != 0 {
		t.Errorf("after the rejection, %s = %g, want 0", observe.MetricAwaitingApproval, g)
	}
	var by, why string
	var at *time.Time
	if err := e.connect().QueryRow(t.Context(), `SELECT rejected_by, reject_reason, rejected_at FROM runs WHERE id = $1`, id).
		Scan(&by, &why, &at); err != nil || by != "bob" || why != "HR export was truncated" || at == nil {
		t.Errorf("rejection recorded as %q, %q, %v (%v); want bob, the reason and a time", by, why, at, err)
	}
	e.exec("apply", fmt.Sprint(id), "--allow-deletes").want(t, 1, "", "rejected (by bob")
	e.exec("reject", fmt.Sprint(id)).want(t, 1, "", "rejected")
	e.exec("reject", "x").want(t, 2, "", "not a positive integer")
	// Nothing of the rejected plan reached the target: the third group kept its members.
	for _, g := range e.airtable.Snapshot() {
		if g.Name == gen.Groups[2].Name && len(g.MemberEmails) == 0 {
			t.Errorf("airtable group %q lost its members to a rejected run", g.Name)
		}
	}
}
