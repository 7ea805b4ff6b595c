package syncengine_test

import (
	"slices"
	"strings"
	"testing"

	"github.com/groupsync/groupsync/state"
	"github.com/groupsync/groupsync/syncengine"
)

// TestRunOfOneGroup: a run narrowed to one source group (sync --once --group) creates and
// fills just that group, leaves the others alone, is not checked against min_source_ratio
// (one group of three is no shrink), and is never the baseline a later run's shrink is
// measured against. A name outside the scope fails the run, naming it.
func TestRunOfOneGroup(t *testing.T) {
	t.Parallel()
	e, _, tn := pairEnv(t, defaultFlow("airtable", "devrev"), 20, 3, 4)
	name := tn.Groups[1].Name
	res := e.run("f", syncengine.RunOptions{Groups: []string{name}})
	e.mustStatus(res, state.RunSucceeded)
	var names []string
	for _, g := range e.sim("devrev").Snapshot() {
		names = append(names, g.Name)
	}
	if !slices.Equal(names, []string{name}) {
		t.Fatalf("devrev groups after a run of %q = %v, want just it", name, names)
	}
	if res := e.run("f", syncengine.RunOptions{Groups: []string{"No Such Group"}}); res.Status != state.RunFailed ||
		res.Err == nil || !strings.Contains(res.Err.Error(), "No Such Group") {
		t.Fatalf("a run of an unknown group: %s %v, want failed naming it", res.Status, res.Err)
	}
	base, err := e.store.LastBaselineRun(t.Context(), "f")
	if err == nil {
		t.Fatalf("the one-group run %d became the min_source_ratio baseline", base.ID)
	}
	e.mustStatus(e.run("f", syncengine.RunOptions{}), state.RunSucceeded)
	e.assertMirrored("airtable", "devrev")
}
