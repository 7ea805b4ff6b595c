package e2e

import (
	"context"
	"errors"
	"os"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/groupsync/groupsync/config"
	"github.com/groupsync/groupsync/syncengine"
)

// daemonOrg is airtable → devrev with the daemon's configuration on a schedule.
func daemonOrg(t *testing.T, schedule string, dbURL string) (*org, string) {
	t.Helper()
	o := newOrg(t, "airtable", "devrev")
	ps := people(30)
	seedSource(o.sim("airtable"), ps, 6, 5)
	seedAccounts(o.sim("devrev"), ps)
	cfg := o.writeConfig(dbURL, map[string]map[string]any{
		"airtable": o.systemYAML("airtable", nil), "devrev": o.systemYAML("devrev", nil),
	}, map[string]map[string]any{"f": flowYAML("airtable", []string{"devrev"}, map[string]any{"schedule": schedule})}, "")
	return o, cfg
}

// TestRunLongerThanTheScheduleDoesNotOverlap: with a 1 s schedule and runs of about 2 s, no
// two runs of the flow overlap, and the skipped ticks are logged.
func TestRunLongerThanTheScheduleDoesNotOverlap(t *testing.T) {
	t.Parallel()
	o, cfg := daemonOrg(t, "@every 1s", "")
	// Every request takes 400 ms: each run (a dozen rounds of requests) outlasts the interval.
	o.sim("airtable").Faults().Latency(400 * time.Millisecond)
	d := start(t, cfg, "sync")
	eventually(t, 60*time.Second, "three finished runs", func() bool {
		return o.queryInt(`SELECT count(*) FROM runs WHERE finished_at IS NOT NULL`) >= 3
	})
	_ = d.cmd.Process.Signal(syscall.SIGTERM)
	if code := d.wait(30 * time.Second); code != 0 {
		t.Fatalf("daemon exited %d on SIGTERM; stderr:\n%s", code, tail(d.stderr.String(), 2000))
	}
	if n := o.queryInt(`
		SELECT count(*) FROM runs a JOIN runs b ON a.id < b.id AND a.flow = b.flow
		 WHERE b.started_at < coalesce(a.finished_at, 'infinity')`); n != 0 {
		t.Fatalf("%d pairs of runs of one flow overlapped", n)
	}
	t.Logf("longest run: %d ms", o.queryInt(`SELECT (extract(epoch FROM max(finished_at - started_at)) * 1000)::bigint FROM runs`))
	if n := o.queryInt(`SELECT count(*) FROM runs WHERE finished_at - started_at > interval '1 second'`); n == 0 {
		t.Fatal("no run outlasted the 1 s interval: the test proves nothing")
	}
	if !strings.Contains(d.stderr.String(), "late ticks skipped") {
		t.Fatalf("the skipped ticks were not logged:\n%s", tail(d.stderr.String(), 2000))
	}
}

// TestSIGTERMMidRun: SIGTERM while the daemon pushes: it exits cleanly within the grace
// period, releases the lease, leaves no change in flight and no run 'running'; the next
// run converges without duplicates.
func TestSIGTERMMidRun(t *testing.T) {
	t.Parallel()
	o, cfg := daemonOrg(t, "@every 1s", "")
	o.sim("devrev").Faults().Latency(40 * time.Millisecond)
	d := start(t, cfg, "sync")
	eventually(t, 60*time.Second, "the first member add", func() bool {
		_, a, _ := o.sim("devrev").Effects().Totals()
		return a >= 1
	})
	sent := time.Now()
	_ = d.cmd.Process.Signal(syscall.SIGTERM)
	const grace = 10 * time.Second
	if code := d.wait(grace); code != 0 {
		t.Fatalf("daemon exited %d on SIGTERM; stderr:\n%s", code, tail(d.stderr.String(), 2000))
	}
	t.Logf("exited %s after SIGTERM", time.Since(sent).Round(time.Millisecond))
	if n := o.queryInt(`SELECT count(*) FROM leases WHERE expires_at > now()`); n != 0 {
		t.Fatalf("%d leases still held after a clean exit", n)
	}
	if n := o.queryInt(`SELECT count(*) FROM changes WHERE status = 'in_flight'`); n != 0 {
		t.Fatalf("%d changes left in flight", n)
	}
	if n := o.queryInt(`SELECT count(*) FROM runs WHERE status = 'running' OR finished_at IS NULL`); n != 0 {
		t.Fatalf("%d runs left running", n)
	}
	if _, a, _ := o.sim("devrev").Effects().Totals(); a >= 30 {
		t.Fatalf("the run finished all %d adds: SIGTERM did not land mid-run", a)
	}
	// A deploy is not a failure: the run is interrupted, nothing it did is failed, and
	// what it did not attempt is skipped for the next run.
	if n := o.queryInt(`SELECT count(*) FROM runs WHERE status <> 'succeeded' AND status <> 'interrupted'`); n != 0 {
		t.Fatalf("%d runs recorded neither succeeded nor interrupted after SIGTERM", n)
	}
	if n := o.queryInt(`SELECT count(*) FROM runs WHERE status = 'interrupted'`); n != 1 {
		t.Fatalf("%d interrupted runs, want the one SIGTERM stopped", n)
	}
	if n := o.queryInt(`SELECT count(*) FROM changes WHERE status = 'failed'`); n != 0 {
		t.Fatalf("%d changes failed because of SIGTERM", n)
	}
	o.sim("devrev").Faults().Clear()
	if code, p := runOnce(t, cfg); code != 0 {
		t.Fatalf("run after SIGTERM exited %d; stderr:\n%s", code, tail(p.stderr.String(), 2000))
	}
	o.assertMirrored("airtable", "devrev")
	o.assertNoDuplicates("devrev")
}

// TestThreeReplicasRunEachTickOnce: three daemons on one database with a 1 s schedule:
// every tick runs once across them.
func TestThreeReplicasRunEachTickOnce(t *testing.T) {
	t.Parallel()
	o, cfg := daemonOrg(t, "@every 1s", "")
	var ds []*proc
	for range 3 {
		ds = append(ds, start(t, cfg, "sync"))
	}
	want := int64(5)
	if *long {
		want = 20
	}
	eventually(t, 90*time.Second, "scheduled runs", func() bool {
		return o.queryInt(`SELECT count(*) FROM runs WHERE finished_at IS NOT NULL`) >= want
	})
	for _, d := range ds {
		_ = d.cmd.Process.Signal(syscall.SIGTERM)
	}
	for _, d := range ds {
		if code := d.wait(30 * time.Second); code != 0 {
			t.Fatalf("a replica exited %d; stderr:\n%s", code, tail(d.stderr.String(), 2000))
		}
	}
	if n := o.queryInt(`SELECT count(*) FROM (SELECT tick FROM runs GROUP BY flow, tick HAVING count(*) > 1) d`); n != 0 {
		t.Fatalf("%d ticks ran more than once", n)
	}
	if n := o.queryInt(`SELECT count(*) FROM runs WHERE tick IS NULL`); n != 0 {
		t.Fatalf("%d scheduled runs carry no tick", n)
	}
	holders := o.queryInt(`SELECT count(DISTINCT holder) FROM runs`)
	t.Logf("%d runs, by %d distinct replicas", o.queryInt(`SELECT count(*) FROM runs`), holders)
	o.assertMirrored("airtable", "devrev")
	o.assertNoDuplicates("devrev")
}

// TestDeadHolderHandsTheLeaseOver: a replica that dies holding the lease (it never renews
// nor releases) blocks the others only until the lease expires.
func TestDeadHolderHandsTheLeaseOver(t *testing.T) {
	t.Parallel()
	e := newEngineOrg(t, map[string]config.Flow{"f": engineFlow(config.Limits{MaxMemberRemovals: 50,
		MaxMemberRemovalsPercent: 20, MaxGroupDeletions: 5}, config.DeleteNever, "devrev")}, "airtable", "devrev")
	ps := people(20)
	seedSource(e.sim("airtable"), ps, 3, 4)
	seedAccounts(e.sim("devrev"), ps)
	const ttl = 2 * time.Second
	ctx := context.WithoutCancel(t.Context())
	// The dead replica: it took the lease and then vanished (kill -9 leaves exactly this row).
	dead, err := e.store.AcquireLease(ctx, "f", "dead-replica", ttl, nil)
	if err != nil {
		t.Fatal(err)
	}
	var replicas []*syncengine.Engine
	for _, h := range []string{"replica-b", "replica-c"} {
		eng, err := syncengine.New(syncengine.Options{Store: e.store, Config: e.cfg, Connectors: e.conns, Holder: h, LeaseTTL: ttl})
		if err != nil {
			t.Fatal(err)
		}
		replicas = append(replicas, eng)
	}
	refused := 0
	var took time.Time
	for took.IsZero() {
		for _, r := range replicas {
			res, err := r.RunFlow(ctx, "f", syncengine.RunOptions{Trigger: syncengine.TriggerOnce})
			switch {
			case errors.Is(err, syncengine.ErrFlowBusy):
				refused++
				continue
			case err != nil:
				t.Fatal(err)
			}
			if res.Status != "succeeded" {
				t.Fatalf("run after the hand-over: %s %v", res.Status, res.Err)
			}
			took = time.Now()
			break
		}
		if took.IsZero() {
			if time.Now().After(dead.Expires.Add(5 * time.Second)) {
				t.Fatal("no replica took the lease within 5 s of its expiry")
			}
			time.Sleep(50 * time.Millisecond) // poll interval of a replica retrying its tick
		}
	}
	if refused == 0 {
		t.Fatal("a replica ran while the dead holder's lease was live")
	}
	// When the lease changed hands, by the database's clock (the one expiry is kept in).
	var acquired time.Time
	var holder string
	if err := e.store.Pool().QueryRow(ctx, `SELECT acquired_at, holder FROM leases WHERE flow = 'f'`).Scan(&acquired, &holder); err != nil {
		t.Fatal(err)
	}
	if holder == "dead-replica" {
		t.Fatal("the lease still names the dead holder")
	}
	if late := acquired.Sub(dead.Expires); late > time.Second {
		t.Fatalf("the lease was taken over %s after its expiry", late)
	}
	if acquired.Before(dead.Expires) {
		t.Fatalf("the lease was taken %s before its expiry", dead.Expires.Sub(acquired))
	}
	t.Logf("lease taken over %s after expiry (%d refused attempts before)", acquired.Sub(dead.Expires).Round(time.Millisecond), refused)
	e.assertMirrored("airtable", "devrev")
}

// TestSIGHUPReloadsTheConfiguration: SIGHUP with a broken file keeps the daemon on its
// running configuration (logged); SIGHUP with a valid one restarts it on the new one
// (here: a second flow) after the runs in flight, without the process exiting.
func TestSIGHUPReloadsTheConfiguration(t *testing.T) {
	t.Parallel()
	o, cfg := daemonOrg(t, "@every 1s", "")
	d := start(t, cfg, "sync")
	eventually(t, 60*time.Second, "a first finished run", func() bool {
		return o.queryInt(`SELECT count(*) FROM runs WHERE finished_at IS NOT NULL`) >= 1
	})
	good, err := os.ReadFile(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(cfg, append(slices.Clone(good), "shedule: oops\n"...), 0o600); err != nil {
		t.Fatal(err)
	}
	_ = d.cmd.Process.Signal(syscall.SIGHUP)
	eventually(t, 20*time.Second, "the refusal logged", func() bool {
		return strings.Contains(d.stderr.String(), "the new configuration is refused")
	})
	var doc map[string]any
	if err := yaml.Unmarshal(good, &doc); err != nil {
		t.Fatal(err)
	}
	flows := doc["flows"].(map[string]any)
	flows["g"] = flows["f"]
	second, err := yaml.Marshal(doc)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(cfg, second, 0o600); err != nil {
		t.Fatal(err)
	}
	_ = d.cmd.Process.Signal(syscall.SIGHUP)
	eventually(t, 60*time.Second, "a run of the flow the reload added", func() bool {
		return o.queryInt(`SELECT count(*) FROM runs WHERE flow = 'g' AND finished_at IS NOT NULL`) >= 1
	})
	select {
	case <-d.done:
		t.Fatalf("the daemon exited on SIGHUP (%d); stderr:\n%s", d.code, tail(d.stderr.String(), 2000))
	default:
	}
	_ = d.cmd.Process.Signal(syscall.SIGTERM)
	if code := d.wait(30 * time.Second); code != 0 {
		t.Fatalf("daemon exited %d on SIGTERM; stderr:\n%s", code, tail(d.stderr.String(), 2000))
	}
	if n := o.queryInt(`SELECT count(*) FROM runs WHERE status IN ('failed', 'running')`); n != 0 {
		t.Fatalf("%d runs failed or left running across the reloads", n)
	}
}

// TestTriggerRunsAFlowNowOnTheDaemon: `groupsync trigger FLOW --wait` against a daemon
// whose schedule would not run the flow for an hour: the daemon claims the request from
// the mirror, runs the flow (trigger manual), and the command exits with its outcome.
// Without a daemon, trigger --wait says so and exits 1.
func TestTriggerRunsAFlowNowOnTheDaemon(t *testing.T) {
	t.Parallel()
	o, cfg := daemonOrg(t, "@every 1h", "")
	if code, p := runTrigger(t, cfg, "--timeout", "4s"); code != 1 || !strings.Contains(p.stderr.String(), "no daemon claimed it") {
		t.Fatalf("trigger without a daemon exited %d; stderr:\n%s", code, tail(p.stderr.String(), 2000))
	}
	d := start(t, cfg, "sync")
	code, p := runTrigger(t, cfg, "--timeout", "60s")
	if code != 0 || !strings.Contains(p.stdout.String(), ": succeeded") {
		t.Fatalf("trigger --wait exited %d; stdout:\n%s\nstderr:\n%s", code, p.stdout.String(), tail(p.stderr.String(), 2000))
	}
	if n := o.queryInt(`SELECT count(*) FROM runs WHERE trigger = 'manual' AND status = 'succeeded'`); n != 1 {
		t.Fatalf("%d succeeded manual runs, want the requested one", n)
	}
	// The earlier request, left pending while no daemon ran, was served by the same run.
	if n := o.queryInt(`SELECT count(*) FROM run_requests WHERE run_id IS NULL`); n != 0 {
		t.Fatalf("%d requests left pending", n)
	}
	o.assertMirrored("airtable", "devrev")
	_ = d.cmd.Process.Signal(syscall.SIGTERM)
	if code := d.wait(30 * time.Second); code != 0 {
		t.Fatalf("daemon exited %d on SIGTERM", code)
	}
}

func runTrigger(t *testing.T, cfg string, args ...string) (int, *proc) {
	t.Helper()
	p := start(t, cfg, append([]string{"trigger", "f", "--wait"}, args...)...)
	return p.wait(90 * time.Second), p
}
