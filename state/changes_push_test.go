package state_test

import (
	"errors"
	"testing"

	"github.com/groupsync/groupsync/connectors"
	"github.com/groupsync/groupsync/state"
)

// pushFixture mirrors one archived group g0000 of sys, linked to link 1, and a run.
func pushFixture(t *testing.T) (*state.Store, int64) {
	t.Helper()
	s := newStore(t)
	g := group(0)
	g.State = "archived"
	mergeGroups(t, s, []connectors.Group{g}, true)
	runID, err := s.CreateRun(t.Context(), state.NewRun{Flow: "f", Trigger: "once"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Pool().Exec(t.Context(), `INSERT INTO links (link_id, system, external_id, flow) VALUES (1, $1, 'g0000', 'f')`, sys); err != nil {
		t.Fatal(err)
	}
	return s, runID
}

func addChange(t *testing.T, s *state.Store, runID, linkID int64, op, tgid string) state.Change {
	t.Helper()
	var id int64
	if err := s.Pool().QueryRow(t.Context(), `INSERT INTO changes (run_id, flow, target_system, operation, link_id, target_group_id, status)
		VALUES ($1, 'f', $2, $3, $4, nullif($5, ''), 'in_flight') RETURNING id`, runID, sys, op, linkID, tgid).Scan(&id); err != nil {
		t.Fatal(err)
	}
	return state.Change{ID: id, RunID: runID, Flow: "f", TargetSystem: sys, Operation: op, LinkID: linkID, TargetGroupID: tgid}
}

func linkOf(t *testing.T, s *state.Store, id string) int64 {
	t.Helper()
	var link int64
	if err := s.Pool().QueryRow(t.Context(), `SELECT link_id FROM links WHERE system = $1 AND external_id = $2`, sys, id).Scan(&link); err != nil {
		t.Fatal(err)
	}
	return link
}

// RecordGroupWritten refuses a target group another link holds (push never moves a link):
// nothing is recorded, the link stays, and the error is ErrLinkConflict.
func TestInvariantPushNeverMovesALinkInRecordGroupWritten(t *testing.T) {
	t.Parallel()
	s, runID := pushFixture(t)
	c := addChange(t, s, runID, 2, "create_group", "")
	g := group(0)
	g.Name = "Taken over?"
	err := s.RecordGroupWritten(t.Context(), c, g)
	if !errors.Is(err, state.ErrLinkConflict) {
		t.Fatalf("RecordGroupWritten of another link's group = %v, want ErrLinkConflict", err)
	}
	if got := linkOf(t, s, "g0000"); got != 1 {
		t.Fatalf("g0000 now belongs to link %d, want 1", got)
	}
	var name, status string
	if err := s.Pool().QueryRow(t.Context(), `SELECT g.name, c.status FROM groups g, changes c
		WHERE g.system = $1 AND g.external_id = 'g0000' AND c.id = $2`, sys, c.ID).Scan(&name, &status); err != nil {
		t.Fatal(err)
	}
	if name != "Group 0" || status != state.ChangeInFlight {
		t.Fatalf("after the refusal: group name %q, change %s; want nothing recorded", name, status)
	}
}

// A restore records the group active again under its own link and applies the change.
func TestRecordGroupRestored(t *testing.T) {
	t.Parallel()
	s, runID := pushFixture(t)
	c := addChange(t, s, runID, 1, "restore_group", "g0000")
	g := group(0)
	g.State = "archived" // what a body read before the un-archive took effect could say
	if err := s.RecordGroupRestored(t.Context(), c, g); err != nil {
		t.Fatal(err)
	}
	var st, status string
	if err := s.Pool().QueryRow(t.Context(), `SELECT g.state, c.status FROM groups g, changes c
		WHERE g.system = $1 AND g.external_id = 'g0000' AND c.id = $2`, sys, c.ID).Scan(&st, &status); err != nil {
		t.Fatal(err)
	}
	if st != "active" || status != state.ChangeApplied {
		t.Fatalf("after the restore: state %q, change %s; want active, applied", st, status)
	}
	if got := linkOf(t, s, "g0000"); got != 1 {
		t.Fatalf("g0000 now belongs to link %d, want 1", got)
	}
}
