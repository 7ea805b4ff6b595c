package main

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/groupsync/groupsync/connectors/simkit"
)

// opsTenant is the tenant newOpsEnv seeds the DevRev source with.
func opsTenant() simkit.Tenant {
	return simkit.Generate(simkit.GenOptions{Groups: 4, People: 12, MembersPerGroup: 4, Seed: 11})
}

// TestPlanShowsNamesBesideIDs: a plan's member changes name the group and the member, not
// only their ids.
func TestPlanShowsNamesBesideIDs(t *testing.T) {
	e := newOpsEnv(t, "@every 1h", "")
	r := e.exec("plan")
	r.want(t, 0, "GROUP ID", "")
	t.Logf("plan:\n%s", r.stdout)
	ten := opsTenant()
	for _, line := range strings.Split(r.stdout, "\n") {
		if !strings.Contains(line, "add_member") {
			continue
		}
		named := false
		for _, g := range ten.Groups {
			named = named || strings.Contains(line, g.Name)
		}
		hasEmail := false
		for _, p := range ten.People {
			hasEmail = hasEmail || strings.Contains(line, p.Email)
		}
		if !named || !hasEmail || !strings.Contains(line, "devrev:") {
			t.Errorf("plan line lacks the group's name, the member's email or the source ids: %s", line)
		}
	}
	if !strings.Contains(r.stdout, "add_member") {
		t.Fatalf("plan has no member changes:\n%s", r.stdout)
	}
}

// TestRunsAndChanges lists run history and one run's changes, as tables and JSON, bounded by
// --limit and filtered by --flow and --status.
func TestRunsAndChanges(t *testing.T) {
	e := newOpsEnv(t, "@every 1h", "")
	e.exec("plan").want(t, 0, "Plan of flow people", "")
	e.exec("sync", "--once").want(t, 0, "succeeded", "")

	r := e.exec("runs")
	r.want(t, 0, "RUN", "")
	t.Logf("runs:\n%s", r.stdout)
	for _, want := range []string{"once", "plan", "succeeded", "planned"} {
		if !strings.Contains(r.stdout, want) {
			t.Errorf("runs lacks %q:\n%s", want, r.stdout)
		}
	}
	e.exec("runs", "--flow", "nope").want(t, 0, "(no runs)", "")

	var runs []runRecord
	r = e.exec("runs", "--flow", "people", "--limit", "1", "--output", "json")
	if err := json.Unmarshal([]byte(r.stdout), &runs); err != nil {
		t.Fatalf("runs --output json: %v\n%s", err, r.stdout)
	}
	if len(runs) != 1 || runs[0].Flow != "people" || runs[0].Trigger != "once" || runs[0].Status != "succeeded" ||
		runs[0].DurationS == nil || *runs[0].DurationS <= 0 || runs[0].Applied == 0 {
		t.Fatalf("runs --limit 1 = %+v, want the succeeded once run with its duration and applied count", runs)
	}
	if !strings.Contains(r.stdout, `"duration_s"`) {
		t.Errorf("runs JSON lacks duration_s:\n%s", r.stdout)
	}
	run := runs[0].ID

	var changes []changeRecord
	r = e.exec("changes", itoa(run), "--status", "applied", "-o", "json", "--limit", "1000")
	if err := json.Unmarshal([]byte(r.stdout), &changes); err != nil {
		t.Fatalf("changes --output json: %v\n%s", err, r.stdout)
	}
	members := 0
	for _, c := range changes {
		if c.Status != "applied" || c.Group == "" || c.RunID != run {
			t.Errorf("change %+v: want applied, of run %d, with its group's name", c, run)
		}
		if c.Operation == "add_member" {
			members++
			if c.Member == "" || c.TargetAccountID == "" {
				t.Errorf("member change %+v lacks the email or the account id", c)
			}
		}
	}
	if members == 0 {
		t.Errorf("no applied member changes in run %d: %+v", run, changes)
	}
	e.exec("changes", itoa(run), "--status", "failed").want(t, 0, "(no changes)", "")
	r = e.exec("changes", itoa(run), "--limit", "2")
	r.want(t, 0, "more than 2 changes", "")
	if n := strings.Count(r.stdout, "applied"); n != 2 {
		t.Errorf("changes --limit 2 shows %d changes:\n%s", n, r.stdout)
	}

	// A rejected block says who rejected it and why.
	e.devrev.Seed(simkit.Generate(simkit.GenOptions{Groups: 1, People: 12, MembersPerGroup: 4, Seed: 11}))
	e.exec("sync", "--once").want(t, 3, "BLOCKED", "")
	r = e.exec("runs", "--limit", "1", "-o", "json")
	if err := json.Unmarshal([]byte(r.stdout), &runs); err != nil || len(runs) != 1 || runs[0].Status != "blocked" {
		t.Fatalf("runs --limit 1 after the block = %s (%v)", r.stdout, err)
	}
	e.exec("reject", itoa(runs[0].ID), "--reason", "shrink expected", "--by", "ops").want(t, 0, "", "")
	e.exec("runs", "--limit", "1").want(t, 0, "rejected by ops: shrink expected", "")

	e.exec("changes", "999999").want(t, 1, "", "no run 999999")
	e.exec("changes", "x").want(t, 2, "", "not a positive integer")
	e.exec("changes", itoa(run), "--status", "done").want(t, 2, "", `--status "done": use one of planned`)
	e.exec("runs", "--limit", "0").want(t, 2, "", "--limit 0")
}

func itoa(n int64) string {
	b, _ := json.Marshal(n)
	return string(b)
}
