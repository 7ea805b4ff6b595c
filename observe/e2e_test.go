package observe_test

import (
	"context"
	"errors"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/groupsync/groupsync/config"
	"github.com/groupsync/groupsync/connectors"
	"github.com/groupsync/groupsync/connectors/simkit"
	"github.com/groupsync/groupsync/connectors/simorg"
	"github.com/groupsync/groupsync/observe"
	"github.com/groupsync/groupsync/state"
	"github.com/groupsync/groupsync/state/statetest"
	"github.com/groupsync/groupsync/syncengine"
)

type failingMirror struct{}

func (failingMirror) SystemCounts(context.Context) ([]state.SystemCount, error) {
	return nil, errors.New("database down")
}
func (failingMirror) PendingApprovals(context.Context) ([]state.PendingApproval, error) {
	return nil, errors.New("database down")
}
func (failingMirror) LastSuccesses(context.Context) (map[string]time.Time, error) {
	return nil, errors.New("database down")
}

// scrape GETs path on the server and returns status and body.
func scrape(t *testing.T, addr, path string) (int, string) {
	t.Helper()
	resp, err := http.Get("http://" + addr + path)
	if err != nil {
		t.Fatalf("GET %s: %v", path, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("GET %s: %v", path, err)
	}
	return resp.StatusCode, string(b)
}

// waitFor polls path until it answers code or the deadline passes.
func waitFor(t *testing.T, addr, path string, code int) string {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		got, body := scrape(t, addr, path)
		if got == code {
			return body
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s stayed %d (%s), want %d", path, got, body, code)
		}
		time.Sleep(10 * time.Millisecond) // polling an HTTP endpoint: there is no event to wait on
	}
}

// TestEndToEndScrape runs the daemon's pieces (engine, scheduler, metrics, server) over
// simulated systems and a real mirror, and scrapes the endpoints around a run.
func TestEndToEndScrape(t *testing.T) {
	org, err := simorg.Start(simorg.Spec{Name: "devrev", Kind: connectors.KindDevRev},
		simorg.Spec{Name: "airtable", Kind: connectors.KindAirtable})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(org.Close)
	gen := simkit.Generate(simkit.GenOptions{Groups: 3, People: 12, MembersPerGroup: 4, Seed: 7})
	org.Systems["devrev"].Sim.Seed(gen)
	org.Systems["airtable"].Sim.Seed(simkit.Tenant{People: gen.People})
	// One rate-limit answer on the source, so the retry and wait counters move.
	org.Systems["devrev"].Sim.Faults().RateLimitNext("", 1, time.Millisecond)

	reg := prometheus.NewRegistry()
	m := observe.NewMetrics(reg, "v-test")
	conns, err := org.Open(nil, m, nil)
	if err != nil {
		t.Fatal(err)
	}
	store := statetest.Store(t)
	m.WatchMirror(store, 5*time.Second, nil)
	cfg := &config.Config{
		Systems: map[string]config.System{},
		Flows: map[string]config.Flow{"people": {
			Source: "devrev", Targets: []string{"airtable"}, Schedule: "@every 1h",
			Scope: config.Scope{All: true}, Membership: config.MembershipMirror, CreateGroups: true,
			DeleteGroups: config.DeleteNever, MaxChangeAttempts: 3,
			Limits: config.Limits{MaxMemberRemovals: 50, MaxMemberRemovalsPercent: 20, MaxGroupDeletions: 5, MinSourceRatio: 0.8},
		}},
	}
	for name, s := range org.Systems {
		cfg.Systems[name] = config.System{Kind: s.Kind, BaseURL: s.Config.BaseURL}
	}
	eng, err := syncengine.New(syncengine.Options{Store: store, Config: cfg, Connectors: conns, Observer: m})
	if err != nil {
		t.Fatal(err)
	}
	sched := eng.NewScheduler(map[string]syncengine.Schedule{"people": mustSchedule(t, "@every 1h")})
	srv, err := observe.Serve("127.0.0.1:0", observe.Handler(reg, observe.Checks{DB: store, SchedulerRunning: sched.Running}, nil), nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = srv.Shutdown(context.WithoutCancel(t.Context())) })

	// Before the scheduler runs the daemon is alive but not ready.
	if code, _ := scrape(t, srv.Addr(), observe.PathHealth); code != 200 {
		t.Fatalf("/healthz = %d before start", code)
	}
	if code, body := scrape(t, srv.Addr(), observe.PathReady); code != 503 || !strings.Contains(body, "scheduler not running") {
		t.Fatalf("/readyz before the scheduler = %d %s", code, body)
	}
	ctx, cancel := context.WithCancel(t.Context())
	schedDone := make(chan error, 1)
	go func() { schedDone <- sched.Run(ctx) }()
	waitFor(t, srv.Addr(), observe.PathReady, 200)

	res, err := eng.RunFlow(t.Context(), "people", syncengine.RunOptions{Trigger: syncengine.TriggerOnce})
	if err != nil {
		t.Fatal(err)
	}
	if res.Status != state.RunSucceeded {
		t.Fatalf("run status %s (%v)", res.Status, res.Err)
	}
	_, body := scrape(t, srv.Addr(), observe.PathMetrics)
	for _, want := range []string{
		`groupsync_runs_total{flow="people",status="succeeded"} 1`,
		`groupsync_run_duration_seconds_count{flow="people"} 1`,
		`groupsync_changes_total{operation="create_group",status="applied",system="airtable"} 3`,
		`groupsync_changes_total{operation="add_member",status="applied",system="airtable"}`,
		`groupsync_api_requests_total{code="200",endpoint=`,
		`groupsync_api_requests_total{code="429",endpoint=`,
		`groupsync_api_request_duration_seconds_bucket{endpoint=`,
		`groupsync_api_retries_total{system="devrev"} 1`,
		`groupsync_rate_limit_waits_total{system="devrev"} 1`,
		`groupsync_rate_limit_wait_seconds_total{system="devrev"}`,
		`groupsync_mirror_records{kind="groups",system="devrev"} 3`,
		// Counters as of each system's last pull: the target's groups created by this run
		// show from its next pull on.
		`groupsync_mirror_records{kind="groups",system="airtable"} `,
		`groupsync_mirror_records{kind="memberships",system="devrev"}`,
		`groupsync_mirror_records{kind="accounts",system="airtable"}`,
		`groupsync_last_success_timestamp_seconds{flow="people"}`,
		`groupsync_runs_awaiting_approval 0`,
		`groupsync_build_info{version="v-test"} 1`,
		`go_goroutines`,
	} {
		if !strings.Contains(body, want) {
			t.Errorf("/metrics lacks %s", want)
		}
	}
	if t.Failed() {
		t.Logf("/metrics:\n%s", grepGroupsync(body))
	}

	// Stopping the scheduler (SIGTERM) makes the replica unready before the server stops.
	cancel()
	if err := <-schedDone; err != nil {
		t.Fatal(err)
	}
	body = waitFor(t, srv.Addr(), observe.PathReady, 503)
	if !strings.Contains(body, `"reason":"scheduler not running"`) {
		t.Errorf("/readyz after stop = %s", body)
	}
}

func mustSchedule(t *testing.T, expr string) syncengine.Schedule {
	t.Helper()
	s, err := config.ParseSchedule(expr)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func grepGroupsync(body string) string {
	var out []string
	for _, l := range strings.Split(body, "\n") {
		if strings.HasPrefix(l, "groupsync_") {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}
