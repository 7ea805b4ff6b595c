package main

import (
	"net"
	"strings"
	"testing"
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

// TestUnreachableSourceExitsOne: a source refusing connections is a failure (exit 1, the
// system named), not a safety block (exit 3) with an approve command.
func TestUnreachableSourceExitsOne(t *testing.T) {
	e := newOpsEnv(t, "@every 1h", "")
	e.env["GROUPSYNC_SYSTEMS_DEVREV_BASE_URL"] = deadURL(t)
	r := e.exec("sync", "--once")
	r.want(t, 1, "failed", "runs failed")
	if !strings.Contains(r.stdout, "source devrev is unreachable") {
		t.Errorf("summary does not name the unreachable source:\n%s", r.stdout)
	}
	if out := r.stdout + r.stderr; strings.Contains(out, "groupsync apply") || strings.Contains(out, "BLOCKED:") {
		t.Errorf("a source outage reads as a safety block:\n%s\n%s", r.stdout, r.stderr)
	}
	e.exec("status").want(t, 0, "No runs awaiting approval.", "")
}

// TestDryRunWithAWrongTargetTokenExitsOne: the first command the help suggests must not
// report success when a target refused its credentials.
func TestDryRunWithAWrongTargetTokenExitsOne(t *testing.T) {
	e := newOpsEnv(t, "@every 1h", "")
	e.env["GROUPSYNC_SYSTEMS_AIRTABLE_TOKEN"] = "wrong-token"
	r := e.exec("sync", "--once", "--dry-run")
	r.want(t, 1, "target airtable", "runs failed")
}
