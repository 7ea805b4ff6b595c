package state_test

import (
	"slices"
	"testing"

	"github.com/groupsync/groupsync/state"
)

// applied inserts an applied change of run on target system dst.
func (f *factory) applied(run int64, op, gid, aid, email, payload string) {
	f.tb.Helper()
	f.exec(`INSERT INTO changes (run_id, flow, target_system, operation, source_system, source_group_id, target_group_id,
		                         account_email, target_account_id, payload, status, applied_at)
		VALUES ($1, 'f', 'dst', $2, 'src', 's-' || $3, $3, nullif($5, ''), nullif($4, ''), nullif($6, 'null')::jsonb, 'applied', now())`,
		run, op, gid, aid, email, payload)
}

// revertWorld is a target whose groups a run changed in every way a revert undoes, and
// where the world has since moved for some of them.
func revertWorld(t *testing.T) (*factory, int64) {
	f := newFactory(t)
	f.systems("src", "dst")
	f.group("dst", "renamed", "New name", visibility("private"))
	f.group("dst", "renamed-again", "Third name")
	f.group("dst", "created", "Fresh group")
	f.group("dst", "deleted", "Deleted group", gone)
	f.group("dst", "plain", "Plain")
	f.account("dst", "a-live", "live@x.org", false)
	f.account("dst", "a-gone", "gone@x.org", true)
	f.member("dst", "created", "a-live", "")
	run := f.run("f", "once", "succeeded")
	f.applied(run, "update_group", "renamed", "", "",
		`{"name":"New name","description":"","visibility":"private","old_name":"Old name","old_description":"was","old_visibility":"public"}`)
	f.applied(run, "update_group", "renamed-again", "", "", `{"name":"Second name","old_name":"First name"}`)
	f.applied(run, "create_group", "created", "", "", `{"name":"Fresh group"}`)
	f.applied(run, "add_member", "created", "a-live", "live@x.org", `null`)
	f.applied(run, "delete_group", "deleted", "", "", `{"name":"Deleted group"}`)
	f.applied(run, "remove_member", "plain", "a-gone", "gone@x.org", `null`)
	f.applied(run, "remove_member", "plain", "a-live", "live@x.org", `null`)
	return f, run
}

func (f *factory) planRevert(of int64, policy string) int64 {
	f.tb.Helper()
	rv := f.run("f", "revert", "running")
	if _, err := f.s.PlanRevert(f.ctx, state.RevertInput{RunID: rv, Of: of, Flow: "f", DeletePolicy: policy,
		Targets: []state.PlanTarget{{System: "dst", Caps: allCaps}}}); err != nil {
		f.tb.Fatal(err)
	}
	return rv
}

// TestRevertPlansEachInverseOrSaysWhyNot: an update gets the values it replaced back, a
// created group is archived (delete_groups archive) with its added member left in it, a
// removed member is added back; a group renamed since, a deleted group and a deleted
// account are listed, skipped, with their reason.
func TestRevertPlansEachInverseOrSaysWhyNot(t *testing.T) {
	t.Parallel()
	f, run := revertWorld(t)
	got := f.changes(f.planRevert(run, "archive"))
	want := []change{
		{Target: "dst", Op: "add_member", Status: "skipped", Reason: "account_gone", SourceGroup: "s-plain", TargetGroup: "plain", Email: "gone@x.org", TargetAccount: "a-gone"},
		{Target: "dst", Op: "add_member", Status: "planned", SourceGroup: "s-plain", TargetGroup: "plain", Email: "live@x.org", TargetAccount: "a-live"},
		{Target: "dst", Op: "archive_group", Status: "planned", SourceGroup: "s-created", TargetGroup: "created", Name: "Fresh group"},
		{Target: "dst", Op: "create_group", Status: "skipped", Reason: "group_gone", SourceGroup: "s-deleted", TargetGroup: "deleted", Name: "Deleted group"},
		{Target: "dst", Op: "remove_member", Status: "skipped", Reason: "group_reverted", SourceGroup: "s-created", TargetGroup: "created", Email: "live@x.org", TargetAccount: "a-live"},
		{Target: "dst", Op: "update_group", Status: "planned", SourceGroup: "s-renamed", TargetGroup: "renamed", Name: "Old name", Visibility: "public"},
		{Target: "dst", Op: "update_group", Status: "skipped", Reason: "renamed_since", SourceGroup: "s-renamed-again", TargetGroup: "renamed-again", Name: "First name", Visibility: "public"},
	}
	if !slices.Equal(got, want) {
		t.Fatalf("revert plan:\n got %+v\nwant %+v", got, want)
	}
}

// TestRevertLeavesCreatedGroupsUnderDeleteNever: with delete_groups never a group the run
// created is left, listed as such, and its members are removed (the access the run gave).
func TestRevertLeavesCreatedGroupsUnderDeleteNever(t *testing.T) {
	t.Parallel()
	f, run := revertWorld(t)
	var reasons []string
	for _, c := range f.changes(f.planRevert(run, "never")) {
		if c.TargetGroup == "created" {
			reasons = append(reasons, c.Op+":"+c.Status+":"+c.Reason)
		}
	}
	if want := []string{"delete_group:skipped:delete_groups_never", "remove_member:planned:"}; !slices.Equal(reasons, want) {
		t.Fatalf("created group's inverses = %v, want %v", reasons, want)
	}
}
