package state_test

import (
	"strings"
	"testing"

	"github.com/groupsync/groupsync/connectors"
	"github.com/groupsync/groupsync/state"
)

var allCaps = connectors.Capabilities{CreateGroup: true, UpdateGroup: true, ArchiveGroup: true, DeleteGroup: true,
	AddMember: true, RemoveMember: true, Description: true, Visibility: true}

// planCase is one LinkFlow + PlanFlow of flow "f" from src to tgt.
type planCase struct {
	scope      []string
	caps       connectors.Capabilities
	policy     string
	incomplete []string
	overrides  map[string]string
	config     []state.ConfigLink
	max        int
	keeping    []string
}

func (f *factory) plan(run int64, c planCase) error {
	f.tb.Helper()
	if c.policy == "" {
		c.policy = "delete"
	}
	if c.max == 0 {
		c.max = 5
	}
	if err := f.s.LinkFlow(f.ctx, state.LinkInput{RunID: run, Flow: "f", Source: "src", Targets: []string{"tgt"},
		ScopeIDs: c.scope, ConfigLinks: c.config, DeletePolicy: c.policy, Keeping: c.keeping}); err != nil {
		return err
	}
	_, err := f.s.PlanFlow(f.ctx, state.PlanInput{RunID: run, Flow: "f", Source: "src", ScopeIDs: c.scope,
		Targets: []state.PlanTarget{{System: "tgt", Caps: c.caps}}, Overrides: c.overrides, Mirror: true,
		CreateGroups: true, DeletePolicy: c.policy, MaxAttempts: c.max, IncompleteSourceGroups: c.incomplete})
	return err
}

func (f *factory) mustPlan(run int64, c planCase) []change {
	f.tb.Helper()
	if err := f.plan(run, c); err != nil {
		f.tb.Fatal(err)
	}
	return f.changes(run)
}

func find(cs []change, op, sourceGroup string) []change {
	var out []change
	for _, c := range cs {
		if c.Op == op && (sourceGroup == "" || c.SourceGroup == sourceGroup) {
			out = append(out, c)
		}
	}
	return out
}

func TestInvariantOneLinkPerTargetGroup(t *testing.T) {
	t.Run("two source groups of one name conflict, every run alike", func(t *testing.T) {
		f := newFactory(t)
		f.systems("src", "tgt")
		f.group("src", "g1", "Eng")
		f.group("src", "g2", " eng ")
		f.group("tgt", "t1", "ENG")
		for range 2 {
			run := f.run("f", "schedule", "running")
			cs := f.mustPlan(run, planCase{scope: []string{"g1", "g2"}, caps: allCaps})
			creates := find(cs, "create_group", "")
			if len(creates) != 2 {
				t.Fatalf("creates = %+v, want one per source group", creates)
			}
			for _, c := range creates {
				if c.Status != "failed" || c.Reason != "name_conflict" || !strings.Contains(c.LastError, "name_conflict") {
					t.Errorf("create of %s = %s/%s, want failed/name_conflict", c.SourceGroup, c.Status, c.Reason)
				}
			}
			if l := f.linkOf("tgt", "t1"); l != 0 {
				t.Fatalf("target group adopted by link %d although two source groups claim its name", l)
			}
		}
	})
	t.Run("a source group recreated under the same name does not take the old target group", func(t *testing.T) {
		// Under delete, the old target group is deleted (pushed before creates), which frees
		// its name: the recreated group is created in the same run, never linked to t1.
		f := newFactory(t)
		f.systems("src", "tgt")
		f.group("src", "old", "Eng", gone)
		f.group("src", "new", "Eng")
		f.group("tgt", "t1", "Eng")
		l := f.link(0, "src", "old", "f")
		f.link(l, "tgt", "t1", "f")
		cs := f.mustPlan(f.run("f", "schedule", "running"), planCase{scope: []string{"old", "new"}, caps: allCaps})
		if d := find(cs, "delete_group", "old"); len(d) != 1 || d[0].Status != "planned" || d[0].TargetGroup != "t1" {
			t.Fatalf("delete of the old group = %+v, want planned on t1", d)
		}
		if c := find(cs, "create_group", "new"); len(c) != 1 || c[0].Status != "planned" {
			t.Fatalf("create of the new group = %+v, want planned (t1's delete frees the name)", c)
		}
		// Under archive the old group keeps its name this run: the create is a name_conflict.
		ca := f.mustPlan(f.run("f", "schedule", "running"), planCase{scope: []string{"old", "new"}, caps: allCaps, policy: "archive"})
		if c := find(ca, "create_group", "new"); len(c) != 1 || c[0].Reason != "name_conflict" {
			t.Fatalf("under archive, create of the new group = %+v, want name_conflict while t1 stands for the old one", c)
		}
		if got := f.linkOf("tgt", "t1"); got != l {
			t.Fatalf("t1 moved to link %d, want it to stay with %d", got, l)
		}
		// Under delete_groups: never the old group's target is released to the new one.
		cs = f.mustPlan(f.run("f", "schedule", "running"), planCase{scope: []string{"old", "new"}, caps: allCaps, policy: "never"})
		if got := f.linkOf("tgt", "t1"); got != f.linkOf("src", "new") {
			t.Fatalf("under never, t1 linked to %d, want the new source group's link %d", got, f.linkOf("src", "new"))
		}
		if len(find(cs, "create_group", "")) != 0 || len(find(cs, "delete_group", "")) != 0 {
			t.Fatalf("under never, plan = %+v, want no create and no delete", cs)
		}
	})
	t.Run("a target that cannot delete releases the old group as under never", func(t *testing.T) {
		f := newFactory(t)
		f.systems("src", "tgt")
		f.group("src", "old", "Eng", gone)
		f.group("src", "new", "Eng")
		f.group("tgt", "t1", "Eng")
		f.link(f.link(0, "src", "old", "f"), "tgt", "t1", "f")
		noDelete := allCaps
		noDelete.DeleteGroup, noDelete.ArchiveGroup = false, false
		// delete_groups: delete on a target with no delete call (DevRev): the old target group
		// will never go, so holding its link would make the recreated group conflict for good.
		cs := f.mustPlan(f.run("f", "schedule", "running"), planCase{scope: []string{"old", "new"}, caps: noDelete,
			keeping: []string{"tgt"}})
		if got := f.linkOf("tgt", "t1"); got != f.linkOf("src", "new") {
			t.Fatalf("t1 linked to %d, want the recreated source group's link %d", got, f.linkOf("src", "new"))
		}
		if c := find(cs, "create_group", ""); len(c) != 0 {
			t.Fatalf("plan = %+v, want no create (t1 adopted)", cs)
		}
	})
	t.Run("two flows into one target group conflict", func(t *testing.T) {
		f := newFactory(t)
		f.systems("src", "src2", "tgt")
		f.exec(`INSERT INTO flows (name, source, targets) VALUES ('f', 'src', '{tgt}'), ('f2', 'src2', '{tgt}')`)
		f.group("src", "g1", "Eng")
		f.group("src2", "h1", "eng")
		f.link(0, "src2", "h1", "f2")
		f.group("tgt", "t1", "Eng")
		cs := f.mustPlan(f.run("f", "schedule", "running"), planCase{scope: []string{"g1"}, caps: allCaps})
		if c := find(cs, "create_group", "g1"); len(c) != 1 || c[0].Reason != "name_conflict" {
			t.Fatalf("create = %+v, want name_conflict: flow f2 claims the name too", c)
		}
		if f.linkOf("tgt", "t1") != 0 {
			t.Fatal("t1 adopted although two flows claim it")
		}
	})
	t.Run("one claimant adopts an unlinked live group, never an archived one", func(t *testing.T) {
		f := newFactory(t)
		f.systems("src", "tgt")
		f.group("src", "g1", "Eng")
		f.group("src", "g2", "Ops")
		f.group("tgt", "t1", "eng")
		f.group("tgt", "t2", "Ops", archived)
		cs := f.mustPlan(f.run("f", "schedule", "running"), planCase{scope: []string{"g1", "g2"}, caps: allCaps})
		if f.linkOf("tgt", "t1") != f.linkOf("src", "g1") {
			t.Fatal("t1 not adopted by its only claimant")
		}
		if f.linkOf("tgt", "t2") != 0 {
			t.Fatal("archived t2 adopted by name")
		}
		if c := find(cs, "create_group", "g2"); len(c) != 1 || c[0].Status != "planned" {
			t.Fatalf("create of g2 = %+v, want planned (a new group beside the archived one)", c)
		}
	})
	t.Run("a create is a conflict when a linked target group holds the name", func(t *testing.T) {
		f := newFactory(t)
		f.systems("src", "tgt")
		f.group("src", "g1", "Eng")
		f.group("src", "g2", "Eng-2")
		f.group("tgt", "t1", "Eng")
		f.link(f.link(0, "src", "g2", "f"), "tgt", "t1", "f") // renamed at the source since
		cs := f.mustPlan(f.run("f", "schedule", "running"), planCase{scope: []string{"g1", "g2"}, caps: allCaps})
		if c := find(cs, "create_group", "g1"); len(c) != 1 || c[0].Reason != "name_conflict" {
			t.Fatalf("create of g1 = %+v, want name_conflict", c)
		}
	})
	t.Run("config links pointing two source groups at one target group are refused", func(t *testing.T) {
		f := newFactory(t)
		f.systems("src", "tgt")
		f.group("src", "g1", "A")
		f.group("src", "g2", "B")
		f.group("tgt", "t1", "T")
		err := f.plan(f.run("f", "schedule", "running"), planCase{scope: []string{"g1", "g2"}, caps: allCaps,
			config: []state.ConfigLink{{SourceID: "g1", TargetSystem: "tgt", TargetID: "t1"}, {SourceID: "g2", TargetSystem: "tgt", TargetID: "t1"}}})
		if err == nil || !strings.Contains(err.Error(), "g1") || !strings.Contains(err.Error(), "g2") {
			t.Fatalf("err = %v, want a refusal naming g1 and g2", err)
		}
		// Another flow configured t1 for its own source group.
		f.systems("src2")
		f.group("src2", "h1", "H")
		l := f.link(0, "src2", "h1", "f2")
		f.exec(`INSERT INTO links (link_id, system, external_id, flow, configured_by_flow) VALUES ($1, 'tgt', 't1', 'f2', 'f2')`, l)
		err = f.plan(f.run("f", "schedule", "running"), planCase{scope: []string{"g1"}, caps: allCaps,
			config: []state.ConfigLink{{SourceID: "g1", TargetSystem: "tgt", TargetID: "t1"}}})
		if err == nil || !strings.Contains(err.Error(), `"f2"`) || !strings.Contains(err.Error(), "src2/h1") {
			t.Fatalf("err = %v, want a refusal naming flow f2 and src2/h1", err)
		}
	})
}

func TestInvariantRemovalsOnlyOnPositiveKnowledge(t *testing.T) {
	f := newFactory(t)
	f.systems("src", "tgt")
	for _, g := range []string{"g1", "g2", "g3"} {
		f.group("src", g, "group "+g)
		f.group("tgt", "t"+g[1:], "group "+g)
		f.link(f.link(0, "src", g, "f"), "tgt", "t"+g[1:], "f")
	}
	f.account("tgt", "ta", "a@x.io", false)
	f.account("tgt", "tn", "new@x.io", false)
	f.account("tgt", "tx", "x@x.io", false)
	f.account("tgt", "ty", "y@x.io", false)
	f.account("src", "sa", "a@x.io", false)
	f.account("src", "sgone", "gone@x.io", true) // tombstoned: known gone, not unresolved
	// g1: complete, one member to keep, one new (inline email), one extra in the target.
	f.member("src", "g1", "sa", "")
	f.member("src", "g1", "sn", "new@x.io")
	f.member("tgt", "t1", "ta", "")
	f.member("tgt", "t1", "tx", "")
	f.goneMember("tgt", "t1", "ty", "") // tombstoned: not a member any more
	// g2: a member whose identity did not resolve (no inline email, no account row).
	f.member("src", "g2", "sa", "")
	f.member("src", "g2", "snone", "")
	f.member("src", "g2", "sn", "new@x.io")
	f.member("tgt", "t2", "tx", "")
	f.member("tgt", "t2", "ty", "")
	// g3: the pull could not list it whole.
	f.member("src", "g3", "sa", "")
	f.member("tgt", "t3", "tx", "")
	cs := f.mustPlan(f.run("f", "schedule", "running"), planCase{scope: []string{"g1", "g2", "g3"}, caps: allCaps,
		incomplete: []string{"g3"}})
	if r := find(cs, "remove_member", "g1"); len(r) != 1 || r[0].Status != "planned" || r[0].TargetAccount != "tx" {
		t.Errorf("g1 removals = %+v, want tx planned", r)
	}
	for _, g := range []string{"g2", "g3"} {
		r := find(cs, "remove_member", g)
		if len(r) == 0 {
			t.Errorf("%s: no removal rows, want them skipped visibly", g)
		}
		for _, c := range r {
			if c.Status != "skipped" || c.Reason != "source_incomplete" {
				t.Errorf("%s removal of %s = %s/%s, want skipped/source_incomplete", g, c.TargetAccount, c.Status, c.Reason)
			}
		}
	}
	if a := find(cs, "add_member", "g2"); len(a) != 3 {
		t.Errorf("g2 additions = %+v, want a and new planned, the unresolved member skipped no_email", a)
	} else {
		for _, c := range a {
			want := "planned"
			if c.Email == "" {
				want = "skipped"
			}
			if c.Status != want || (c.Email == "a@x.io" && c.TargetAccount != "ta") {
				t.Errorf("g2 addition %+v, want %s", c, want)
			}
		}
	}
	if a := find(cs, "add_member", "g1"); len(a) != 1 || a[0].Email != "new@x.io" || a[0].Status != "planned" {
		t.Errorf("g1 additions = %+v, want new@x.io planned", a)
	}
}

// TestPlanOverridesAndScope: an override maps a source email to its target email (so the
// target member is neither added nor removed), and groups out of scope are not planned.
func TestPlanOverridesAndScope(t *testing.T) {
	f := newFactory(t)
	f.systems("src", "tgt")
	f.group("src", "g1", "One")
	f.group("src", "g9", "Out of scope")
	f.group("tgt", "t1", "One")
	f.link(f.link(0, "src", "g1", "f"), "tgt", "t1", "f")
	f.account("tgt", "tb", "bob@corp.io", false)
	f.member("src", "g1", "sb", "bob@home.io")
	f.member("tgt", "t1", "tb", "")
	cs := f.mustPlan(f.run("f", "schedule", "running"), planCase{scope: []string{"g1"}, caps: allCaps,
		overrides: map[string]string{"bob@home.io": "bob@corp.io"}})
	if len(cs) != 0 {
		t.Fatalf("plan = %+v, want nothing: bob is the same person on both sides, g9 is out of scope", cs)
	}
}

func TestInvariantAttemptsBelongToAnIntent(t *testing.T) {
	f := newFactory(t)
	f.systems("src", "tgt")
	f.group("src", "g1", "One")
	f.group("tgt", "t1", "One")
	f.link(f.link(0, "src", "g1", "f"), "tgt", "t1", "f")
	f.account("tgt", "tb", "bob@x.io", false)
	f.member("src", "g1", "sb", "bob@x.io")
	c := planCase{scope: []string{"g1"}, caps: allCaps, max: 3}
	attempts := func(run int64) change {
		t.Helper()
		a := find(f.changes(run), "add_member", "g1")
		if len(a) != 1 {
			t.Fatalf("run %d additions = %+v, want one", run, a)
		}
		return a[0]
	}
	push := func(fail bool) int64 {
		t.Helper()
		run := f.run("f", "schedule", "running")
		f.mustPlan(run, c)
		if err := f.s.RecordIntents(f.ctx, "f", run, []string{"tgt"}); err != nil {
			t.Fatal(err)
		}
		if fail {
			f.fail(run, "add_member", "HTTP 503")
		}
		return run
	}
	preview := func(trigger, status string) change {
		t.Helper()
		run := f.run("f", trigger, status)
		f.mustPlan(run, c)
		return attempts(run)
	}
	push(true)
	// Previews carry the count forward: they neither reset nor inflate it.
	for _, p := range [][2]string{{"once", "dry_run"}, {"plan", "planned"}, {"schedule", "blocked"}, {"apply", "dry_run"}} {
		if got := preview(p[0], p[1]); got.Attempts != 1 || got.Status != "planned" || got.LastError != "HTTP 503" {
			t.Fatalf("%s preview: %+v, want planned with 1 attempt and the last error", p[1], got)
		}
	}
	push(true)
	push(true)
	if got := preview("once", "dry_run"); got.Attempts != 3 || got.Status != "failed" || got.Reason != "max_attempts" || got.LastError != "HTTP 503" {
		t.Fatalf("after 3 failures: %+v, want failed/max_attempts with the last error", got)
	}
	given := push(false)
	if got := attempts(given); got.Status != "failed" || got.Reason != "max_attempts" {
		t.Fatalf("pushed run after giving up: %+v, want still given up", got)
	}
	// Bob leaves: a pushed plan without the intent retires it. He returns: a new intent.
	f.exec(`UPDATE memberships SET deleted_at = now() WHERE system = 'src' AND account_id = 'sb'`)
	left := push(false)
	if a := find(f.changes(left), "add_member", ""); len(a) != 0 {
		t.Fatalf("bob left but the plan adds %+v", a)
	}
	f.exec(`UPDATE memberships SET deleted_at = NULL WHERE system = 'src' AND account_id = 'sb'`)
	back := push(false)
	if got := attempts(back); got.Attempts != 0 || got.Status != "planned" {
		t.Fatalf("bob re-joined: %+v, want a fresh planned change with 0 attempts", got)
	}
}

func TestInvariantArchivedIsNotGone(t *testing.T) {
	for _, restore := range []bool{true, false} {
		f := newFactory(t)
		f.systems("src", "tgt")
		f.group("src", "g1", "One")
		f.group("tgt", "t1", "One", archived)
		f.link(f.link(0, "src", "g1", "f"), "tgt", "t1", "f")
		caps := allCaps
		caps.RestoreGroup = restore
		cs := f.mustPlan(f.run("f", "schedule", "running"), planCase{scope: []string{"g1"}, caps: caps, policy: "archive"})
		if restore {
			if r := find(cs, "restore_group", "g1"); len(r) != 1 || r[0].Status != "planned" || r[0].TargetGroup != "t1" {
				t.Fatalf("restorable target: %+v, want restore_group of t1 planned", cs)
			}
			continue
		}
		if f.linkOf("tgt", "t1") != 0 {
			t.Fatal("target without restore: archived t1 still linked")
		}
		if c := find(cs, "create_group", "g1"); len(c) != 1 || c[0].Status != "planned" {
			t.Fatalf("target without restore: %+v, want a create_group of a new group", cs)
		}
	}
}

// TestHeldChangesAreBlocked: the guard's hold (nil operations: all of them) marks every
// planned change blocked, so pending_approvals counts them.
func TestHeldChangesAreBlocked(t *testing.T) {
	f := newFactory(t)
	f.systems("src", "tgt")
	f.group("src", "g1", "One")
	f.group("tgt", "t1", "One")
	f.link(f.link(0, "src", "g1", "f"), "tgt", "t1", "f")
	f.account("tgt", "tx", "x@x.io", false)
	f.member("tgt", "t1", "tx", "")
	f.member("src", "g1", "sb", "bob@x.io") // no target account: skipped, not held
	run := f.run("f", "schedule", "blocked")
	f.mustPlan(run, planCase{scope: []string{"g1"}, caps: allCaps})
	n, err := f.s.SetPlannedStatus(f.ctx, run, nil, state.ChangeBlocked, "guard")
	if err != nil || n != 1 {
		t.Fatalf("held %d changes (%v), want the one removal", n, err)
	}
	var blocked int64
	if err := f.db.QueryRow(f.ctx, `SELECT blocked_changes FROM pending_approvals WHERE run_id = $1`, run).Scan(&blocked); err != nil || blocked != 1 {
		t.Fatalf("pending_approvals.blocked_changes = %d (%v), want 1", blocked, err)
	}
}

func TestInvariantApplyPushesWhatWasPreviewed(t *testing.T) {
	f := newFactory(t)
	f.systems("src", "tgt")
	f.group("src", "g1", "One", visibility("public"))
	stored := f.run("f", "plan", "planned")
	f.mustPlan(stored, planCase{scope: []string{"g1"}, caps: allCaps})
	same := f.run("f", "apply", "dry_run")
	f.mustPlan(same, planCase{scope: []string{"g1"}, caps: allCaps})
	if d, err := f.s.PlanDiff(f.ctx, stored, same); err != nil || !d.Empty() {
		t.Fatalf("same plan: %+v (%v), want no difference", d, err)
	}
	f.group("src", "g1", "One", visibility("private"))
	fresh := f.run("f", "apply", "dry_run")
	f.mustPlan(fresh, planCase{scope: []string{"g1"}, caps: allCaps})
	d, err := f.s.PlanDiff(f.ctx, stored, fresh)
	if err != nil {
		t.Fatal(err)
	}
	if d.OnlyA != 1 || d.OnlyB != 1 || !strings.Contains(strings.Join(d.ExamplesB, ""), `"private"`) {
		t.Fatalf("made private since the plan: %+v, want one item on each side naming the new visibility", d)
	}
}

// TestPlanRefusesAMissingRun: changes.run_id is not a foreign key (its per-row check was a
// quarter of writing a plan), so PlanFlow itself refuses a run that does not exist and
// writes nothing for it.
func TestPlanRefusesAMissingRun(t *testing.T) {
	f := newFactory(t)
	f.systems("src", "tgt")
	f.group("src", "g1", "One")
	f.member("src", "g1", "sa", "ann@corp.io")
	run := f.run("f", "schedule", "running")
	err := f.plan(run+1000, planCase{scope: []string{"g1"}, caps: allCaps})
	if err == nil || !strings.Contains(err.Error(), "does not exist") {
		t.Fatalf("plan of a missing run = %v, want an error saying the run does not exist", err)
	}
	var n int
	if err := f.db.QueryRow(f.ctx, `SELECT count(*) FROM changes`).Scan(&n); err != nil {
		t.Fatal(err)
	}
	if n != 0 {
		t.Fatalf("%d changes written for a missing run, want none", n)
	}
}
