package main

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/groupsync/groupsync/connectors/simkit"
	"github.com/groupsync/groupsync/state"
)

// TestHistoryShowsABadRunsRemovalAndItsRevert: a run adds a group's 4 members to airtable,
// a bad run removes 2, and the revert adds them back. `groupsync history GROUP --system
// airtable` shows each removed member's two intervals: joined (written by the first run),
// left (written by the bad run), joined again (written by the revert); --since and
// --output json filter and print the same events; an unknown group is an error.
func TestHistoryShowsABadRunsRemovalAndItsRevert(t *testing.T) {
	e := newOpsEnv(t, "@every 1h", "")
	e.exec("sync", "--once").want(t, 0, "succeeded", "")
	first := e.statusJSON().Flows[0].LastRun.ID
	gen := simkit.Generate(simkit.GenOptions{Groups: 4, People: 12, MembersPerGroup: 4, Seed: 11})
	group := gen.Groups[0].Name
	gen.Groups[0].Members = gen.Groups[0].Members[2:]
	e.devrev.Seed(gen)
	e.exec("sync", "--once").want(t, 0, "succeeded", "")
	bad := e.statusJSON().Flows[0].LastRun.ID
	e.exec("revert", fmt.Sprint(bad), "--by", "alice").want(t, 0, "apply with", "")
	rv := e.statusJSON().Flows[0].LastRun.ID
	e.exec("apply", fmt.Sprint(rv)).want(t, 0, "succeeded", "")

	r := e.exec("history", group, "--system", "airtable")
	r.want(t, 0, "AT", "")
	t.Logf("history:\n%s", r.stdout)
	var events []state.HistoryEvent
	r = e.exec("history", group, "--system", "airtable", "-o", "json")
	if err := json.Unmarshal([]byte(r.stdout), &events); err != nil {
		t.Fatalf("history --output json: %v\n%s", err, r.stdout)
	}
	count := map[string]int{}
	perMember := map[string][]string{}
	for _, ev := range events {
		if ev.System != "airtable" {
			t.Errorf("history --system airtable printed an event of %s: %+v", ev.System, ev)
		}
		key := fmt.Sprintf("%s %s %d", ev.Change, ev.Via, ev.RunID)
		count[key]++
		if ev.MemberID != "" {
			perMember[ev.MemberID] = append(perMember[ev.MemberID], key)
		}
	}
	want := map[string]int{
		fmt.Sprintf("named written %d", first):  1,
		fmt.Sprintf("joined written %d", first): 4,
		fmt.Sprintf("left written %d", bad):     2,
		fmt.Sprintf("joined written %d", rv):    2,
	}
	if fmt.Sprint(count) != fmt.Sprint(want) {
		t.Errorf("history events by change, via and run = %v, want %v", count, want)
	}
	twice := 0
	for _, evs := range perMember {
		if len(evs) == 3 {
			twice++
			if evs[1] != fmt.Sprintf("left written %d", bad) {
				t.Errorf("a restored member's events = %v, want joined, left by run %d, joined", evs, bad)
			}
		}
	}
	if twice != 2 {
		t.Errorf("%d members show two intervals, want the 2 the bad run removed: %v", twice, perMember)
	}
	table := e.exec("history", group, "--system", "airtable").stdout
	for _, want := range []string{"CHANGE", "left", "joined", "named", "written", fmt.Sprint(bad)} {
		if !strings.Contains(table, want) {
			t.Errorf("history table lacks %q:\n%s", want, table)
		}
	}

	e.exec("history", group, "--since", time.Now().Add(time.Hour).UTC().Format(time.RFC3339)).want(t, 0, "(no changes)", "")
	e.exec("history", "no such group").want(t, 1, "", `no group "no such group"`)
	e.exec("history", group, "--since", "last tuesday").want(t, 2, "", "--since")
}
