package syncengine_test

import (
	"context"
	"errors"
	"fmt"
	"os/exec"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/groupsync/groupsync/config"
	"github.com/groupsync/groupsync/connectors"
	"github.com/groupsync/groupsync/connectors/simkit"
	"github.com/groupsync/groupsync/connectors/simorg"
	"github.com/groupsync/groupsync/state"
	"github.com/groupsync/groupsync/state/statetest"
	"github.com/groupsync/groupsync/syncengine"
)

// env is one simulated organisation, a fresh mirror schema and an engine over them.
type env struct {
	t     *testing.T
	org   *simorg.Org
	store *state.Store
	cfg   *config.Config
	conns map[string]connectors.Connector
	eng   *syncengine.Engine
}

func defaultFlow(source string, targets ...string) config.Flow {
	return config.Flow{
		Source: source, Targets: targets, Schedule: "@every 1m",
		Scope:      config.Scope{All: true},
		Membership: config.MembershipMirror, CreateGroups: true, DeleteGroups: config.DeleteNever,
		Limits: config.Limits{MaxMemberRemovals: 50, MaxMemberRemovalsPercent: 20, MaxGroupDeletions: 5,
			MinSourceRatio: 0.8},
		MaxChangeAttempts: 3,
	}
}

func newEnv(t *testing.T, systems map[string]connectors.Kind, flows map[string]config.Flow) *env {
	t.Helper()
	var specs []simorg.Spec
	for name, kind := range systems {
		specs = append(specs, simorg.Spec{Name: name, Kind: kind})
	}
	org, err := simorg.Start(specs...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(org.Close)
	cfg := &config.Config{Systems: map[string]config.System{}, Flows: flows}
	for name, s := range org.Systems {
		cfg.Systems[name] = config.System{Kind: s.Kind, BaseURL: s.Config.BaseURL}
	}
	e := &env{t: t, org: org, store: statetest.Store(t), cfg: cfg}
	e.conns, err = org.Open(nil, nil, func(c *connectors.SystemConfig) { c.MaxAttempts = 2 })
	if err != nil {
		t.Fatal(err)
	}
	e.eng = e.newEngine("replica-a")
	return e
}

func (e *env) newEngine(holder string) *syncengine.Engine {
	eng, err := syncengine.New(syncengine.Options{Store: e.store, Config: e.cfg, Connectors: e.conns, Holder: holder})
	if err != nil {
		e.t.Fatal(err)
	}
	return eng
}

func (e *env) sim(name string) simkit.Sim { return e.org.Systems[name].Sim }

func (e *env) run(flow string, ro syncengine.RunOptions) *syncengine.Result {
	e.t.Helper()
	if ro.Trigger == "" {
		ro.Trigger = syncengine.TriggerOnce
	}
	res, err := e.eng.RunFlow(e.t.Context(), flow, ro)
	if err != nil {
		e.t.Fatalf("RunFlow(%s): %v", flow, err)
	}
	return res
}

func (e *env) mustStatus(res *syncengine.Result, want string) {
	e.t.Helper()
	if res.Status != want {
		e.t.Fatalf("run %d status = %s (%v; blocked: %s), want %s; targets %s", res.RunID, res.Status, res.Err, res.BlockedReason, want, describe(res))
	}
}

func describe(res *syncengine.Result) string {
	var b strings.Builder
	for name, t := range res.Targets {
		fmt.Fprintf(&b, "%s:%+v ", name, *t)
	}
	return b.String()
}

// people is the shared staff: the same emails exist in every system.
func people(n int) []simkit.Person {
	return simkit.Generate(simkit.GenOptions{People: n, Seed: 1}).People
}

// seedSource seeds groups with members drawn from people.
func seedSource(s simkit.Sim, ps []simkit.Person, groups, members int) simkit.Tenant {
	tn := simkit.Generate(simkit.GenOptions{Groups: groups, People: len(ps), MembersPerGroup: members, Seed: 3})
	tn.People = ps
	s.Seed(tn)
	return tn
}

// pairEnv starts a flow's source and its one target (each system named after its kind), seeds
// the source with groups × members drawn from n people and gives the target an account for
// each person.
func pairEnv(t *testing.T, flow config.Flow, n, groups, members int) (*env, []simkit.Person, simkit.Tenant) {
	t.Helper()
	src, tgt := flow.Source, flow.Targets[0]
	e := newEnv(t, map[string]connectors.Kind{src: connectors.Kind(src), tgt: connectors.Kind(tgt)},
		map[string]config.Flow{"f": flow})
	ps := people(n)
	tn := seedSource(e.sim(src), ps, groups, members)
	seedAccounts(e.sim(tgt), ps)
	return e, ps, tn
}

// seedAccounts gives a target accounts for the people (no groups).
func seedAccounts(s simkit.Sim, ps []simkit.Person) {
	s.Seed(simkit.Tenant{People: ps})
}

// assertMirrored checks that every source group exists in the target by name with the same
// member emails, less the emails the target has no account for.
func (e *env) assertMirrored(source, target string, missing ...string) {
	e.t.Helper()
	tgt := map[string]simkit.GroupState{}
	for _, g := range e.sim(target).Snapshot() {
		if _, dup := tgt[g.Name]; dup {
			e.t.Fatalf("%s holds two groups named %q", target, g.Name)
		}
		tgt[g.Name] = g
	}
	for _, g := range e.sim(source).Snapshot() {
		if g.Archived {
			continue
		}
		tg, ok := tgt[g.Name]
		if !ok {
			e.t.Fatalf("%s lacks group %q", target, g.Name)
		}
		want := slices.DeleteFunc(slices.Clone(g.MemberEmails), func(m string) bool { return slices.Contains(missing, m) })
		if !slices.Equal(tg.MemberEmails, want) {
			e.t.Fatalf("%s group %q members = %v, want %v", target, g.Name, tg.MemberEmails, want)
		}
	}
}

func effects(s simkit.Sim) [3]int {
	c, a, r := s.Effects().Totals()
	return [3]int{c, a, r}
}

func (e *env) changeCount(runID int64, statuses ...string) int64 {
	e.t.Helper()
	rows, err := e.store.ChangeCounts(e.t.Context(), runID)
	if err != nil {
		e.t.Fatal(err)
	}
	var n int64
	for _, r := range rows {
		if slices.Contains(statuses, r.Status) {
			n += r.Count
		}
	}
	return n
}

func TestAirtableToDevRevAndSelfCommunity(t *testing.T) {
	t.Parallel()
	e := newEnv(t, map[string]connectors.Kind{"airtable": connectors.KindAirtable, "devrev": connectors.KindDevRev,
		"selfcommunity": connectors.KindSelfCommunity},
		map[string]config.Flow{"hr": defaultFlow("airtable", "devrev", "selfcommunity")})
	ps := people(30)
	tn := seedSource(e.sim("airtable"), ps, 5, 8)
	// Everyone has an account in SelfCommunity; one person is missing in DevRev.
	seedAccounts(e.sim("selfcommunity"), ps)
	noAccount := ps[tn.Groups[0].Members[0]].Email
	devrevPeople := slices.DeleteFunc(slices.Clone(ps), func(p simkit.Person) bool { return p.Email == noAccount })
	// DevRev already has the first group under a differently spaced and cased name: it must be adopted.
	devrevTenant := simkit.Tenant{People: devrevPeople, Groups: []simkit.TenantGroup{{Name: "  " + strings.ToUpper(tn.Groups[0].Name) + " ", Description: "pre-existing"}}}
	e.sim("devrev").Seed(devrevTenant)

	res := e.run("hr", syncengine.RunOptions{})
	e.mustStatus(res, state.RunSucceeded)
	e.assertMirrored("airtable", "devrev", connectors.NormalizeEmail(noAccount))
	e.assertMirrored("airtable", "selfcommunity")
	if got := res.Targets["devrev"].Reasons["no_account"]; got == 0 {
		t.Fatalf("the member without a DevRev account was not reported no_account: %s", describe(res))
	}
	if n := e.sim("devrev").Effects().MaxCreates(); n != 1 {
		t.Fatalf("a DevRev group was created %d times", n)
	}
	if c, _, _ := e.sim("devrev").Effects().Totals(); c != 4 {
		t.Fatalf("DevRev creates = %d, want 4 (the fifth group adopted)", c)
	}

	// An immediate second run plans nothing and writes nothing.
	before := map[string][3]int{"devrev": effects(e.sim("devrev")), "selfcommunity": effects(e.sim("selfcommunity"))}
	res2 := e.run("hr", syncengine.RunOptions{})
	e.mustStatus(res2, state.RunSucceeded)
	if n := e.changeCount(res2.RunID, state.ChangePlanned, state.ChangeApplied, state.ChangeFailed); n != 0 {
		t.Fatalf("second run made %d changes, want 0: %s", n, describe(res2))
	}
	for name, b := range before {
		if after := effects(e.sim(name)); after != b {
			t.Fatalf("second run wrote to %s: effects %v → %v", name, b, after)
		}
	}

	// A member removed at the source is removed at the targets (mirror mode).
	src := e.conns["airtable"].(connectors.Writer)
	g0 := findGroup(t, e.conns["airtable"], tn.Groups[0].Name)
	victim := ps[tn.Groups[0].Members[1]].Email
	acc, err := e.conns["airtable"].FindAccountByEmail(t.Context(), connectors.NormalizeEmail(victim))
	if err != nil {
		t.Fatal(err)
	}
	if err := src.RemoveMembers(t.Context(), g0.ID, []string{acc.ID}); err != nil {
		t.Fatal(err)
	}
	res3 := e.run("hr", syncengine.RunOptions{})
	e.mustStatus(res3, state.RunSucceeded)
	e.assertMirrored("airtable", "devrev", connectors.NormalizeEmail(noAccount))
	e.assertMirrored("airtable", "selfcommunity")
	if res3.Targets["devrev"].Removed != 1 || res3.Targets["selfcommunity"].Removed != 1 {
		t.Fatalf("removal not pushed: %s", describe(res3))
	}
	e.assertCountsInStep()
}

// assertCountsInStep checks that each system's counters (kept by deltas, never recounted
// on a no-op pull) equal its live rows.
func (e *env) assertCountsInStep() {
	e.t.Helper()
	rows, err := e.store.Pool().Query(e.t.Context(), `
		SELECT s.name, s.membership_count,
		       (SELECT count(*) FROM memberships m WHERE m.system = s.name AND m.deleted_at IS NULL)
		  FROM systems s`)
	if err != nil {
		e.t.Fatal(err)
	}
	defer rows.Close()
	for rows.Next() {
		var name string
		var kept, live int64
		if err := rows.Scan(&name, &kept, &live); err != nil {
			e.t.Fatal(err)
		}
		if kept != live {
			e.t.Errorf("%s: membership_count %d, live memberships %d", name, kept, live)
		}
	}
}

func findGroup(t *testing.T, c connectors.Connector, name string) connectors.Group {
	t.Helper()
	g, err := c.FindGroupByName(t.Context(), name)
	if err != nil {
		t.Fatalf("FindGroupByName(%q): %v", name, err)
	}
	return g
}

func TestAddOnlyKeepsTargetMembers(t *testing.T) {
	t.Parallel()
	flow := defaultFlow("airtable", "devrev")
	flow.Membership = config.MembershipAddOnly
	e, ps, tn := pairEnv(t, flow, 12, 2, 5)
	e.mustStatus(e.run("f", syncengine.RunOptions{}), state.RunSucceeded)
	g0 := findGroup(t, e.conns["airtable"], tn.Groups[0].Name)
	acc, _ := e.conns["airtable"].FindAccountByEmail(t.Context(), connectors.NormalizeEmail(ps[tn.Groups[0].Members[0]].Email))
	if err := e.conns["airtable"].(connectors.Writer).RemoveMembers(t.Context(), g0.ID, []string{acc.ID}); err != nil {
		t.Fatal(err)
	}
	_, _, removesBefore := e.sim("devrev").Effects().Totals()
	res := e.run("f", syncengine.RunOptions{})
	e.mustStatus(res, state.RunSucceeded)
	if _, _, r := e.sim("devrev").Effects().Totals(); r != removesBefore {
		t.Fatalf("add_only flow removed %d members", r-removesBefore)
	}
}

// TestOneSourceOneTarget runs a flow between two kinds (the pairs other tests do not cover):
// the target ends up holding the source's groups and members, and a second run changes nothing.
func TestOneSourceOneTarget(t *testing.T) {
	t.Parallel()
	for _, pair := range [][2]connectors.Kind{
		{connectors.KindDevRev, connectors.KindAirtable},
		{connectors.KindSocialcast, connectors.KindSelfCommunity},
		{connectors.KindSelfCommunity, connectors.KindDevRev},
	} {
		src, tgt := string(pair[0]), string(pair[1])
		t.Run(src+"_to_"+tgt, func(t *testing.T) {
			t.Parallel()
			e, _, _ := pairEnv(t, defaultFlow(src, tgt), 20, 4, 6)
			e.mustStatus(e.run("f", syncengine.RunOptions{}), state.RunSucceeded)
			e.assertMirrored(src, tgt)
			res := e.run("f", syncengine.RunOptions{})
			if n := e.changeCount(res.RunID, state.ChangePlanned, state.ChangeApplied, state.ChangeFailed); n != 0 {
				t.Fatalf("second run made %d changes: %s", n, describe(res))
			}
			e.assertCountsInStep()
		})
	}
}

func TestMemberWritesToSocialcastAreUnsupported(t *testing.T) {
	t.Parallel()
	e, _, _ := pairEnv(t, defaultFlow("devrev", "socialcast"), 10, 2, 3)
	res := e.run("f", syncengine.RunOptions{})
	e.mustStatus(res, state.RunSucceeded)
	sc := res.Targets["socialcast"]
	if sc.Created != 2 || sc.Reasons["unsupported"] != 2 || sc.Failed != 0 {
		t.Fatalf("socialcast target: %+v; want 2 groups created and their member adds skipped as unsupported (one row per group)", *sc)
	}
	var members int
	if err := e.store.Pool().QueryRow(t.Context(), `SELECT sum((payload->>'members')::int) FROM changes
		WHERE run_id = $1 AND reason = 'unsupported'`, res.RunID).Scan(&members); err != nil || members != 6 {
		t.Fatalf("unsupported member adds cover %d members (%v), want 6", members, err)
	}
}

func TestGuardBlocksEmptyAndTruncatedSource(t *testing.T) {
	t.Parallel()
	e, ps, _ := pairEnv(t, defaultFlow("airtable", "devrev"), 20, 4, 6)
	e.mustStatus(e.run("f", syncengine.RunOptions{}), state.RunSucceeded)
	snapshot := e.sim("devrev").Snapshot()
	devEffects := effects(e.sim("devrev"))

	// A listing cut mid-body: the run fails (nothing was planned, so nothing to approve)
	// and nothing is pushed.
	e.sim("airtable").Faults().TruncateNext("", -1)
	res := e.run("f", syncengine.RunOptions{})
	e.mustStatus(res, state.RunFailed)
	e.sim("airtable").Faults().Clear()

	// The source comes back with its groups emptied: the guard trips.
	tn := simkit.Generate(simkit.GenOptions{Groups: 4, People: 20, MembersPerGroup: 0, Seed: 3})
	tn.People = ps
	e.sim("airtable").Seed(tn)
	res = e.run("f", syncengine.RunOptions{})
	e.mustStatus(res, state.RunBlocked)
	if !strings.Contains(res.BlockedReason, "apply") {
		t.Fatalf("blocked reason does not say how to approve: %s", res.BlockedReason)
	}
	// And an empty group list: blocked too.
	e.sim("airtable").Seed(simkit.Tenant{People: ps})
	res = e.run("f", syncengine.RunOptions{})
	e.mustStatus(res, state.RunBlocked)
	if got := effects(e.sim("devrev")); got != devEffects {
		t.Fatalf("a blocked run wrote to the target: %v → %v", devEffects, got)
	}
	if !slices.EqualFunc(snapshot, e.sim("devrev").Snapshot(), func(a, b simkit.GroupState) bool { return slices.Equal(a.MemberEmails, b.MemberEmails) }) {
		t.Fatal("target members changed under blocked runs")
	}
}

func TestPlanThenApplyPushesExactlyThePlan(t *testing.T) {
	t.Parallel()
	e, _, _ := pairEnv(t, defaultFlow("airtable", "devrev"), 20, 3, 5)
	plan := e.run("f", syncengine.RunOptions{Trigger: syncengine.TriggerPlan, PlanOnly: true})
	e.mustStatus(plan, state.RunPlanned)
	if c := effects(e.sim("devrev")); c != [3]int{} {
		t.Fatalf("plan wrote to the target: %v", c)
	}
	planned := e.changeCount(plan.RunID, state.ChangePlanned)
	res, err := e.eng.Apply(t.Context(), plan.RunID, false, "tester@host")
	if err != nil {
		t.Fatalf("Apply: %v", err)
	}
	e.mustStatus(res, state.RunSucceeded)
	if applied := e.changeCount(plan.RunID, state.ChangeApplied); applied != planned {
		t.Fatalf("applied %d changes of a %d-change plan", applied, planned)
	}
	e.assertMirrored("airtable", "devrev")
	if _, err := e.eng.Apply(t.Context(), plan.RunID, false, "tester@host"); err == nil {
		t.Fatal("applying the same run twice was accepted")
	}
}

func TestApplyRefusesAMovedMirror(t *testing.T) {
	t.Parallel()
	e, _, tn := pairEnv(t, defaultFlow("airtable", "devrev"), 20, 3, 5)
	plan := e.run("f", syncengine.RunOptions{Trigger: syncengine.TriggerPlan, PlanOnly: true})
	tn.Groups = tn.Groups[:2]
	e.sim("airtable").Seed(tn)
	_, err := e.eng.Apply(t.Context(), plan.RunID, false, "tester@host")
	if !errors.Is(err, syncengine.ErrPlanMoved) {
		t.Fatalf("Apply over a moved mirror = %v, want ErrPlanMoved", err)
	}
	if c := effects(e.sim("devrev")); c != [3]int{} {
		t.Fatalf("a refused apply wrote to the target: %v", c)
	}
}

func TestBlockedRunApprovedWithAllowDeletes(t *testing.T) {
	t.Parallel()
	flow := defaultFlow("airtable", "devrev")
	flow.Limits.MaxMemberRemovals = 2
	e, _, tn := pairEnv(t, flow, 20, 2, 10)
	e.mustStatus(e.run("f", syncengine.RunOptions{}), state.RunSucceeded)
	// Three members leave one group: one above the limit of 2.
	tn.Groups[0].Members = tn.Groups[0].Members[3:]
	e.sim("airtable").Seed(tn)
	res := e.run("f", syncengine.RunOptions{})
	e.mustStatus(res, state.RunBlocked)
	if _, err := e.eng.Apply(t.Context(), res.RunID, false, "tester"); err == nil {
		t.Fatal("a blocked run was applied without --allow-deletes")
	}
	applied, err := e.eng.Apply(t.Context(), res.RunID, true, "tester")
	if err != nil {
		t.Fatalf("Apply --allow-deletes: %v", err)
	}
	e.mustStatus(applied, state.RunSucceeded)
	e.assertMirrored("airtable", "devrev")
}

func TestInterruptedPushCreatesNoDuplicates(t *testing.T) {
	t.Parallel()
	e, _, _ := pairEnv(t, defaultFlow("airtable", "devrev"), 20, 3, 5)
	res := e.run("f", syncengine.RunOptions{})
	e.mustStatus(res, state.RunSucceeded)
	// Rewind the mirror to the moment after the writes were sent and before they were
	// recorded, as a kill -9 would leave it: the changes in flight, the target's new groups,
	// links and memberships unknown to the mirror.
	ctx := t.Context()
	for _, q := range []string{
		`UPDATE changes SET status = 'in_flight' WHERE run_id = $1`,
		`DELETE FROM memberships WHERE system = 'devrev'`,
		`DELETE FROM links WHERE system = 'devrev'`,
		`DELETE FROM groups WHERE system = 'devrev'`,
	} {
		var args []any
		if strings.Contains(q, "$1") {
			args = []any{res.RunID}
		}
		if _, err := e.store.Pool().Exec(ctx, q, args...); err != nil {
			t.Fatal(err)
		}
	}
	res2 := e.run("f", syncengine.RunOptions{})
	e.mustStatus(res2, state.RunSucceeded)
	if n := e.sim("devrev").Effects().MaxCreates(); n != 1 {
		t.Fatalf("a group was created %d times after the interrupted run", n)
	}
	if n := e.sim("devrev").Effects().MaxAdds(); n != 1 {
		t.Fatalf("a member was added %d times after the interrupted run", n)
	}
	e.assertMirrored("airtable", "devrev")
	var failed int64
	if err := e.store.Pool().QueryRow(ctx, `SELECT count(*) FROM changes WHERE run_id = $1 AND reason = 'interrupted'`, res.RunID).Scan(&failed); err != nil || failed == 0 {
		t.Fatalf("interrupted changes were not reconciled: %d, %v", failed, err)
	}
}

func TestTwoEnginesRunATickOnce(t *testing.T) {
	t.Parallel()
	e, _, _ := pairEnv(t, defaultFlow("airtable", "devrev"), 10, 2, 3)
	other := e.newEngine("replica-b")
	for i := 0; i < 3; i++ {
		at := time.Date(2026, 1, 1, 0, i, 0, 0, time.UTC)
		var wg sync.WaitGroup
		var mu sync.Mutex
		ran, busy := 0, 0
		for _, eng := range []*syncengine.Engine{e.eng, other} {
			wg.Add(1)
			go func() {
				defer wg.Done()
				_, err := eng.RunFlow(context.Background(), "f", syncengine.RunOptions{Trigger: syncengine.TriggerSchedule, Tick: &at})
				mu.Lock()
				defer mu.Unlock()
				switch {
				case err == nil:
					ran++
				case errors.Is(err, syncengine.ErrFlowBusy):
					busy++
				default:
					t.Errorf("RunFlow: %v", err)
				}
			}()
		}
		wg.Wait()
		// A replica waking late for the same tick does not run it again.
		if _, err := other.RunFlow(t.Context(), "f", syncengine.RunOptions{Trigger: syncengine.TriggerSchedule, Tick: &at}); !errors.Is(err, syncengine.ErrFlowBusy) {
			t.Fatalf("late replica ran an already-run tick: %v", err)
		}
		if ran != 1 || busy != 1 {
			t.Fatalf("tick %d: %d replicas ran it and %d were turned away; want 1 and 1", i, ran, busy)
		}
	}
	var runs int
	if err := e.store.Pool().QueryRow(t.Context(), `SELECT count(*) FROM runs WHERE trigger = 'schedule'`).Scan(&runs); err != nil || runs != 3 {
		t.Fatalf("scheduled runs = %d (%v), want 3", runs, err)
	}
}

func TestDryRunWritesNothing(t *testing.T) {
	t.Parallel()
	e, _, _ := pairEnv(t, defaultFlow("airtable", "devrev"), 10, 3, 4)
	res := e.run("f", syncengine.RunOptions{DryRun: true})
	e.mustStatus(res, state.RunDryRun)
	if c := effects(e.sim("devrev")); c != [3]int{} {
		t.Fatalf("dry run wrote to the target: %v", c)
	}
	for _, ep := range e.sim("devrev").Counter().Endpoints() {
		if strings.Contains(ep, "create") || strings.Contains(ep, "update") || strings.Contains(ep, "members.add") || strings.Contains(ep, "members.remove") {
			t.Fatalf("dry run sent a write request: %s", ep)
		}
	}
	if n := e.changeCount(res.RunID, state.ChangePlanned); n == 0 {
		t.Fatal("dry run stored no plan")
	}
}

func TestLeaseOfADeadLocalProcessIsTakenOver(t *testing.T) {
	t.Parallel()
	e, _, _ := pairEnv(t, defaultFlow("airtable", "devrev"), 5, 1, 2)
	// A replica process of this host held the lease for another hour, then was killed -9.
	cmd := exec.Command("sleep", "60")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	dead, err := syncengine.HolderOfProcess(cmd.Process.Pid)
	if err != nil {
		t.Fatal(err)
	}
	_ = cmd.Process.Kill()
	_ = cmd.Wait()
	if _, err := e.store.Pool().Exec(t.Context(), `INSERT INTO leases (flow, holder, term, expires_at)
		VALUES ('f', $1, 7, now() + interval '1 hour')`, dead); err != nil {
		t.Fatal(err)
	}
	eng, err := syncengine.New(syncengine.Options{Store: e.store, Config: e.cfg, Connectors: e.conns})
	if err != nil {
		t.Fatal(err)
	}
	res, err := eng.RunFlow(t.Context(), "f", syncengine.RunOptions{Trigger: syncengine.TriggerOnce})
	if err != nil {
		t.Fatalf("a dead process's lease blocked the run: %v", err)
	}
	e.mustStatus(res, state.RunSucceeded)
	// A live holder elsewhere is respected.
	if _, err := e.store.Pool().Exec(t.Context(), `UPDATE leases SET holder = 'other-host:1', expires_at = now() + interval '1 hour' WHERE flow = 'f'`); err != nil {
		t.Fatal(err)
	}
	if _, err := eng.RunFlow(t.Context(), "f", syncengine.RunOptions{Trigger: syncengine.TriggerOnce}); !errors.Is(err, syncengine.ErrFlowBusy) {
		t.Fatalf("a live lease of another host was taken: %v", err)
	}
}

func TestFailingChangeIsRetriedOnLaterRunsThenGivenUp(t *testing.T) {
	t.Parallel()
	e, _, _ := pairEnv(t, defaultFlow("airtable", "devrev"), 6, 1, 1)
	// DevRev refuses every member add (a permanent 400): the group is created, the add fails.
	e.sim("devrev").Faults().StatusNext("groups.members.add", -1, 400)
	attempts := func(runID int64) (status, reason string, n int) {
		t.Helper()
		if err := e.store.Pool().QueryRow(t.Context(), `SELECT status, coalesce(reason, ''), attempts FROM changes
			WHERE run_id = $1 AND operation = 'add_member'`, runID).Scan(&status, &reason, &n); err != nil {
			t.Fatal(err)
		}
		return
	}
	for want := 1; want <= 3; want++ {
		res := e.run("f", syncengine.RunOptions{})
		if st, _, n := attempts(res.RunID); st != state.ChangeFailed || n != want {
			t.Fatalf("run %d: add_member %s after %d attempts, want failed after %d", want, st, n, want)
		}
	}
	before := e.sim("devrev").Counter().Count("groups.members.add")
	res := e.run("f", syncengine.RunOptions{})
	if st, reason, n := attempts(res.RunID); st != state.ChangeFailed || reason != "max_attempts" || n != 3 {
		t.Fatalf("after the cap: %s/%s after %d attempts, want failed/max_attempts after 3", st, reason, n)
	}
	if after := e.sim("devrev").Counter().Count("groups.members.add"); after != before {
		t.Fatalf("a change past its attempt cap was sent again (%d requests)", after-before)
	}
	e.mustStatus(res, state.RunFailed)
}
