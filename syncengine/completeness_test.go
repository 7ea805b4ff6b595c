package syncengine_test

import (
	"testing"

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
