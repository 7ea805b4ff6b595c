package e2e

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/groupsync/groupsync/connectors/simkit"
)

// killPoint says when to kill -9 the binary during a first sync.
type killPoint struct {
	name string
	// ready reports, polled every millisecond, that the process p is at the point.
	ready func(o *org, p *proc) bool
}

func killPoints() []killPoint {
	pts := []killPoint{
		// Mid page: the source answers slowly, the kill lands while its listing is half read.
		{"mid_source_listing", func(o *org, _ *proc) bool { return o.sim("airtable").Counter().Total() >= 4 }},
		// Mid merge: the kill lands while a merge is open (begun, not yet applied): the
		// process has logged more "merge begun" lines than "merged" ones (debug level). A
		// first sync's merges spool their pages to an unlinked local file, which dies with
		// the process; later merges stage by short COPYs into registered staging tables,
		// left for the sweep. Either way nothing reached the mirror.
		{"mid_merge", func(_ *org, p *proc) bool {
			logs := p.stderr.String()
			return strings.Count(logs, `"msg":"merge begun"`) > strings.Count(logs, `"msg":"merged"`)
		}},
		// Between send and record of a push: the target applied the create but the binary
		// has not recorded it yet (or just has: both must converge without a duplicate).
		{"after_first_create_sent", func(o *org, _ *proc) bool { c, _, _ := o.sim("devrev").Effects().Totals(); return c >= 1 }},
		{"after_first_add_sent", func(o *org, _ *proc) bool { _, a, _ := o.sim("devrev").Effects().Totals(); return a >= 1 }},
	}
	if *long {
		pts = append(pts,
			killPoint{"mid_member_listing", func(o *org, _ *proc) bool { return o.sim("airtable").Counter().Total() >= 9 }},
			killPoint{"mid_adds", func(o *org, _ *proc) bool { _, a, _ := o.sim("devrev").Effects().Totals(); return a >= 20 }},
			killPoint{"after_target_pull", func(o *org, _ *proc) bool { return o.sim("devrev").Counter().Total() >= 3 }},
		)
	}
	return pts
}

// TestKillNineThenConverge kills the binary with SIGKILL at several points of a first sync,
// restarts it, and checks that one clean run converges with no group created twice and no
// membership added twice.
func TestKillNineThenConverge(t *testing.T) {
	t.Parallel()
	for _, kp := range killPoints() {
		t.Run(kp.name, func(t *testing.T) {
			t.Parallel()
			o := newOrg(t, "airtable", "devrev")
			ps := people(40)
			seedSource(o.sim("airtable"), ps, 8, 6)
			seedAccounts(o.sim("devrev"), ps)
			// Slow simulators so each kill lands mid-work rather than after the end.
			o.sim("airtable").Faults().Latency(15 * time.Millisecond)
			o.sim("devrev").Faults().Latency(5 * time.Millisecond)
			cfg := o.writeConfig("", map[string]map[string]any{
				"airtable": o.systemYAML("airtable", nil), "devrev": o.systemYAML("devrev", nil),
			}, map[string]map[string]any{"f": flowYAML("airtable", []string{"devrev"}, nil)}, "")

			p := start(t, cfg, "sync", "--once")
			deadline := time.Now().Add(60 * time.Second)
			for !kp.ready(o, p) {
				if p.exited() {
					t.Fatalf("the run ended (exit %d) before kill point %s; stderr:\n%s", p.code, kp.name, tail(p.stderr.String(), 2000))
				}
				if time.Now().After(deadline) {
					t.Fatalf("kill point %s never reached", kp.name)
				}
				time.Sleep(time.Millisecond)
			}
			p.kill9()
			o.sim("airtable").Faults().Clear()
			o.sim("devrev").Faults().Clear()
			// The dead process holds the flow's lease until it expires (lease.ttl, 2 minutes by
			// default): a restart before then is refused as "already running". The test lets
			// the lease's time pass instead of waiting for it.
			o.expireLeases()

			code, p2 := runOnce(t, cfg)
			if code != 0 {
				t.Fatalf("the run after kill -9 at %s exited %d; stderr:\n%s", kp.name, code, tail(p2.stderr.String(), 3000))
			}
			o.assertMirrored("airtable", "devrev")
			o.assertNoDuplicates("devrev")
			// A further run finds nothing to do: the kill left no debris that keeps planning.
			before := effectsOf(o.sim("devrev"))
			if code, p3 := runOnce(t, cfg); code != 0 {
				t.Fatalf("third run exited %d; stderr:\n%s", code, tail(p3.stderr.String(), 2000))
			}
			if after := effectsOf(o.sim("devrev")); after != before {
				t.Fatalf("a converged re-run wrote to the target: %v → %v", before, after)
			}
			if n := o.queryInt(`SELECT count(*) FROM changes WHERE status = 'in_flight'`); n != 0 {
				t.Fatalf("%d changes still in flight after recovery", n)
			}
			reportStuckRuns(t, o)
		})
	}
}

func effectsOf(s simkit.Sim) string {
	c, a, r := s.Effects().Totals()
	return fmt.Sprintf("creates=%d adds=%d removes=%d", c, a, r)
}
