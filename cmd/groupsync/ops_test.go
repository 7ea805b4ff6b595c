package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/groupsync/groupsync/logctx/logtest"

	"github.com/sethvargo/go-envconfig"

	"github.com/groupsync/groupsync/connectors/airtable/airtablesim"
	"github.com/groupsync/groupsync/connectors/devrev/devrevsim"
	"github.com/groupsync/groupsync/connectors/selfcommunity/selfcommunitysim"
	"github.com/groupsync/groupsync/connectors/simkit"
	"github.com/groupsync/groupsync/state/statetest"
)

// opsEnv is a configuration file over three simulators that accept only the canary
// credentials, a fresh mirror schema, and the environment that carries the secrets.
type opsEnv struct {
	t        *testing.T
	canary   string
	path     string
	schema   string
	env      map[string]string
	devrev   *devrevsim.Server
	airtable *airtablesim.Server
	// community is the SelfCommunity simulator.
	community *selfcommunitysim.Server
	people    []simkit.Person
}

const opsFlowYAML = `
flows:
  people:
    source: devrev
    targets: [airtable, community]
    schedule: "%s"
    scope: {all: true}
    membership: mirror
    create_groups: true
    delete_groups: never
    limits: {max_member_removals: 50, max_member_removals_percent: 20, max_group_deletions: 5, min_source_ratio: 0.8}
    max_change_attempts: 5
`

func newOpsEnv(t *testing.T, schedule, listen string) *opsEnv {
	t.Helper()
	canary := "CANARY-ops-" + fmt.Sprint(time.Now().UnixNano())
	e := &opsEnv{t: t, canary: canary, schema: statetest.Schema(t)}
	e.devrev = devrevsim.New(devrevsim.Options{Token: canary + "-devrev"})
	e.airtable = airtablesim.New(airtablesim.Options{Token: canary + "-airtable"})
	community := selfcommunitysim.New(selfcommunitysim.Options{JWTSecret: canary + "-jwt"})
	e.community = community
	servers := map[string]*httptest.Server{}
	for name, h := range map[string]http.Handler{"devrev": e.devrev, "airtable": e.airtable, "community": community} {
		servers[name] = httptest.NewServer(h)
		t.Cleanup(servers[name].Close)
	}
	gen := simkit.Generate(simkit.GenOptions{Groups: 4, People: 12, MembersPerGroup: 4, Seed: 11})
	e.people = gen.People
	e.devrev.Seed(gen)
	e.airtable.Seed(simkit.Tenant{People: gen.People})
	community.Seed(simkit.Tenant{People: gen.People})

	// The database URL carries the canary as its password too, when the test database
	// has none of its own (trust auth ignores it).
	dbURL := statetest.URL()
	if u, err := url.Parse(dbURL); err == nil && u.User != nil {
		if _, has := u.User.Password(); !has {
			u.User = url.UserPassword(u.User.Username(), canary+"-db")
			dbURL = u.String()
		}
	}
	cfg := fmt.Sprintf(`
database: {url: %q, schema: %s, max_conns: 4}
http: {listen: %q}
systems:
  devrev: {kind: devrev, base_url: %q, max_attempts: 2}
  airtable:
    kind: airtable
    base_url: %q
    max_attempts: 2
    options: {enterprise_account_id: %s, scim_url: %q}
  community:
    kind: selfcommunity
    base_url: %q
    max_attempts: 2
    options: {jwt_user_id: "1"}
`, dbURL, e.schema, listen, servers["devrev"].URL, servers["airtable"].URL, e.airtable.EnterpriseID(),
		servers["airtable"].URL+airtablesim.SCIMPrefix, servers["community"].URL) + fmt.Sprintf(opsFlowYAML, schedule)
	e.path = filepath.Join(t.TempDir(), "groupsync.yaml")
	if err := os.WriteFile(e.path, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	e.env = map[string]string{
		"GROUPSYNC_SYSTEMS_DEVREV_TOKEN":           canary + "-devrev",
		"GROUPSYNC_SYSTEMS_AIRTABLE_TOKEN":         canary + "-airtable",
		"GROUPSYNC_SYSTEMS_COMMUNITY_JWT_SECRET":   canary + "-jwt",
		"GROUPSYNC_CONFIG":                         e.path,
		"GROUPSYNC_LOG_FORMAT":                     "json",
		"GROUPSYNC_SYSTEMS_COMMUNITY_MAX_ATTEMPTS": "2",
	}
	return e
}

// exec runs the CLI in-process with the environment's configuration.
func (e *opsEnv) exec(args ...string) result {
	e.t.Helper()
	r := execute(e.t, e.env, args...)
	e.noCanary(r.stdout + r.stderr)
	return r
}

func (e *opsEnv) noCanary(out string) {
	e.t.Helper()
	if strings.Contains(out, e.canary) {
		for _, line := range strings.Split(out, "\n") {
			if strings.Contains(line, e.canary) {
				e.t.Errorf("a secret leaked into the output: %s", line)
			}
		}
		e.t.FailNow()
	}
}

// TestSyncOnceStatusAndCanary runs sync --once at debug level through a failing target
// and a guard block, checks every log line carries its run context and no secret, and
// reads the outcome back with status in both formats.
func TestSyncOnceStatusAndCanary(t *testing.T) {
	e := newOpsEnv(t, "@every 1h", "")
	// Member writes to Airtable fail for good: the run is partial and leaves failing changes.
	e.airtable.Faults().StatusNext("PATCH /scim/v2/Groups/{groupId}", -1, 400)

	r := e.exec("sync", "--once", "--log-level", "debug")
	r.want(t, 1, "people", "runs failed")
	checkLogContext(t, r.stderr)
	t.Logf("sync --once stderr:\n%s", r.stderr)
	if !strings.Contains(r.stderr, `"msg":"progress"`) && !strings.Contains(r.stderr, `"msg":"pulled"`) {
		t.Errorf("no progress or pull lines on a non-terminal stderr:\n%s", r.stderr)
	}

	st := e.exec("status")
	t.Logf("status:\n%s", st.stdout)
	st.want(t, 0, "Failing changes (last 7 days, most attempted first):", "")
	for _, want := range []string{"FLOW", "people", "devrev → airtable, community", "partial", "by 20", // next run of @every
		"add_member", "No runs awaiting approval.", "SYSTEM", "devrev", "selfcommunity"} {
		if !strings.Contains(st.stdout, want) {
			t.Errorf("status lacks %q:\n%s", want, st.stdout)
		}
	}

	// The source shrinks sharply: the guard blocks the next run (exit 3).
	e.devrev.Seed(simkit.Generate(simkit.GenOptions{Groups: 1, People: 12, MembersPerGroup: 4, Seed: 11}))
	e.exec("sync", "--once").want(t, 3, "BLOCKED", "blocked by a safety limit")
	st = e.exec("status", "--output", "json")
	st.want(t, 0, `"pending_approvals"`, "")
	var rep statusReport
	if err := json.Unmarshal([]byte(st.stdout), &rep); err != nil {
		t.Fatalf("status --output json: %v\n%s", err, st.stdout)
	}
	if len(rep.Flows) != 1 || rep.Flows[0].LastRun == nil || rep.Flows[0].LastRun.Status != "blocked" || rep.Flows[0].NextRun == nil {
		t.Errorf("flows = %+v, want people with a blocked last run and a next run", rep.Flows)
	}
	if len(rep.PendingApprovals) != 1 {
		t.Fatalf("pending approvals = %+v, want 1", rep.PendingApprovals)
	}
	p := rep.PendingApprovals[0]
	if want := fmt.Sprintf("groupsync apply %d --allow-deletes", p.RunID); p.ApproveCommand != want || p.Flow != "people" || p.BlockedReason == "" {
		t.Errorf("pending approval = %+v, want command %q and a reason", p, want)
	}
	if len(rep.FailingChanges) == 0 || rep.FailingChanges[0].LastError == "" {
		t.Errorf("failing changes = %+v, want the airtable member adds with their error", rep.FailingChanges)
	}
	if len(rep.Systems) != 3 {
		t.Errorf("systems = %+v, want 3", rep.Systems)
	}
	// The table says how to approve, word for word.
	st = e.exec("status")
	st.want(t, 0, "approve: "+p.ApproveCommand, "")
	t.Logf("status:\n%s", st.stdout)
	e.exec("status", "--output", "yaml").want(t, 2, "", "use table or json")
}

// checkLogContext asserts every run and change log line names its run, flow and system.
func checkLogContext(t *testing.T, stderr string) {
	t.Helper()
	for _, line := range strings.Split(strings.TrimSpace(stderr), "\n") {
		var rec map[string]any
		if err := json.Unmarshal([]byte(line), &rec); err != nil {
			continue // the CLI's own closing error line is not a log record
		}
		msg, _ := rec["msg"].(string)
		needs := []string{}
		switch {
		case strings.HasPrefix(msg, "run "):
			needs = []string{"run_id", "flow"}
		case msg == "pulled" || strings.HasPrefix(msg, "group ") || msg == "change failed" || strings.HasPrefix(msg, "member changes"):
			needs = []string{"run_id", "flow", "system"}
		}
		for _, k := range needs {
			if _, ok := rec[k]; !ok {
				t.Errorf("log line %q lacks %s: %s", msg, k, line)
			}
		}
	}
}

func TestSyncOnceTerminalProgress(t *testing.T) {
	e := newOpsEnv(t, "@every 1h", "")
	var stdout, stderr bytes.Buffer
	code := run(t.Context(), []string{"sync", "--once", "--log-format", "text"}, environment{
		stdout: &stdout, stderr: &stderr, lookup: envconfig.MapLookuper(e.env), stderrIsTTY: true,
	})
	if code != 0 {
		t.Fatalf("exit %d\n%s\n%s", code, stdout.String(), stderr.String())
	}
	e.noCanary(stdout.String() + stderr.String())
	out := stderr.String()
	for _, want := range []string{"\x1b[2K", "devrev", "pages", "4 groups", "16 members", "changes pushed"} {
		if !strings.Contains(out, want) {
			t.Errorf("progress frame lacks %q:\n%q", want, out)
		}
	}
}

// TestDaemonServesHealthReadyMetrics runs `groupsync sync` in-process, scrapes its
// endpoints while it runs the flow on a one-second schedule, and stops it as SIGTERM does.
func TestDaemonServesHealthReadyMetrics(t *testing.T) {
	e := newOpsEnv(t, "@every 1s", "127.0.0.1:0")
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	var stdout, stderr logtest.Buffer
	done := make(chan int, 1)
	go func() {
		done <- run(ctx, []string{"sync"}, environment{stdout: &stdout, stderr: &stderr, lookup: envconfig.MapLookuper(e.env)})
	}()
	addrRE := regexp.MustCompile(`"msg":"http listening","component":"http","addr":"([^"]+)"`)
	var addr string
	poll(t, func() bool {
		if m := addrRE.FindStringSubmatch(stderr.String()); m != nil {
			addr = m[1]
			return true
		}
		select {
		case code := <-done:
			t.Fatalf("daemon exited %d before listening:\n%s", code, stderr.String())
		default:
		}
		return false
	}, "the daemon to log its listen address")

	get := func(path string) (int, string) {
		resp, err := http.Get("http://" + addr + path)
		if err != nil {
			t.Fatalf("GET %s: %v", path, err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	if code, _ := get("/healthz"); code != 200 {
		t.Errorf("/healthz = %d", code)
	}
	poll(t, func() bool { code, _ := get("/readyz"); return code == 200 }, "/readyz to answer 200")
	var metrics string
	poll(t, func() bool {
		_, metrics = get("/metrics")
		return strings.Contains(metrics, `groupsync_runs_total{flow="people",status="succeeded"}`)
	}, "a scheduled run to show in /metrics")
	for _, want := range []string{`groupsync_mirror_records{kind="groups",system="devrev"} 4`,
		`groupsync_api_requests_total{code="200"`, `groupsync_changes_total{operation="create_group",status="applied",system="airtable"} 4`,
		`groupsync_last_success_timestamp_seconds{flow="people"}`, `groupsync_runs_awaiting_approval 0`} {
		if !strings.Contains(metrics, want) {
			t.Errorf("/metrics lacks %s", want)
		}
	}

	cancel() // what SIGTERM does through signal.NotifyContext
	select {
	case code := <-done:
		if code != 0 {
			t.Errorf("daemon exit %d after SIGTERM, want 0:\n%s", code, stderr.String())
		}
	case <-time.After(30 * time.Second):
		t.Fatal("daemon did not stop within 30s of SIGTERM")
	}
	if _, err := http.Get("http://" + addr + "/healthz"); err == nil {
		t.Error("the http listener still answers after the daemon stopped")
	}
	if !strings.Contains(stderr.String(), "groupsync daemon stopped") {
		t.Errorf("no stop line:\n%s", stderr.String())
	}
	e.noCanary(stdout.String() + stderr.String())
}

// poll calls cond until it holds or 20s pass.
func poll(t *testing.T, cond func() bool, what string) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond) // polling a process from outside: no event to wait on
	}
}
