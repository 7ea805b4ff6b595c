package syncengine_test

import (
	"errors"
	"slices"
	"strings"
	"testing"

	"github.com/groupsync/groupsync/config"
	"github.com/groupsync/groupsync/connectors"
	"github.com/groupsync/groupsync/connectors/airtable/airtablesim"
	"github.com/groupsync/groupsync/connectors/selfcommunity/selfcommunitysim"
	"github.com/groupsync/groupsync/connectors/simkit"
	"github.com/groupsync/groupsync/state"
	"github.com/groupsync/groupsync/syncengine"
)

// assertLinksPointAtLiveGroups checks that every link of a live source group that names a
// group in target names one the target still has, active: no write of a run deleted or
// archived a group that a live link points at.
func (e *env) assertLinksPointAtLiveGroups(source, target string) {
	e.t.Helper()
	live := map[string]bool{}
	for _, g := range e.sim(target).Snapshot() {
		live[g.ID] = !g.Archived
	}
	rows, err := e.store.Pool().Query(e.t.Context(), `
		SELECT sl.external_id, tl.external_id
		  FROM links sl
		  JOIN groups sg ON sg.system = sl.system AND sg.external_id = sl.external_id AND sg.deleted_at IS NULL
		  JOIN links tl ON tl.link_id = sl.link_id AND tl.system = $2
		 WHERE sl.system = $1`, source, target)
	if err != nil {
		e.t.Fatal(err)
	}
	defer rows.Close()
	for rows.Next() {
		var sid, tid string
		if err := rows.Scan(&sid, &tid); err != nil {
			e.t.Fatal(err)
		}
		if !live[tid] {
			e.t.Fatalf("live source group %s is linked to %s group %s, which the target no longer has active", sid, target, tid)
		}
	}
	if err := rows.Err(); err != nil {
		e.t.Fatal(err)
	}
}

// linkedTargetOf returns the target group id linked to a source group ("" if none).
func (e *env) linkedTargetOf(source, sourceID, target string) string {
	e.t.Helper()
	var tid string
	err := e.store.Pool().QueryRow(e.t.Context(), `
		SELECT coalesce((SELECT tl.external_id FROM links sl JOIN links tl ON tl.link_id = sl.link_id AND tl.system = $3
		                  WHERE sl.system = $1 AND sl.external_id = $2), '')`, source, sourceID, target).Scan(&tid)
	if err != nil {
		e.t.Fatal(err)
	}
	return tid
}

// failureReasons returns reason → count of the run's failed changes of one operation, as the
// recent_failures view shows them.
func (e *env) failureReasons(runID int64, op string) map[string]int {
	e.t.Helper()
	rows, err := e.store.Pool().Query(e.t.Context(), `
		SELECT coalesce(reason, ''), count(*) FROM recent_failures WHERE run_id = $1 AND operation = $2 GROUP BY 1`, runID, op)
	if err != nil {
		e.t.Fatal(err)
	}
	defer rows.Close()
	out := map[string]int{}
	for rows.Next() {
		var reason string
		var n int
		if err := rows.Scan(&reason, &n); err != nil {
			e.t.Fatal(err)
		}
		out[reason] = n
	}
	if err := rows.Err(); err != nil {
		e.t.Fatal(err)
	}
	return out
}

// recreate deletes the source group named name and creates a new one of that name with the
// old one's first n members.
func (e *env) recreate(source, name string, n int) (old, fresh connectors.Group) {
	e.t.Helper()
	ctx := e.t.Context()
	src := e.conns[source]
	old, err := src.FindGroupByName(ctx, name)
	if err != nil {
		e.t.Fatal(err)
	}
	var accounts []string
	if _, err := src.ListMembers(ctx, old.ID, func(ms []connectors.Member) error {
		for _, m := range ms {
			accounts = append(accounts, m.AccountID)
		}
		return nil
	}); err != nil {
		e.t.Fatal(err)
	}
	w := src.(connectors.Writer)
	if err := w.DeleteGroup(ctx, old.ID, connectors.DeleteHard); err != nil {
		e.t.Fatal(err)
	}
	if fresh, err = w.CreateGroup(ctx, connectors.GroupSpec{Name: name}); err != nil {
		e.t.Fatal(err)
	}
	if err := w.AddMembers(ctx, fresh.ID, accounts[:min(n, len(accounts))]); err != nil {
		e.t.Fatal(err)
	}
	return old, fresh
}

// A source group deleted and recreated under the same name, with delete_groups: delete: the
// old target group, still linked to the deleted group's link, is deleted first (pushTarget),
// which frees its name, and the recreated group gets a new target group in the same run.
// Push never takes the old group over (the old link's delete would then delete the group the
// new link points at), and a second run writes nothing.
func TestInvariantPushNeverMovesALink(t *testing.T) {
	t.Parallel()
	flow := defaultFlow("airtable", "selfcommunity")
	flow.DeleteGroups = config.DeleteHard
	e, _, tn := pairEnv(t, flow, 20, 3, 4)
	e.mustStatus(e.run("f", syncengine.RunOptions{}), state.RunSucceeded)
	e.assertLinksPointAtLiveGroups("airtable", "selfcommunity")

	ctx := t.Context()
	tgt := e.conns["selfcommunity"]
	name := tn.Groups[0].Name
	oldTarget, err := tgt.FindGroupByName(ctx, name)
	if err != nil {
		t.Fatal(err)
	}
	_, fresh := e.recreate("airtable", name, 4)

	res := e.run("f", syncengine.RunOptions{})
	e.mustStatus(res, state.RunSucceeded)
	e.assertLinksPointAtLiveGroups("airtable", "selfcommunity")
	if ts := res.Targets["selfcommunity"]; ts.Deleted != 1 || ts.Created != 1 || ts.Failed != 0 {
		t.Fatalf("recreate under delete: %s, want the old target group deleted and a new one created in one run", describe(res))
	}
	if _, err := tgt.GetGroup(ctx, oldTarget.ID); !errors.Is(err, connectors.ErrNotFound) {
		t.Fatalf("the deleted source group's target group: GetGroup = %v, want it deleted", err)
	}
	tid := e.linkedTargetOf("airtable", fresh.ID, "selfcommunity")
	if tid == "" || tid == oldTarget.ID {
		t.Fatalf("recreated group linked to %q, want a new target group (old one was %s)", tid, oldTarget.ID)
	}
	e.assertMirrored("airtable", "selfcommunity")
	before := effects(e.sim("selfcommunity"))
	e.mustStatus(e.run("f", syncengine.RunOptions{}), state.RunSucceeded)
	if after := effects(e.sim("selfcommunity")); after != before {
		t.Fatalf("the second run wrote (%v → %v), want nothing", before, after)
	}
}

// With deletes off, a source group deleted and recreated under the same name never leads
// to a second target group nor to a link that alternates: the deleted group's link releases
// its target group (delete_groups: never keeps the group, not the link), the recreated
// group adopts it at plan time, and the push never moves a link itself.
func TestInvariantPushNeverMovesALinkWithoutDeletes(t *testing.T) {
	t.Parallel()
	e, _, tn := pairEnv(t, defaultFlow("airtable", "devrev"), 20, 2, 3)
	e.mustStatus(e.run("f", syncengine.RunOptions{}), state.RunSucceeded)
	ctx := t.Context()
	name := tn.Groups[1].Name
	oldSource, _ := e.conns["airtable"].FindGroupByName(ctx, name)
	oldTarget := e.linkedTargetOf("airtable", oldSource.ID, "devrev")
	old, fresh := e.recreate("airtable", name, 3)
	for range 2 {
		res := e.run("f", syncengine.RunOptions{})
		if got := e.failureReasons(res.RunID, "create_group"); len(got) != 0 {
			t.Fatalf("run %d: create failures by reason %v, want none (the recreated group adopts)", res.RunID, got)
		}
		if got := e.linkedTargetOf("airtable", old.ID, "devrev"); got == oldTarget {
			t.Fatalf("run %d: the deleted source group's link still holds %s", res.RunID, oldTarget)
		}
		if got := e.linkedTargetOf("airtable", fresh.ID, "devrev"); got != oldTarget {
			t.Fatalf("run %d: recreated group linked to %q, want the released %s", res.RunID, got, oldTarget)
		}
		e.assertLinksPointAtLiveGroups("airtable", "devrev")
	}
	if n := len(slices.DeleteFunc(e.sim("devrev").Snapshot(), func(g simkit.GroupState) bool { return !strings.EqualFold(g.Name, name) })); n != 1 {
		t.Fatalf("devrev holds %d groups named %q, want 1", n, name)
	}
	e.assertMirrored("airtable", "devrev")
}

// A member batch the target refuses as a whole because of one dead account id (the mirror
// still holds an account the target deleted) is split: the other members land in this
// run, and only the dead one fails, with the target's own error, in a bounded number of calls.
func TestInvariantRefusedMemberBatchIsSplit(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct{ source, target, addRoute string }{
		{"selfcommunity", "airtable", airtablesim.RouteSCIMPatch},
		{"airtable", "selfcommunity", selfcommunitysim.RouteMembersAdd},
	} {
		t.Run(tc.target, func(t *testing.T) {
			t.Parallel()
			const n = 100
			e := newEnv(t, map[string]connectors.Kind{tc.source: connectors.Kind(tc.source), tc.target: connectors.Kind(tc.target)},
				map[string]config.Flow{"f": defaultFlow(tc.source, tc.target)})
			ps := people(n)
			tn := seedSource(e.sim(tc.source), ps, 1, n)
			deadEmail := ps[tn.Groups[0].Members[n/3]].Email
			seedAccounts(e.sim(tc.target), slices.DeleteFunc(slices.Clone(ps), func(p simkit.Person) bool { return p.Email == deadEmail }))
			e.mustStatus(e.run("f", syncengine.RunOptions{DryRun: true}), state.RunDryRun)
			// The mirror believes the target still has an account for deadEmail.
			am, err := e.store.BeginAccountMerge(t.Context(), tc.target)
			if err != nil {
				t.Fatal(err)
			}
			if err := am.Write(t.Context(), []connectors.Account{{ID: deadID(tc.target), Email: deadEmail, Hash: "dead"}}); err != nil {
				t.Fatal(err)
			}
			if _, err := am.Commit(t.Context(), false); err != nil {
				t.Fatal(err)
			}
			e.sim(tc.target).Counter().Reset()

			res := e.run("f", syncengine.RunOptions{})
			e.mustStatus(res, state.RunPartial)
			e.assertMirrored(tc.source, tc.target, deadEmail)
			cs, err := e.store.Changes(t.Context(), state.ChangeFilter{RunID: res.RunID, Operation: "add_member", Status: state.ChangeFailed})
			if err != nil {
				t.Fatal(err)
			}
			if len(cs) != 1 || cs[0].AccountEmail != deadEmail || !strings.Contains(cs[0].LastError, deadID(tc.target)) {
				t.Fatalf("failed adds = %+v, want only %s, failing with an error naming its id", cs, deadEmail)
			}
			calls := e.sim(tc.target).Counter().Count(tc.addRoute)
			limit := 1 + 2*7 + 1
			if tc.target == "airtable" {
				// Until a SCIM add has succeeded, a refused one is also tried in RFC 7644's
				// array form once (the connector does not know yet which form the server takes).
				limit++
			}
			if calls > limit {
				t.Fatalf("%d add calls for one batch of %d with one bad member, want at most %d", calls, n, limit)
			}
			t.Logf("%s: %d add calls to settle a batch of %d with one dead account", tc.target, calls, n)
		})
	}
}

// deadID is an account id of the target's own shape that the target does not know.
func deadID(kind string) string {
	if kind == "airtable" {
		return "usrDEADDEADDEAD00"
	}
	return "999999"
}

// Renames that collide within one target converge in one run: a swap (A↔B) and a 3-cycle
// (C→D→E→C) against DevRev, which refuses a name in use with 409.
func TestInvariantRenameCollisionsConvergeInOneRun(t *testing.T) {
	t.Parallel()
	e, _, tn := pairEnv(t, defaultFlow("airtable", "devrev"), 20, 5, 3)
	e.mustStatus(e.run("f", syncengine.RunOptions{}), state.RunSucceeded)
	ctx := t.Context()
	src := e.conns["airtable"]
	w := src.(connectors.Writer)
	names := make([]string, 5)
	ids := make([]string, 5)
	for i := range names {
		names[i] = tn.Groups[i].Name
		g, err := src.FindGroupByName(ctx, names[i])
		if err != nil {
			t.Fatal(err)
		}
		ids[i] = g.ID
		// Park every group first so the source itself can take the new names.
		if _, err := w.UpdateGroup(ctx, g.ID, connectors.GroupSpec{Name: names[i] + " (parked)"}); err != nil {
			t.Fatal(err)
		}
	}
	want := map[int]string{0: names[1], 1: names[0], 2: names[3], 3: names[4], 4: names[2]}
	for i, name := range want {
		if _, err := w.UpdateGroup(ctx, ids[i], connectors.GroupSpec{Name: name}); err != nil {
			t.Fatal(err)
		}
	}
	before := effects(e.sim("devrev"))

	res := e.run("f", syncengine.RunOptions{})
	e.mustStatus(res, state.RunSucceeded)
	if got := res.Targets["devrev"].Updated; got != 5 {
		t.Fatalf("%d groups updated, want the 5 renames", got)
	}
	for i, name := range want {
		tid := e.linkedTargetOf("airtable", ids[i], "devrev")
		g, err := e.conns["devrev"].GetGroup(ctx, tid)
		if err != nil {
			t.Fatal(err)
		}
		if g.Name != name {
			t.Fatalf("devrev group of source %d is named %q, want %q", i, g.Name, name)
		}
	}
	if after := effects(e.sim("devrev")); after[0] != before[0] {
		t.Fatalf("renames created %d groups, want none", after[0]-before[0])
	}
	e.assertMirrored("airtable", "devrev")
	// The next run finds nothing to do: the temporary names left no trace.
	res = e.run("f", syncengine.RunOptions{})
	e.mustStatus(res, state.RunSucceeded)
	if n := e.changeCount(res.RunID, state.ChangePlanned, state.ChangeApplied, state.ChangeFailed); n != 0 {
		t.Fatalf("run after the renames has %d changes, want 0", n)
	}
}

// A group archived by hand in a target that keeps its name and cannot restore it
// (SelfCommunity: deactivated, `active: false`) is not adopted and blocks a new group of
// that name. The create fails as name_conflict naming the archived group and what to do;
// once a person reactivates it, the next run adopts it again and the flow converges.
func TestArchivedByHandOnATargetThatCannotRestore(t *testing.T) {
	t.Parallel()
	e, _, tn := pairEnv(t, defaultFlow("airtable", "selfcommunity"), 12, 2, 4)
	e.mustStatus(e.run("f", syncengine.RunOptions{}), state.RunSucceeded)
	name := tn.Groups[0].Name
	g, err := e.conns["selfcommunity"].FindGroupByName(t.Context(), name)
	if err != nil {
		t.Fatal(err)
	}
	knob := e.sim("selfcommunity").(interface{ SetGroupArchived(string, bool) bool })
	if !knob.SetGroupArchived(g.ID, true) {
		t.Fatalf("no target group %s to archive", g.ID)
	}

	res := e.run("f", syncengine.RunOptions{})
	if reasons := e.failureReasons(res.RunID, "create_group"); reasons["name_conflict"] != 1 {
		t.Fatalf("create beside the archived group: failures %v, want one name_conflict; %s", reasons, describe(res))
	}
	var lastErr string
	if err := e.store.Pool().QueryRow(t.Context(), `SELECT last_error FROM changes WHERE run_id = $1 AND operation = 'create_group'`,
		res.RunID).Scan(&lastErr); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(lastErr, "archived target group "+g.ID) || !strings.Contains(lastErr, "reactivate it") {
		t.Fatalf("create_group last_error %q, want it to name archived group %s and say to reactivate it", lastErr, g.ID)
	}

	knob.SetGroupArchived(g.ID, false)
	e.mustStatus(e.run("f", syncengine.RunOptions{}), state.RunSucceeded)
	src, err := e.conns["airtable"].FindGroupByName(t.Context(), name)
	if err != nil {
		t.Fatal(err)
	}
	if tid := e.linkedTargetOf("airtable", src.ID, "selfcommunity"); tid != g.ID {
		t.Fatalf("after reactivation the source group links to %q, want the reactivated group %s", tid, g.ID)
	}
	e.assertMirrored("airtable", "selfcommunity")
	e.settled("selfcommunity", 2)
}
