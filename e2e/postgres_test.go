package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/groupsync/groupsync/connectors/simkit"
	"github.com/groupsync/groupsync/state/statetest"
)

// pgProxy is a TCP proxy between the binary and Postgres that the test can cut: every open
// connection is closed and new ones are refused until it is restored, as a database
// restart or a network partition would do.
type pgProxy struct {
	ln     net.Listener
	target string
	mu     sync.Mutex
	cut    bool
	conns  map[net.Conn]bool
}

func newPGProxy(t *testing.T) (*pgProxy, string) {
	t.Helper()
	u, err := url.Parse(statetest.URL())
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &pgProxy{ln: ln, target: u.Host, conns: map[net.Conn]bool{}}
	t.Cleanup(func() { ln.Close(); p.closeAll() })
	go p.serve()
	proxied := *u
	proxied.Host = ln.Addr().String()
	return p, proxied.String()
}

func (p *pgProxy) serve() {
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return
		}
		p.mu.Lock()
		if p.cut {
			p.mu.Unlock()
			c.Close()
			continue
		}
		p.mu.Unlock()
		go p.pipe(c)
	}
}

func (p *pgProxy) pipe(c net.Conn) {
	up, err := net.Dial("tcp", p.target)
	if err != nil {
		c.Close()
		return
	}
	p.mu.Lock()
	if p.cut {
		p.mu.Unlock()
		c.Close()
		up.Close()
		return
	}
	p.conns[c], p.conns[up] = true, true
	p.mu.Unlock()
	done := make(chan struct{}, 2)
	go func() { _, _ = io.Copy(up, c); done <- struct{}{} }()
	go func() { _, _ = io.Copy(c, up); done <- struct{}{} }()
	<-done
	c.Close()
	up.Close()
	p.mu.Lock()
	delete(p.conns, c)
	delete(p.conns, up)
	p.mu.Unlock()
}

func (p *pgProxy) closeAll() {
	p.mu.Lock()
	defer p.mu.Unlock()
	for c := range p.conns {
		c.Close()
	}
}

// Cut drops every connection and refuses new ones.
func (p *pgProxy) Cut() {
	p.mu.Lock()
	p.cut = true
	p.mu.Unlock()
	p.closeAll()
}

// Restore lets connections through again.
func (p *pgProxy) Restore() {
	p.mu.Lock()
	p.cut = false
	p.mu.Unlock()
}

// httpAddr waits for the daemon's "http listening" log line and returns its address.
func (d *proc) httpAddr() string {
	d.t.Helper()
	var addr string
	eventually(d.t, 30*time.Second, "the daemon's http listener", func() bool {
		for _, line := range strings.Split(d.stderr.String(), "\n") {
			var rec struct {
				Msg  string `json:"msg"`
				Addr string `json:"addr"`
			}
			if json.Unmarshal([]byte(line), &rec) == nil && rec.Msg == "http listening" && rec.Addr != "" {
				addr = rec.Addr
				return true
			}
		}
		if d.exited() {
			d.t.Fatalf("daemon exited %d before listening; stderr:\n%s", d.code, tail(d.stderr.String(), 2000))
		}
		return false
	})
	return addr
}

func readyz(addr string) int {
	c := http.Client{Timeout: 3 * time.Second}
	resp, err := c.Get("http://" + addr + "/readyz")
	if err != nil {
		return 0
	}
	resp.Body.Close()
	return resp.StatusCode
}

// addGroup adds one group of n members to the source, keeping the other groups' ids.
func addGroup(s simkit.Sim, tn *simkit.Tenant, name string, n int) {
	g := simkit.TenantGroup{Name: name}
	for i := range n {
		g.Members = append(g.Members, int32(i))
	}
	tn.Groups = append(tn.Groups, g)
	s.Seed(*tn)
}

// TestPostgresUnavailableForAWhile: the database goes away (every connection cut, new
// ones refused) for a few seconds under a running daemon: the daemon stays up, /readyz
// answers 503 during the outage and 200 after, the mirror holds no partial group, and the
// change made meanwhile converges after recovery.
func TestPostgresUnavailableForAWhile(t *testing.T) {
	t.Parallel()
	proxy, dbURL := newPGProxy(t)
	o := newOrg(t, "airtable", "devrev")
	ps := people(30)
	tn := seedSource(o.sim("airtable"), ps, 6, 5)
	seedAccounts(o.sim("devrev"), ps)
	cfg := o.writeConfig(dbURL, map[string]map[string]any{
		"airtable": o.systemYAML("airtable", nil), "devrev": o.systemYAML("devrev", nil),
	}, map[string]map[string]any{"f": flowYAML("airtable", []string{"devrev"}, map[string]any{"schedule": "@every 1s"})},
		"127.0.0.1:0")
	d := start(t, cfg, "sync")
	addr := d.httpAddr()
	eventually(t, 30*time.Second, "first convergence", func() bool { ok, _ := mirrored(o.sim("airtable"), o.sim("devrev")); return ok })
	eventually(t, 10*time.Second, "/readyz 200", func() bool { return readyz(addr) == http.StatusOK })

	// Slow the source so the cut lands inside runs as well as between them.
	o.sim("airtable").Faults().Latency(20 * time.Millisecond)
	proxy.Cut()
	outage := time.Now()
	eventually(t, 15*time.Second, "/readyz 503 during the outage", func() bool { return readyz(addr) == http.StatusServiceUnavailable })
	addGroup(o.sim("airtable"), &tn, "Added During Outage", 5)
	for time.Since(outage) < 3*time.Second {
		if d.exited() {
			t.Fatalf("the daemon exited (%d) while the database was away; stderr:\n%s", d.code, tail(d.stderr.String(), 3000))
		}
		time.Sleep(50 * time.Millisecond)
	}
	proxy.Restore()
	o.sim("airtable").Faults().Clear()
	eventually(t, 30*time.Second, "/readyz 200 after recovery", func() bool { return readyz(addr) == http.StatusOK })
	eventually(t, 60*time.Second, "convergence after recovery", func() bool { ok, _ := mirrored(o.sim("airtable"), o.sim("devrev")); return ok })
	o.assertNoPartialGroups("airtable", 5)
	o.assertNoDuplicates("devrev")
	_ = d.cmd.Process.Signal(syscall.SIGTERM)
	if code := d.wait(30 * time.Second); code != 0 {
		t.Fatalf("daemon exited %d; stderr:\n%s", code, tail(d.stderr.String(), 2000))
	}
	reportStuckRuns(t, o)
}

// reportStuckRuns fails on runs left 'running' after the daemon stopped: a run whose final
// write could not reach the database must not look alive forever.
func reportStuckRuns(t *testing.T, o *org) {
	t.Helper()
	if n := o.queryInt(`SELECT count(*) FROM runs WHERE status = 'running'`); n != 0 {
		t.Fatalf("%d runs left 'running' after the database came back and the daemon stopped", n)
	}
}

// TestPostgresConnectionReset: the daemon's backends are terminated again and again while
// it runs (pg_terminate_backend, mid-transaction or not): the daemon stays up, no group is
// ever half-merged in the mirror, and it converges once the resets stop.
func TestPostgresConnectionReset(t *testing.T) {
	t.Parallel()
	o := newOrg(t, "airtable", "devrev")
	ps := people(30)
	tn := seedSource(o.sim("airtable"), ps, 6, 5)
	seedAccounts(o.sim("devrev"), ps)
	cfg := o.writeConfig("", map[string]map[string]any{
		"airtable": o.systemYAML("airtable", nil), "devrev": o.systemYAML("devrev", nil),
	}, map[string]map[string]any{"f": flowYAML("airtable", []string{"devrev"}, map[string]any{"schedule": "@every 1s"})}, "")
	o.sim("airtable").Faults().Latency(10 * time.Millisecond)
	o.sim("devrev").Faults().Latency(5 * time.Millisecond)
	d := start(t, cfg, "sync")
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("daemon stderr:\n%s", tail(d.stderr.String(), 6000))
		}
	})
	ctx := context.WithoutCancel(t.Context())
	// Resets start once the daemon runs its schedule (a reset during start-up migration
	// makes the process exit, which is its supervisor's business, not this test's).
	eventually(t, 30*time.Second, "the first scheduled run", func() bool {
		return o.queryInt(`SELECT count(*) FROM runs`) > 0
	})
	killed := 0
	resets := 8
	if *long {
		resets = 30
	}
	for i := range resets {
		if i == resets/2 {
			addGroup(o.sim("airtable"), &tn, "Added Between Resets", 5)
		}
		eventually(t, 20*time.Second, "a daemon backend to terminate", func() bool {
			var n int
			err := o.store.Pool().QueryRow(ctx, `SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity
				WHERE application_name = $1 AND pid <> pg_backend_pid()`, o.appName()).Scan(&n)
			if err != nil {
				t.Fatal(err)
			}
			killed += n
			if d.exited() {
				t.Fatalf("the daemon exited (%d) after a connection reset; stderr:\n%s", d.code, tail(d.stderr.String(), 3000))
			}
			return n > 0
		})
		if d.exited() {
			t.Fatalf("the daemon exited (%d) after a connection reset; stderr:\n%s", d.code, tail(d.stderr.String(), 3000))
		}
		o.assertNoPartialGroups("airtable", 5)
		time.Sleep(150 * time.Millisecond) // spacing between resets, so runs make some progress
	}
	o.sim("airtable").Faults().Clear()
	o.sim("devrev").Faults().Clear()
	eventually(t, 60*time.Second, "convergence after the resets", func() bool { ok, _ := mirrored(o.sim("airtable"), o.sim("devrev")); return ok })
	o.assertNoPartialGroups("airtable", 5)
	o.assertNoDuplicates("devrev")
	t.Logf("%d backends terminated; %d runs: %s", killed, o.queryInt(`SELECT count(*) FROM runs`), runStatuses(t, o))
	_ = d.cmd.Process.Signal(syscall.SIGTERM)
	if code := d.wait(30 * time.Second); code != 0 {
		t.Fatalf("daemon exited %d; stderr:\n%s", code, tail(d.stderr.String(), 2000))
	}
	reportStuckRuns(t, o)
}

func runStatuses(t *testing.T, o *org) string {
	rows, err := o.store.Pool().Query(context.WithoutCancel(t.Context()), `SELECT status, count(*) FROM runs GROUP BY 1 ORDER BY 1`)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var b strings.Builder
	for rows.Next() {
		var s string
		var n int
		if err := rows.Scan(&s, &n); err != nil {
			t.Fatal(err)
		}
		fmt.Fprintf(&b, "%s=%d ", s, n)
	}
	return b.String()
}
