// Package e2e holds groupsync's end-to-end fault and bad-input suites: the real binary (or
// the real engine) against the four simulators and a real Postgres, with each fault's pass
// criterion asserted. The simulators run in the test process; the binary runs as a
// subprocess with a configuration file pointing at them.
package e2e

import (
	"bufio"
	"context"
	"flag"
	"fmt"
	"maps"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/groupsync/groupsync/logctx/logtest"

	"gopkg.in/yaml.v3"

	"github.com/groupsync/groupsync/connectors"
	"github.com/groupsync/groupsync/connectors/airtable"
	"github.com/groupsync/groupsync/connectors/airtable/airtablesim"
	"github.com/groupsync/groupsync/connectors/simkit"
	"github.com/groupsync/groupsync/connectors/simorg"
	"github.com/groupsync/groupsync/state"
	"github.com/groupsync/groupsync/state/statetest"
)

var long = flag.Bool("long", false, "also run the slow variants of the fault suites (more kill points, more ticks)")

// binary is the groupsync binary built once for the whole package.
var binary string

func TestMain(m *testing.M) {
	flag.Parse()
	dir, err := os.MkdirTemp("", "groupsync-e2e-")
	if err != nil {
		fmt.Fprintln(os.Stderr, "e2e: temp dir:", err)
		os.Exit(1)
	}
	binary = filepath.Join(dir, "groupsync")
	build := exec.Command("go", "build", "-o", binary, "github.com/groupsync/groupsync/cmd/groupsync")
	build.Stdout, build.Stderr = os.Stderr, os.Stderr
	if err := build.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "e2e: building the groupsync binary:", err)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// hit is one request a simulator received, as seen by the recording front.
type hit struct {
	at       time.Time
	method   string
	path     string
	status   int
	duration time.Duration
}

// front is an HTTP server in front of one simulator that records every request with its
// arrival time and answer, so tests can reason about when requests landed (lockouts).
type front struct {
	sys    *simorg.System
	server *httptest.Server
	mu     sync.Mutex
	hits   []hit
	// override, when set and returning true, answered the request instead of the simulator
	// (bodies no simulator would send: endless streams, lies about Content-Length).
	override func(w http.ResponseWriter, r *http.Request) bool
}

// Override sets (nil: clears) a handler that may answer requests before the simulator.
func (f *front) Override(h func(w http.ResponseWriter, r *http.Request) bool) {
	f.mu.Lock()
	f.override = h
	f.mu.Unlock()
}

type statusRecorder struct {
	http.ResponseWriter
	status int
}

func (w *statusRecorder) WriteHeader(s int) {
	w.status = s
	w.ResponseWriter.WriteHeader(s)
}

func (w *statusRecorder) Flush() {
	if f, ok := w.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
}

// Hijack lets the simulators cut bodies mid-stream through the recorder.
func (w *statusRecorder) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	hj, ok := w.ResponseWriter.(http.Hijacker)
	if !ok {
		return nil, nil, fmt.Errorf("e2e: response writer cannot hijack")
	}
	return hj.Hijack()
}

func (f *front) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	rec := &statusRecorder{ResponseWriter: w, status: http.StatusOK}
	f.mu.Lock()
	override := f.override
	f.mu.Unlock()
	if override == nil || !override(rec, r) {
		f.sys.Sim.ServeHTTP(rec, r)
	}
	f.mu.Lock()
	f.hits = append(f.hits, hit{at: start, method: r.Method, path: r.URL.Path, status: rec.status, duration: time.Since(start)})
	f.mu.Unlock()
}

func (f *front) Hits() []hit {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.hits)
}

// org is a simulated organisation with recording fronts and a fresh mirror schema.
type org struct {
	t      *testing.T
	sims   *simorg.Org
	fronts map[string]*front
	store  *state.Store
}

var kinds = map[string]connectors.Kind{
	"airtable": connectors.KindAirtable, "devrev": connectors.KindDevRev,
	"selfcommunity": connectors.KindSelfCommunity, "socialcast": connectors.KindSocialcast,
}

// newOrg starts the named systems (names are kinds) and a fresh mirror schema.
func newOrg(t *testing.T, names ...string) *org {
	t.Helper()
	var specs []simorg.Spec
	for _, n := range names {
		specs = append(specs, simorg.Spec{Name: n, Kind: kinds[n]})
	}
	sims, err := simorg.Start(specs...)
	if err != nil {
		t.Fatalf("starting simulators: %v", err)
	}
	t.Cleanup(sims.Close)
	o := &org{t: t, sims: sims, fronts: map[string]*front{}, store: statetest.Store(t)}
	for name, s := range sims.Systems {
		f := &front{sys: s}
		f.server = httptest.NewServer(f)
		t.Cleanup(f.server.Close)
		o.fronts[name] = f
	}
	return o
}

func (o *org) sim(name string) simkit.Sim { return o.sims.Systems[name].Sim }

// baseURL is where the binary reaches a system: its recording front.
func (o *org) baseURL(name string) string { return o.fronts[name].server.URL }

// systemYAML is one system's configuration for the binary, pointing at its front.
func (o *org) systemYAML(name string, extra map[string]any) map[string]any {
	s := o.sims.Systems[name]
	m := map[string]any{
		"kind":     string(s.Kind),
		"base_url": o.baseURL(name),
		"token":    s.Config.Token.Reveal(),
		// Simulators answer at once: the client-side limits only slow the suites down.
		"rate_limit":     1000,
		"burst":          100,
		"timeout":        "5s",
		"max_attempts":   3,
		"max_retry_wait": "5s",
	}
	if len(s.Config.Options) > 0 {
		opts := maps.Clone(s.Config.Options)
		if s.Kind == connectors.KindAirtable {
			opts[airtable.OptionSCIMURL] = o.baseURL(name) + airtablesim.SCIMPrefix
		}
		m["options"] = opts
	}
	if s.Kind == connectors.KindAirtable {
		m["rate_limit"] = 50 // the published limit; more only earns a warning
	}
	maps.Copy(m, extra)
	return m
}

// flowYAML is a mirror flow from source to targets with the suites' default limits.
func flowYAML(source string, targets []string, extra map[string]any) map[string]any {
	m := map[string]any{
		"source": source, "targets": targets, "schedule": "@every 1h",
		"scope":      map[string]any{"all": true},
		"membership": "mirror", "create_groups": true, "delete_groups": "never",
		"limits": map[string]any{"max_member_removals": 50, "max_member_removals_percent": 20,
			"max_group_deletions": 5, "min_source_ratio": 0.8},
		"max_change_attempts": 5,
	}
	maps.Copy(m, extra)
	return m
}

// appName tags the binary's database sessions so a test can find (and kill) them.
func (o *org) appName() string { return "gs-e2e-" + o.store.Schema() }

// writeConfig writes the binary's configuration. dbURL "" means the test database.
func (o *org) writeConfig(dbURL string, systems map[string]map[string]any, flows map[string]map[string]any, httpListen string) string {
	o.t.Helper()
	if dbURL == "" {
		dbURL = statetest.URL()
	}
	sep := "?"
	if strings.Contains(dbURL, "?") {
		sep = "&"
	}
	dbURL += sep + "application_name=" + o.appName()
	cfg := map[string]any{
		"database": map[string]any{"url": dbURL, "schema": o.store.Schema(), "max_conns": 4},
		"log":      map[string]any{"level": "debug", "format": "json"},
		"http":     map[string]any{"listen": httpListen},
		"systems":  systems,
		"flows":    flows,
	}
	b, err := yaml.Marshal(cfg)
	if err != nil {
		o.t.Fatal(err)
	}
	path := filepath.Join(o.t.TempDir(), "groupsync.yaml")
	if err := os.WriteFile(path, b, 0o600); err != nil {
		o.t.Fatal(err)
	}
	return path
}

// proc is a running groupsync process.
type proc struct {
	t      *testing.T
	cmd    *exec.Cmd
	stdout *logtest.Buffer
	stderr *logtest.Buffer
	done   chan struct{}
	code   int
}

// start runs `groupsync --config cfg args...` in the background; the test's end kills it.
func start(t *testing.T, cfg string, args ...string) *proc {
	t.Helper()
	return startEnv(t, nil, cfg, args...)
}

// startEnv is start with extra environment variables (start clears every GROUPSYNC_ one).
func startEnv(t *testing.T, env []string, cfg string, args ...string) *proc {
	t.Helper()
	p := &proc{t: t, stdout: &logtest.Buffer{}, stderr: &logtest.Buffer{}, done: make(chan struct{})}
	p.cmd = exec.Command(binary, append([]string{"--config", cfg}, args...)...)
	p.cmd.Env = slices.DeleteFunc(os.Environ(), func(kv string) bool { return strings.HasPrefix(kv, "GROUPSYNC_") })
	p.cmd.Env = append(p.cmd.Env, "GROUPSYNC_LOG_FORMAT=json")
	p.cmd.Env = append(p.cmd.Env, env...)
	p.cmd.Stdout, p.cmd.Stderr = p.stdout, p.stderr
	if err := p.cmd.Start(); err != nil {
		t.Fatalf("starting groupsync: %v", err)
	}
	go func() {
		err := p.cmd.Wait()
		p.code = p.cmd.ProcessState.ExitCode()
		if err != nil && p.code == 0 {
			p.code = -1
		}
		close(p.done)
	}()
	t.Cleanup(func() {
		select {
		case <-p.done:
		default:
			_ = p.cmd.Process.Signal(syscall.SIGCONT)
			_ = p.cmd.Process.Kill()
			<-p.done
		}
	})
	return p
}

// wait waits for the process to exit within d and returns its exit code.
func (p *proc) wait(d time.Duration) int {
	p.t.Helper()
	select {
	case <-p.done:
		return p.code
	case <-time.After(d):
		p.t.Fatalf("groupsync did not exit within %s; stderr:\n%s", d, tail(p.stderr.String(), 3000))
		return -1
	}
}

func (p *proc) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// kill9 kills the process without a chance to clean up.
func (p *proc) kill9() {
	_ = p.cmd.Process.Signal(syscall.SIGKILL)
	<-p.done
}

// runOnce runs `groupsync sync --once` to the end and returns its exit code and logs.
func runOnce(t *testing.T, cfg string, args ...string) (int, *proc) {
	t.Helper()
	p := start(t, cfg, append([]string{"sync", "--once"}, args...)...)
	return p.wait(90 * time.Second), p
}

func tail(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return "…" + s[len(s)-n:]
}

// eventually polls cond until it holds or the deadline passes.
func eventually(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", d, what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// --- tenants and assertions ---

func people(n int) []simkit.Person {
	return simkit.Generate(simkit.GenOptions{People: n, Seed: 1}).People
}

func seedSource(s simkit.Sim, ps []simkit.Person, groups, members int) simkit.Tenant {
	tn := simkit.Generate(simkit.GenOptions{Groups: groups, People: len(ps), MembersPerGroup: members, Seed: 3})
	tn.People = ps
	s.Seed(tn)
	return tn
}

func seedAccounts(s simkit.Sim, ps []simkit.Person) { s.Seed(simkit.Tenant{People: ps}) }

// mirrored reports whether every live source group exists once in the target with the same
// member emails; the string says what differs.
func mirrored(source, target simkit.Sim) (bool, string) {
	tgt := map[string]simkit.GroupState{}
	for _, g := range target.Snapshot() {
		if _, dup := tgt[g.Name]; dup {
			return false, fmt.Sprintf("target holds two groups named %q", g.Name)
		}
		tgt[g.Name] = g
	}
	for _, g := range source.Snapshot() {
		if g.Archived {
			continue
		}
		tg, ok := tgt[g.Name]
		if !ok {
			return false, fmt.Sprintf("target lacks group %q", g.Name)
		}
		if !slices.Equal(tg.MemberEmails, g.MemberEmails) {
			return false, fmt.Sprintf("group %q: target members %d, source %d", g.Name, len(tg.MemberEmails), len(g.MemberEmails))
		}
	}
	return true, ""
}

func (o *org) assertMirrored(source, target string) {
	o.t.Helper()
	if ok, why := mirrored(o.sim(source), o.sim(target)); !ok {
		o.t.Fatalf("%s is not mirrored into %s: %s", source, target, why)
	}
}

// assertNoDuplicates checks that no group was created twice and no membership added twice.
func (o *org) assertNoDuplicates(target string) {
	o.t.Helper()
	fx := o.sim(target).Effects()
	if n := fx.MaxCreates(); n > 1 {
		o.t.Fatalf("%s: a group was created %d times", target, n)
	}
	if n := fx.MaxAdds(); n > 1 {
		o.t.Fatalf("%s: a membership was added %d times", target, n)
	}
}

func (o *org) queryInt(q string, args ...any) int64 {
	o.t.Helper()
	var n int64
	if err := o.store.Pool().QueryRow(context.WithoutCancel(o.t.Context()), q, args...).Scan(&n); err != nil {
		o.t.Fatalf("query %q: %v", q, err)
	}
	return n
}

// assertNoPartialGroups checks that every mirrored group of system holds either none of its
// members or all of them (want members each): a merge is one transaction.
func (o *org) assertNoPartialGroups(system string, want int) {
	o.t.Helper()
	rows, err := o.store.Pool().Query(context.WithoutCancel(o.t.Context()), `
		SELECT g.external_id, count(m.account_id)
		  FROM groups g LEFT JOIN memberships m
		    ON m.system = g.system AND m.group_id = g.external_id AND m.deleted_at IS NULL
		 WHERE g.system = $1 AND g.deleted_at IS NULL
		 GROUP BY g.external_id`, system)
	if err != nil {
		o.t.Fatal(err)
	}
	defer rows.Close()
	for rows.Next() {
		var id string
		var n int
		if err := rows.Scan(&id, &n); err != nil {
			o.t.Fatal(err)
		}
		if n != 0 && n != want {
			o.t.Fatalf("mirror holds group %s of %s with %d of its %d members: a partial group", id, system, n, want)
		}
	}
	if err := rows.Err(); err != nil {
		o.t.Fatal(err)
	}
}

// expireLeases ends every lease now, as the passing of their expiry would.
func (o *org) expireLeases() {
	o.t.Helper()
	if _, err := o.store.Pool().Exec(context.WithoutCancel(o.t.Context()), `UPDATE leases SET expires_at = now()`); err != nil {
		o.t.Fatal(err)
	}
}
