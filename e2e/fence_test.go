package e2e

import (
	"net/http"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// TestPausedReplicaIsFencedOut: a replica stopped (SIGSTOP) mid-push past its lease TTL,
// while another replica takes the flow over and finishes it, sends nothing more to any
// system once resumed (SIGCONT), records that it was fenced out, and nothing is duplicated.
func TestPausedReplicaIsFencedOut(t *testing.T) {
	t.Parallel()
	o := newOrg(t, "airtable", "devrev")
	ps := people(30)
	seedSource(o.sim("airtable"), ps, 6, 5)
	seedAccounts(o.sim("devrev"), ps)
	cfg := o.writeConfig("", map[string]map[string]any{
		"airtable": o.systemYAML("airtable", nil), "devrev": o.systemYAML("devrev", nil),
	}, map[string]map[string]any{"f": flowYAML("airtable", []string{"devrev"}, nil)}, "")
	env := []string{"GROUPSYNC_LEASE_TTL=2s"}

	// A is stopped from inside its first member add: it waits for that answer, so the pause
	// lands mid-push with a change in flight.
	var a *proc
	var once sync.Once
	var mu sync.Mutex // a is set after the override is installed; the handler reads it
	stopped := make(chan struct{})
	mu.Lock()
	o.fronts["devrev"].Override(func(w http.ResponseWriter, r *http.Request) bool {
		if strings.Contains(r.URL.Path, "members.add") {
			once.Do(func() {
				mu.Lock()
				defer mu.Unlock()
				_ = a.cmd.Process.Signal(syscall.SIGSTOP)
				close(stopped)
			})
		}
		return false
	})
	a = startEnv(t, env, cfg, "sync", "--once")
	mu.Unlock()
	select {
	case <-stopped:
	case <-a.done:
		t.Fatalf("replica A ended before its first add; stderr:\n%s", tail(a.stderr.String(), 2000))
	case <-time.After(20 * time.Second):
		t.Fatal("replica A never added a member")
	}
	o.fronts["devrev"].Override(nil)
	eventually(t, 10*time.Second, "A's lease to expire", func() bool {
		return o.queryInt(`SELECT count(*) FROM leases WHERE expires_at < now()`) == 1
	})
	if code, b := runOnce(t, cfg); code != 0 {
		t.Fatalf("replica B (after the takeover) exited %d; stderr:\n%s", code, tail(b.stderr.String(), 3000))
	}
	resumed := time.Now()
	_ = a.cmd.Process.Signal(syscall.SIGCONT)
	if code := a.wait(20 * time.Second); code == 0 {
		t.Fatalf("the fenced-out replica exited 0; stderr:\n%s", tail(a.stderr.String(), 3000))
	}
	for name, f := range o.fronts {
		for _, h := range f.Hits() {
			if !h.at.Before(resumed) {
				t.Errorf("the resumed replica sent %s %s to %s", h.method, h.path, name)
			}
		}
	}
	var status, runErr string
	if err := o.store.Pool().QueryRow(t.Context(), `SELECT status, coalesce(error, '') FROM runs ORDER BY id LIMIT 1`).Scan(&status, &runErr); err != nil {
		t.Fatal(err)
	}
	if status != "failed" || !strings.Contains(runErr, "fenced out") || !strings.Contains(runErr, "taken over by") {
		t.Fatalf("the paused replica's run is %s %q; want failed, fenced out, taken over", status, runErr)
	}
	if !strings.Contains(a.stderr.String(), "fenced out") {
		t.Fatalf("the paused replica did not log that it was fenced out:\n%s", tail(a.stderr.String(), 2000))
	}
	if n := o.queryInt(`SELECT count(*) FROM changes WHERE status = 'in_flight'`); n != 0 {
		t.Fatalf("%d changes left in flight", n)
	}
	o.assertMirrored("airtable", "devrev")
	o.assertNoDuplicates("devrev")
	t.Logf("A's run: %s", runErr)
}
