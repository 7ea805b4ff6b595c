package e2e

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/groupsync/groupsync/config"
	"github.com/groupsync/groupsync/connectors"
	"github.com/groupsync/groupsync/connectors/simkit"
	"github.com/groupsync/groupsync/state"
	"github.com/groupsync/groupsync/syncengine"
)

// TestEmptySourceTripsTheGuard: the source suddenly lists a large group with no members,
// then no groups at all. Each run is blocked (exit 3), nothing is removed anywhere, a newer
// block supersedes the older one (whose apply is refused), and an operator's
// `apply RUN --allow-deletes` of the newest block then applies the reviewed plan.
func TestEmptySourceTripsTheGuard(t *testing.T) {
	t.Parallel()
	o := newOrg(t, "airtable", "devrev")
	ps := people(60)
	tn := seedSource(o.sim("airtable"), ps, 4, 5)
	big := simkit.TenantGroup{Name: "All Hands", Members: make([]int32, 40)}
	for i := range big.Members {
		big.Members[i] = int32(i)
	}
	tn.Groups = append(tn.Groups, big)
	o.sim("airtable").Seed(tn)
	seedAccounts(o.sim("devrev"), ps)
	cfg := o.writeConfig("", map[string]map[string]any{
		"airtable": o.systemYAML("airtable", nil), "devrev": o.systemYAML("devrev", nil),
	}, map[string]map[string]any{"f": flowYAML("airtable", []string{"devrev"}, nil)}, "")
	if code, p := runOnce(t, cfg); code != 0 {
		t.Fatalf("first run exited %d; stderr:\n%s", code, tail(p.stderr.String(), 2000))
	}
	o.assertMirrored("airtable", "devrev")
	base := effectsOf(o.sim("devrev"))

	// 1. The big group comes back empty.
	emptied := tn
	emptied.Groups = append([]simkit.TenantGroup{}, tn.Groups...)
	emptied.Groups[len(emptied.Groups)-1].Members = nil
	o.sim("airtable").Seed(emptied)
	code, p := runOnce(t, cfg)
	if code != 3 {
		t.Fatalf("run over an emptied large group exited %d, want 3 (blocked); stderr:\n%s", code, tail(p.stderr.String(), 2000))
	}
	if got := effectsOf(o.sim("devrev")); got != base {
		t.Fatalf("a blocked run wrote to the target: %s → %s", base, got)
	}
	blockedRun := o.queryInt(`SELECT max(id) FROM runs WHERE status = 'blocked'`)

	// 2. The group list comes back empty: blocked too, still nothing removed.
	o.sim("airtable").Seed(simkit.Tenant{People: ps})
	if code, p := runOnce(t, cfg); code != 3 {
		t.Fatalf("run over an empty group list exited %d, want 3; stderr:\n%s", code, tail(p.stderr.String(), 2000))
	}
	if got := effectsOf(o.sim("devrev")); got != base {
		t.Fatalf("a blocked run wrote to the target: %s → %s", base, got)
	}

	// 3. The older block was superseded by the newer one: approving it is refused.
	old := start(t, cfg, "apply", fmt.Sprint(blockedRun), "--allow-deletes")
	if code := old.wait(60 * time.Second); code != 1 || !strings.Contains(old.stderr.String(), "superseded") {
		t.Fatalf("apply of a superseded block exited %d, want 1 naming the supersession; stderr:\n%s", code, tail(old.stderr.String(), 2000))
	}

	// 4. The source is as at the first block again: blocked again, the operator reviews
	// that newest block and approves it.
	o.sim("airtable").Seed(emptied)
	if code, p := runOnce(t, cfg); code != 3 {
		t.Fatalf("run over the emptied large group again exited %d, want 3; stderr:\n%s", code, tail(p.stderr.String(), 2000))
	}
	blockedRun = o.queryInt(`SELECT max(id) FROM runs WHERE status = 'blocked'`)
	ap := start(t, cfg, "apply", fmt.Sprint(blockedRun), "--allow-deletes")
	if code := ap.wait(60 * time.Second); code != 0 {
		t.Fatalf("apply %d --allow-deletes exited %d; stderr:\n%s", blockedRun, code, tail(ap.stderr.String(), 3000))
	}
	o.assertMirrored("airtable", "devrev")
	if _, _, r := o.sim("devrev").Effects().Totals(); r != 40 {
		t.Fatalf("the approved plan removed %d members, want the 40 of the emptied group", r)
	}
}

// engineOrg is an in-process engine over simulators, for tests that need many runs with
// exact limits (faster than the binary, same engine).
type engineOrg struct {
	*org
	cfg   *config.Config
	conns map[string]connectors.Connector
	eng   *syncengine.Engine
}

func newEngineOrg(t *testing.T, flows map[string]config.Flow, names ...string) *engineOrg {
	t.Helper()
	o := newOrg(t, names...)
	cfg := &config.Config{Systems: map[string]config.System{}, Flows: flows}
	for name, s := range o.sims.Systems {
		cfg.Systems[name] = config.System{Kind: s.Kind, BaseURL: s.Config.BaseURL}
	}
	conns, err := o.sims.Open(nil, nil, func(c *connectors.SystemConfig) { c.MaxAttempts = 2; c.RateLimit = 1000; c.Burst = 100 })
	if err != nil {
		t.Fatal(err)
	}
	e := &engineOrg{org: o, cfg: cfg, conns: conns}
	eng, err := syncengine.New(syncengine.Options{Store: o.store, Config: cfg, Connectors: conns, Holder: "replica-a"})
	if err != nil {
		t.Fatal(err)
	}
	e.eng = eng
	return e
}

func (e *engineOrg) run(flow string) *syncengine.Result {
	e.t.Helper()
	res, err := e.eng.RunFlow(context.WithoutCancel(e.t.Context()), flow, syncengine.RunOptions{Trigger: syncengine.TriggerOnce})
	if err != nil {
		e.t.Fatalf("RunFlow: %v", err)
	}
	return res
}

func engineFlow(lim config.Limits, del config.DeletePolicy, target string) config.Flow {
	return config.Flow{Source: "airtable", Targets: []string{target}, Schedule: "@every 1h",
		Scope: config.Scope{All: true}, Membership: config.MembershipMirror, CreateGroups: true,
		DeleteGroups: del, Limits: lim, MaxChangeAttempts: 3}
}

// TestDeletionLimitsAtTheEdges: removals and deletions exactly at a limit pass, one below
// passes, one above blocks, for each limit (count, percent, group deletions).
func TestDeletionLimitsAtTheEdges(t *testing.T) {
	t.Parallel()
	type edge struct {
		name   string
		lim    config.Limits
		del    config.DeletePolicy
		target string
		change func(tn *simkit.Tenant, n int) // remove n members or n groups
		n      int
		block  bool
	}
	removeMembers := func(tn *simkit.Tenant, n int) {
		// Spread over groups (two per group at most), as a real churn would be.
		for i := 0; n > 0; i++ {
			k := min(n, 2)
			tn.Groups[i].Members = tn.Groups[i].Members[k:]
			n -= k
		}
	}
	// The last groups go: the simulator numbers groups in seeding order, so the others keep
	// their ids.
	removeGroups := func(tn *simkit.Tenant, n int) { tn.Groups = tn.Groups[:len(tn.Groups)-n] }
	// 5 groups × 10 members: 50 target memberships; 10% of them is 5.
	count := config.Limits{MaxMemberRemovals: 5, MaxMemberRemovalsPercent: 100, MaxGroupDeletions: 100}
	pct := config.Limits{MaxMemberRemovals: 1000, MaxMemberRemovalsPercent: 10, MaxGroupDeletions: 100}
	groups := config.Limits{MaxMemberRemovals: 1000, MaxMemberRemovalsPercent: 100, MaxGroupDeletions: 2}
	var edges []edge
	for _, d := range []struct {
		n     int
		block bool
	}{{4, false}, {5, false}, {6, true}} {
		edges = append(edges,
			edge{fmt.Sprintf("member_count_%d_of_5", d.n), count, config.DeleteNever, "devrev", removeMembers, d.n, d.block},
			edge{fmt.Sprintf("member_percent_%d_of_50_at_10pct", d.n), pct, config.DeleteNever, "devrev", removeMembers, d.n, d.block},
		)
	}
	for _, d := range []struct {
		n     int
		block bool
	}{{1, false}, {2, false}, {3, true}} {
		edges = append(edges, edge{fmt.Sprintf("group_deletions_%d_of_2", d.n), groups, config.DeleteHard, "selfcommunity", removeGroups, d.n, d.block})
	}
	for _, ed := range edges {
		t.Run(ed.name, func(t *testing.T) {
			t.Parallel()
			// DevRev cannot delete groups: group deletions go to SelfCommunity, which can.
			e := newEngineOrg(t, map[string]config.Flow{"f": engineFlow(ed.lim, ed.del, ed.target)}, "airtable", ed.target)
			ps := people(30)
			tn := seedSource(e.sim("airtable"), ps, 5, 10)
			seedAccounts(e.sim(ed.target), ps)
			if res := e.run("f"); res.Status != state.RunSucceeded {
				t.Fatalf("first run: %s %v %s", res.Status, res.Err, res.BlockedReason)
			}
			ed.change(&tn, ed.n)
			e.sim("airtable").Seed(tn)
			base := effectsOf(e.sim(ed.target))
			res := e.run("f")
			if ed.block {
				if res.Status != state.RunBlocked {
					t.Fatalf("%d over the limit: status %s, want blocked", ed.n, res.Status)
				}
				if got := effectsOf(e.sim(ed.target)); got != base {
					t.Fatalf("a blocked run wrote: %s → %s", base, got)
				}
				if !strings.Contains(res.BlockedReason, "exceed") && !strings.Contains(res.BlockedReason, "above") {
					t.Fatalf("blocked reason does not name the limit: %s", res.BlockedReason)
				}
				return
			}
			if res.Status != state.RunSucceeded {
				t.Fatalf("%d within the limit: status %s (%v; %s), want succeeded", ed.n, res.Status, res.Err, res.BlockedReason)
			}
			e.assertMirrored("airtable", ed.target)
		})
	}
}
