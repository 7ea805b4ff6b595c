package main

import (
	"fmt"
	"testing"

	"github.com/groupsync/groupsync/connectors/simkit"
)

// membersOf counts the members of the airtable group named name.
func (e *opsEnv) airtableMembers(name string) int {
	e.t.Helper()
	for _, g := range e.airtable.Snapshot() {
		if g.Name == name {
			return len(g.MemberEmails)
		}
	}
	e.t.Fatalf("airtable has no group %q", name)
	return 0
}

// TestRevertWorkflowPausesUntilResume walks an operator through undoing a bad run: a dry
// run previews and pauses nothing; the revert is stored, pauses the flow (shown by
// status) and is applied; the flow's once runs and triggers then do nothing and say why
// (exit 0 and 1); resume lets the next run plan from the source again, which redoes the
// removals the source still asks for.
func TestRevertWorkflowPausesUntilResume(t *testing.T) {
	e := newOpsEnv(t, "@every 1h", "")
	e.exec("sync", "--once").want(t, 0, "succeeded", "")
	gen := simkit.Generate(simkit.GenOptions{Groups: 4, People: 12, MembersPerGroup: 4, Seed: 11})
	group := gen.Groups[0].Name
	gen.Groups[0].Members = gen.Groups[0].Members[2:]
	e.devrev.Seed(gen)
	e.exec("sync", "--once").want(t, 0, "succeeded", "")
	bad := e.statusJSON().Flows[0].LastRun.ID
	if n := e.airtableMembers(group); n != 2 {
		t.Fatalf("after the bad run airtable %q has %d members, want 2", group, n)
	}

	e.exec("revert", fmt.Sprint(bad), "--dry-run").want(t, 0, "add_member", "")
	if p := e.statusJSON().Flows[0].Paused; p != nil {
		t.Fatalf("a dry-run revert paused the flow: %+v", p)
	}
	r := e.exec("revert", fmt.Sprint(bad), "--by", "alice")
	r.want(t, 0, "is paused (by alice", "")
	rv := e.statusJSON().Flows[0].LastRun
	if rv.Trigger != "revert" || rv.Status != "planned" {
		t.Fatalf("revert run = %+v, want a planned run of trigger revert", rv)
	}
	r.want(t, 0, fmt.Sprintf("apply with: groupsync apply %d", rv.ID), "")
	e.exec("status").want(t, 0, "people PAUSED since", "")
	if p := e.statusJSON().Flows[0].Paused; p == nil || p.PausedBy != "alice" || p.RevertRunID != rv.ID {
		t.Fatalf("status paused = %+v, want alice's pause by revert run %d", p, rv.ID)
	}
	if n := e.airtableMembers(group); n != 2 {
		t.Fatalf("planning the revert changed airtable: %q has %d members", group, n)
	}

	e.exec("apply", fmt.Sprint(rv.ID)).want(t, 0, "succeeded", "")
	if n := e.airtableMembers(group); n != 4 {
		t.Fatalf("after the revert airtable %q has %d members, want the 4 back", group, n)
	}
	e.exec("sync", "--once").want(t, 0, "PAUSED: nothing pulled or pushed", "")
	e.exec("trigger", "people").want(t, 1, "", "is paused")
	if n := e.airtableMembers(group); n != 4 {
		t.Fatalf("a paused flow's run changed airtable: %q has %d members", group, n)
	}

	e.exec("resume", "people", "--by", "bob").want(t, 0, "flow people resumed by bob", "")
	e.exec("resume", "people").want(t, 0, "is not paused", "")
	e.exec("sync", "--once").want(t, 0, "succeeded", "")
	if n := e.airtableMembers(group); n != 2 {
		t.Fatalf("after resume airtable %q has %d members, want the source's 2", group, n)
	}
	e.exec("pause", "people", "--reason", "audit", "--by", "carol").want(t, 0, "flow people paused by carol", "")
	e.exec("pause", "people").want(t, 0, "already paused (by carol", "")
	e.exec("pause", "nosuch").want(t, 2, "", "not configured")
}
