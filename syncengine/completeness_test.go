package syncengine_test

import (
	"testing"

	"github.com/groupsync/groupsync/config"
	"github.com/groupsync/groupsync/connectors"
	"github.com/groupsync/groupsync/connectors/simkit"
	"github.com/groupsync/groupsync/state"
	"github.com/groupsync/groupsync/syncengine"
)

// TestInvariantCompletenessIsPerGroupAndKind: a 404 on one source group's member listing
// makes that group unknown this run — its target keeps the member the source dropped (no
// removal applied there; the run passes the group to the planner as incomplete) — while a removal in a group whose listing was read whole
// is applied in the same run, and the account lookups of the run leave the system's last
// complete pull where the group listing put it.
func TestInvariantCompletenessIsPerGroupAndKind(t *testing.T) {
	t.Parallel()
	e, _, tn := pairEnv(t, defaultFlow("selfcommunity", "airtable"), 20, 2, 5)
	e.mustStatus(e.run("f", syncengine.RunOptions{}), state.RunSucceeded)
	ctx := t.Context()
	src := e.conns["selfcommunity"]
	w := src.(connectors.Writer)
	var ids [2]string
	for i := range ids {
		g, err := src.FindGroupByName(ctx, tn.Groups[i].Name)
		if err != nil {
			t.Fatal(err)
		}
		ids[i] = g.ID
		var first string
		if _, err := src.ListMembers(ctx, g.ID, func(ms []connectors.Member) error {
			if first == "" && len(ms) > 0 {
				first = ms[0].AccountID
			}
			return nil
		}); err != nil {
			t.Fatal(err)
		}
		if err := w.RemoveMembers(ctx, g.ID, []string{first}); err != nil {
			t.Fatal(err)
		}
	}
	e.sim("selfcommunity").Faults().Inject(simkit.Rule{Method: "GET", Path: "/api/v2/group/" + ids[0] + "/subscribe/", Status: 404, Times: -1})

	res := e.run("f", syncengine.RunOptions{})
	var inKnown, inUnknown int64
	if err := e.store.Pool().QueryRow(ctx, `
		SELECT count(*) FILTER (WHERE source_group_id = $2), count(*) FILTER (WHERE source_group_id = $3)
		  FROM changes WHERE run_id = $1 AND operation = 'remove_member' AND status = 'applied'`,
		res.RunID, ids[1], ids[0]).Scan(&inKnown, &inUnknown); err != nil {
		t.Fatal(err)
	}
	if inKnown != 1 || inUnknown != 0 {
		t.Fatalf("applied removals: %d in the group read whole, %d in the group whose listing answered 404; want 1 and 0", inKnown, inUnknown)
	}
	if sum := res.Pulls["selfcommunity"]; sum == nil || sum.Complete {
		t.Fatal("the source pull reports complete although one member listing answered 404")
	}
	var complete bool
	if err := e.store.Pool().QueryRow(ctx, `SELECT last_pull_complete FROM systems WHERE name = 'selfcommunity'`).Scan(&complete); err != nil {
		t.Fatal(err)
	}
	if !complete {
		t.Fatal("the source's group listing was complete, but the systems row says its last pull was not (an account merge overwrote it?)")
	}
}

// TestUnreadableListedGroupIsNotGone: an Airtable group the enterprise lists but answers
// 403 INVALID_PERMISSIONS_OR_MODEL_NOT_FOUND (or 404) is not taken as deleted: with
// delete_groups: delete its target group stays, no deletion is planned, and its target
// loses nobody; the other groups sync as usual.
func TestUnreadableListedGroupIsNotGone(t *testing.T) {
	t.Parallel()
	flow := defaultFlow("airtable", "devrev")
	flow.DeleteGroups = config.DeleteHard
	e, _, tn := pairEnv(t, flow, 20, 3, 4)
	e.mustStatus(e.run("f", syncengine.RunOptions{}), state.RunSucceeded)
	// Not the first listed group: a 403 on the very first read is the token's (it fails the
	// listing, see the airtable connector).
	last := tn.Groups[len(tn.Groups)-1].Name
	g, err := e.conns["airtable"].FindGroupByName(t.Context(), last)
	if err != nil {
		t.Fatal(err)
	}
	e.sim("airtable").Faults().Inject(simkit.Rule{Method: "GET", Path: "/v0/meta/groups/" + g.ID, Status: 403, Times: -1,
		ResponseBody: `{"error": {"type": "INVALID_PERMISSIONS_OR_MODEL_NOT_FOUND", "message": "Invalid permissions"}}`})
	before := effects(e.sim("devrev"))
	res := e.run("f", syncengine.RunOptions{})
	if res.Status == state.RunFailed {
		t.Fatalf("one unreadable group failed the whole run: %v", res.Err)
	}
	if n := e.changeCount(res.RunID, state.ChangePlanned, state.ChangeApplied, state.ChangeFailed, state.ChangeBlocked); n != 0 {
		t.Fatalf("%d changes planned for a source whose other groups are in step; targets %s", n, describe(res))
	}
	if after := effects(e.sim("devrev")); after != before {
		t.Fatalf("devrev changed (%v → %v) although nothing but one unreadable group moved", before, after)
	}
	if _, err := e.conns["devrev"].FindGroupByName(t.Context(), last); err != nil {
		t.Fatalf("the unreadable group's target: %v", err)
	}
}
