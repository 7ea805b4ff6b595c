package main

import (
	"encoding/json"
	"log/slog"
	"os"
	"strings"
	"testing"

	"github.com/groupsync/groupsync/config"
	"github.com/groupsync/groupsync/connectors"
	"github.com/groupsync/groupsync/connectors/airtable/airtablesim"
	"github.com/groupsync/groupsync/connectors/simkit"
	"github.com/groupsync/groupsync/secret"
)

// checkResult finds one row of `check --output json`.
func checkResult(t *testing.T, rows []checkRow, system, check string) checkRow {
	t.Helper()
	for _, r := range rows {
		if r.System == system && r.Check == check {
			return r
		}
	}
	t.Fatalf("no %s %q row in %+v", system, check, rows)
	return checkRow{}
}

func decodeChecks(t *testing.T, r result) []checkRow {
	t.Helper()
	var rows []checkRow
	if err := json.Unmarshal([]byte(r.stdout), &rows); err != nil {
		t.Fatalf("check --output json: %v\n%s", err, r.stdout)
	}
	return rows
}

// TestCheckGoodCredentials checks every system of the ops flow (devrev source; airtable and
// SelfCommunity targets) against the simulators: every capability the flow needs answers,
// and nothing is written to the mirror.
func TestCheckGoodCredentials(t *testing.T) {
	e := newOpsEnv(t, "@every 1h", "")
	r := e.exec("check")
	r.want(t, 0, "SYSTEM", "")
	t.Logf("check:\n%s", r.stdout)
	for _, want := range []string{"devrev    list groups", "airtable  write access", "community  list members"} {
		if !strings.Contains(strings.Join(strings.Fields(r.stdout), " "), strings.Join(strings.Fields(want), " ")) {
			t.Errorf("check table lacks %q:\n%s", want, r.stdout)
		}
	}
	rows := decodeChecks(t, e.exec("check", "--output", "json"))
	for _, want := range [][2]string{{"devrev", "list groups"}, {"devrev", "list members"}, {"devrev", "read account"},
		{"airtable", "list groups"}, {"airtable", "find account by email"}, {"airtable", "write access"},
		{"community", "list groups"}, {"community", "find account by email"}} {
		if got := checkResult(t, rows, want[0], want[1]); got.Result != checkOK {
			t.Errorf("%s %s = %+v, want ok", want[0], want[1], got)
		}
	}
	if got := checkResult(t, rows, "(database)", "connect"); got.Result != checkOK || !strings.Contains(got.Detail, "groupsync migrate") {
		t.Errorf("database connect = %+v, want ok, saying the schema is not migrated yet", got)
	}
	// SelfCommunity has no group yet: nothing to probe, and creating one needs no more access.
	if got := checkResult(t, rows, "community", "write access"); got.Result != checkOK || !strings.Contains(got.Detail, "no group yet") {
		t.Errorf("community write access = %+v, want ok with nothing to probe", got)
	}
	// A source is never asked about writes.
	for _, r := range rows {
		if r.System == "devrev" && r.Check == "write access" {
			t.Errorf("devrev is only a source, yet has a write check: %+v", r)
		}
	}
	// check reads the systems only: it neither creates nor migrates the mirror.
	e.exec("status").want(t, 1, "", "run groupsync migrate")
}

// TestCheckBadCredentials: a refused token fails its system's row with the variable to fix,
// a token the writes' API refuses fails the write probe, the command exits 1, and no secret
// or email reaches the output.
func TestCheckBadCredentials(t *testing.T) {
	e := newOpsEnv(t, "@every 1h", "")
	e.env["GROUPSYNC_SYSTEMS_DEVREV_TOKEN"] = e.canary + "-wrong"
	// Airtable's meta API answers but SCIM, which every write goes through, refuses the token.
	e.airtable.Faults().StatusNext(airtablesim.RouteSCIMList, -1, 403)

	// A system nobody answers for, and a database nobody listens on (with the canary as its
	// password: it must not be printed).
	cfg, err := os.ReadFile(e.path)
	if err != nil {
		t.Fatal(err)
	}
	// SelfCommunity's JWTs are minted for a user who is no admin and manages no group.
	e.community.Seed(simkit.Tenant{People: e.people, Groups: []simkit.TenantGroup{{Name: "Existing", Members: []int32{0}}}})
	cfgText := strings.Replace(string(cfg), `jwt_user_id: "1"`, `jwt_user_id: "1001"`, 1)
	dead := "systems:\n  dead: {kind: socialcast, base_url: \"http://127.0.0.1:1\", username: ops@example.com, max_attempts: 1}\n"
	if err := os.WriteFile(e.path, []byte(strings.Replace(cfgText, "systems:\n", dead, 1)), 0o600); err != nil {
		t.Fatal(err)
	}
	e.env["GROUPSYNC_SYSTEMS_DEAD_PASSWORD"] = e.canary + "-socialcast"
	e.env["GROUPSYNC_DATABASE_URL"] = "postgres://groupsync:" + e.canary + "-db@127.0.0.1:1/groupsync?connect_timeout=5"

	r := e.exec("check")
	r.want(t, 1, "failed", "checks failed")
	t.Logf("check:\n%s\n%s", r.stdout, r.stderr)
	for _, p := range e.people {
		if strings.Contains(r.stdout+r.stderr, p.Email) {
			t.Fatalf("check printed an email (%s):\n%s", p.Email, r.stdout)
		}
	}
	rows := decodeChecks(t, e.exec("check", "--output", "json"))
	dev := checkResult(t, rows, "devrev", "list groups")
	if dev.Result != checkFailed || !strings.Contains(dev.Detail, "devrev") || !strings.Contains(dev.Fix, "GROUPSYNC_SYSTEMS_DEVREV_TOKEN") {
		t.Errorf("devrev list groups = %+v, want failed naming the system and GROUPSYNC_SYSTEMS_DEVREV_TOKEN", dev)
	}
	if got := checkResult(t, rows, "dead", "list groups"); got.Result != checkFailed || !strings.Contains(got.Fix, "cannot reach http://127.0.0.1:1") {
		t.Errorf("dead list groups = %+v, want failed saying the address cannot be reached", got)
	}
	if got := checkResult(t, rows, "(database)", "connect"); got.Result != checkFailed || !strings.Contains(got.Fix, "GROUPSYNC_DATABASE_URL") {
		t.Errorf("database connect = %+v, want failed naming GROUPSYNC_DATABASE_URL", got)
	}
	at := checkResult(t, rows, "airtable", "write access")
	if at.Result != checkFailed || !strings.Contains(at.Fix, "enterprise.scim.usersAndGroups:manage") {
		t.Errorf("airtable write access = %+v, want failed naming the SCIM scope", at)
	}
	if got := checkResult(t, rows, "airtable", "list groups"); got.Result != checkOK {
		t.Errorf("airtable list groups = %+v, want ok (only SCIM refuses)", got)
	}
	if got := checkResult(t, rows, "community", "list groups"); got.Result != checkOK {
		t.Errorf("community list groups = %+v, want ok", got)
	}
	for _, check := range []string{"write access", "find account by email"} {
		if got := checkResult(t, rows, "community", check); got.Result != checkFailed || !strings.Contains(got.Fix, "admin") {
			t.Errorf("community %s = %+v, want failed saying the user must be an admin", check, got)
		}
	}
}

// A scim_inbound system has no API to call: check says so (skipped) rather than failing on
// the mirror it was not given.
func TestCheckSkipsSCIMInbound(t *testing.T) {
	cfg := &config.Config{Systems: map[string]config.System{"okta": {Kind: connectors.KindSCIMInbound,
		Token: secret.New(strings.Repeat("t", 40))}}}
	rows := checkSystem(t.Context(), cfg, "okta", slog.New(slog.DiscardHandler))
	if len(rows) != 1 || rows[0].Result != checkSkipped || !strings.Contains(rows[0].Detail, "SCIM face") {
		t.Fatalf("check of a scim_inbound system = %+v, want one skipped row naming the SCIM face", rows)
	}
}
