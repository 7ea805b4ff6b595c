package syncengine_test

import (
	"strings"
	"testing"

	"github.com/groupsync/groupsync/config"
	"github.com/groupsync/groupsync/connectors"
	"github.com/groupsync/groupsync/connectors/selfcommunity/selfcommunitysim"
	"github.com/groupsync/groupsync/state"
	"github.com/groupsync/groupsync/syncengine"
)

// TestHiddenSourceGroupIsNotGone: SelfCommunity's group search leaves out hidden groups the
// token's user is not in. A source group made hidden is read by id and stays synced (with
// delete_groups: delete, its target group is not deleted); when even reading it by id
// fails it is kept unread, reported with its reason, and nobody is removed through it.
func TestHiddenSourceGroupIsNotGone(t *testing.T) {
	t.Parallel()
	flow := defaultFlow("selfcommunity", "airtable")
	flow.DeleteGroups = config.DeleteHard
	e, _, tn := pairEnv(t, flow, 20, 3, 5)
	e.mustStatus(e.run("f", syncengine.RunOptions{}), state.RunSucceeded)
	ctx := t.Context()
	src := e.conns["selfcommunity"]
	name := tn.Groups[1].Name
	g := findGroup(t, src, name)
	if _, err := src.(connectors.Writer).UpdateGroup(ctx, g.ID, connectors.GroupSpec{Name: name, Visibility: connectors.VisibilityHidden}); err != nil {
		t.Fatal(err)
	}
	deletions := func(runID int64) int64 {
		var n int64
		if err := e.store.Pool().QueryRow(ctx, `SELECT count(*) FROM changes WHERE run_id = $1 AND operation IN ('delete_group', 'archive_group')`,
			runID).Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n
	}
	tombstoned := func() bool {
		var gone bool
		if err := e.store.Pool().QueryRow(ctx, `SELECT deleted_at IS NOT NULL FROM groups WHERE system = 'selfcommunity' AND external_id = $1`,
			g.ID).Scan(&gone); err != nil {
			t.Fatal(err)
		}
		return gone
	}

	res := e.run("f", syncengine.RunOptions{})
	e.mustStatus(res, state.RunSucceeded)
	if n := deletions(res.RunID); n != 0 || tombstoned() {
		t.Fatalf("a hidden source group left out of the search was taken as deleted: %d deletions planned, tombstoned %v", n, tombstoned())
	}
	findGroup(t, e.conns["airtable"], name)

	// Now the server will not even read it by id; a member leaves it meanwhile.
	var first string
	if _, err := src.ListMembers(ctx, g.ID, func(ms []connectors.Member) error {
		if first == "" && len(ms) > 0 {
			first = ms[0].AccountID
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if err := src.(connectors.Writer).RemoveMembers(ctx, g.ID, []string{first}); err != nil {
		t.Fatal(err)
	}
	e.sim("selfcommunity").(*selfcommunitysim.Server).SetHiddenUnreadableByID(true)
	res = e.run("f", syncengine.RunOptions{})
	if res.Status == state.RunFailed {
		t.Fatalf("an unreadable hidden group failed the run: %v", res.Err)
	}
	var removals int64
	if err := e.store.Pool().QueryRow(ctx, `SELECT count(*) FROM changes WHERE run_id = $1 AND operation = 'remove_member' AND status = 'applied'`,
		res.RunID).Scan(&removals); err != nil {
		t.Fatal(err)
	}
	if n := deletions(res.RunID); n != 0 || removals != 0 || tombstoned() {
		t.Fatalf("unreadable hidden group: %d deletions, %d removals applied, tombstoned %v; want none", n, removals, tombstoned())
	}
	if reason := res.Pulls["selfcommunity"].Unreadable[g.ID]; !strings.Contains(reason, "hidden") {
		t.Fatalf("pull summary reason for the unreadable group = %q, want it to say hidden (%+v)", reason, res.Pulls["selfcommunity"])
	}
	findGroup(t, e.conns["airtable"], name)
}
