package state_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/groupsync/groupsync/connectors"
	"github.com/groupsync/groupsync/state"
	"github.com/groupsync/groupsync/state/statetest"
)

// stagingTables lists the schema's staging tables and registry rows.
func stagingTables(t *testing.T, s *state.Store) (tables, registered []string) {
	t.Helper()
	tables = dump(t, s, `SELECT relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
		WHERE n.nspname = '`+s.Schema()+`' AND c.relkind = 'r' AND relname LIKE 'merge\_%' AND relname <> 'merge_stages' ORDER BY 1`)
	registered = dump(t, s, `SELECT name FROM merge_stages ORDER BY 1`)
	return tables, registered
}

func wantNoStaging(t *testing.T, s *state.Store, after string) {
	t.Helper()
	if tables, reg := stagingTables(t, s); len(tables) != 0 || len(reg) != 0 {
		t.Fatalf("after %s: staging tables %v, registered %v; want none", after, tables, reg)
	}
}

// Every way a merge ends drops its staging tables: commit, rollback, a rejected record,
// a cancelled context.
func TestMergeEndsLeaveNoStagingTables(t *testing.T) {
	s := newStore(t)
	ctx := t.Context()
	mergeGroups(t, s, groups(10), true)
	wantNoStaging(t, s, "a commit")

	w, err := s.BeginGroupMerge(ctx, sys)
	if err != nil {
		t.Fatal(err)
	}
	if tables, reg := stagingTables(t, s); len(tables) != 2 || len(reg) != 1 {
		t.Fatalf("an open merge has staging tables %v, registered %v; want its stage and delta", tables, reg)
	}
	if err := w.Write(ctx, groups(3)); err != nil {
		t.Fatal(err)
	}
	w.Rollback(ctx)
	wantNoStaging(t, s, "a rollback")

	w, err = s.BeginGroupMerge(ctx, sys)
	if err != nil {
		t.Fatal(err)
	}
	if err := w.Write(ctx, []connectors.Group{{ID: "bad\x00"}}); !errors.Is(err, state.ErrInvalidRecord) {
		t.Fatalf("Write = %v, want ErrInvalidRecord", err)
	}
	if _, err := w.Commit(ctx, true); err == nil {
		t.Fatal("Commit after a rejected record succeeded")
	}
	wantNoStaging(t, s, "a rejected record")

	cctx, cancel := context.WithCancel(ctx)
	m, err := s.BeginMembershipMerge(cctx, sys)
	if err != nil {
		t.Fatal(err)
	}
	if err := m.Write(cctx, []connectors.Member{{GroupID: "g0001", AccountID: "a1"}}); err != nil {
		t.Fatal(err)
	}
	cancel()
	if _, err := m.Commit(cctx); !errors.Is(err, context.Canceled) {
		t.Fatalf("Commit after cancel = %v, want context.Canceled", err)
	}
	wantNoStaging(t, s, "a cancelled merge")
}

// A spooled first load creates nothing in the database while it is open: no staging
// tables, no registry row (so nothing for a sweep, nor for a database-wide ANALYZE to
// deadlock with). When its Commit cannot go straight into the mirror (a key repeated), the
// staging tables it needs live inside Commit's transaction and are gone after it.
func TestSpooledFirstLoadCreatesNoStagingArea(t *testing.T) {
	s := newStore(t)
	ctx := t.Context()
	w, err := s.BeginGroupMerge(ctx, sys)
	if err != nil {
		t.Fatal(err)
	}
	defer w.Rollback(ctx)
	if err := w.Write(ctx, []connectors.Group{group(0), group(1), group(0)}); err != nil {
		t.Fatal(err)
	}
	wantNoStaging(t, s, "a first load's Begin and Writes")
	c, err := w.Commit(ctx, true)
	if err != nil {
		t.Fatal(err)
	}
	wantCounts(t, c, state.MergeCounts{Inserted: 2})
	wantNoStaging(t, s, "a first load's Commit that staged its spool")
}

// A process that dies mid-merge leaves its staging tables; once they have gone untouched
// past the safe age, the next Begin drops them. A merge that is open, however idle, keeps
// touching its own and keeps them, and commits normally.
func TestAbandonedStagingTablesAreSweptLiveOnesKept(t *testing.T) {
	s := newStore(t)
	ctx := t.Context()
	state.SetStageTimes(s, 50*time.Millisecond, 2*time.Second)

	// The system has a group and a membership, so both merges below stage (a first load
	// would spool to a local file, leaving nothing in the database to sweep); the live
	// group merge's complete listing tombstones that group.
	mergeGroups(t, s, []connectors.Group{group(9)}, true)
	mergeMembers(t, s, []connectors.Member{{GroupID: "g0009", AccountID: "a0"}})
	// The "dead" process: a second pool on the same schema, closed mid-merge.
	dead, err := state.Open(ctx, statetest.URL(), state.Options{Schema: s.Schema(), MaxConns: 2})
	if err != nil {
		t.Fatal(err)
	}
	abandoned, err := dead.BeginMembershipMerge(ctx, sys)
	if err != nil {
		t.Fatal(err)
	}
	if err := abandoned.Write(ctx, []connectors.Member{{GroupID: "g0000", AccountID: "a1"}}); err != nil {
		t.Fatal(err)
	}
	dead.Close()
	_ = abandoned // never committed nor rolled back: its process is gone

	live, err := s.BeginGroupMerge(ctx, sys)
	if err != nil {
		t.Fatal(err)
	}
	defer live.Rollback(ctx)
	if err := live.Write(ctx, groups(4)); err != nil {
		t.Fatal(err)
	}
	// The abandoned area's heartbeat stopped with its pool; age it past the safe age (as
	// the passing of time would), and wait until the live merge has touched its own since.
	var mark time.Time
	if err := s.Pool().QueryRow(ctx, `UPDATE merge_stages SET touched_at = now() - interval '1 hour'
		WHERE kind = 'membership' RETURNING now()`).Scan(&mark); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		var touched bool
		if err := s.Pool().QueryRow(ctx, `SELECT touched_at > $1 FROM merge_stages WHERE kind = 'group'`, mark).Scan(&touched); err != nil {
			t.Fatal(err)
		}
		if touched {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the open merge never touched its staging area")
		}
		time.Sleep(10 * time.Millisecond)
	}
	if _, err := s.Pool().Exec(ctx, `UPDATE merge_stages SET touched_at = touched_at - interval '1 second' WHERE kind = 'group'`); err != nil {
		t.Fatal(err) // a second older: still within the safe age
	}

	next, err := s.BeginAccountMerge(ctx, sys) // sweeps
	if err != nil {
		t.Fatal(err)
	}
	next.Rollback(ctx)
	tables, reg := stagingTables(t, s)
	if len(reg) != 1 || !strings.HasPrefix(reg[0], "merge_group_") || len(tables) != 2 {
		t.Fatalf("after the sweep: tables %v, registered %v; want only the live group merge's", tables, reg)
	}
	c, err := live.Commit(ctx, true)
	if err != nil {
		t.Fatalf("the live merge's Commit after the sweep: %v", err)
	}
	wantCounts(t, c, state.MergeCounts{Inserted: 4, Tombstoned: 1})
	wantNoStaging(t, s, "the live merge's commit")
}

// With a pool of one connection a group merge and a membership merge can be open at once,
// and other queries run between their pages: no merge holds a connection between calls.
func TestMergesOpenAtOnceOnOneConnection(t *testing.T) {
	s := statetest.StoreWithOptions(t, state.Options{MaxConns: 1})
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	if err := s.UpsertSystem(ctx, sys, "airtable", ""); err != nil {
		t.Fatal(err)
	}
	state.UsePerPageCopy(s) // a COPY per Write: as many connection hand-overs as possible
	gm, err := s.BeginGroupMerge(ctx, sys)
	if err != nil {
		t.Fatal(err)
	}
	defer gm.Rollback(ctx)
	mm, err := s.BeginMembershipMerge(ctx, sys)
	if err != nil {
		t.Fatalf("a second merge could not begin while the first is open: %v", err)
	}
	defer mm.Rollback(ctx)
	for i := range 20 {
		if err := gm.Write(ctx, []connectors.Group{group(i)}); err != nil {
			t.Fatal(err)
		}
		if err := mm.Write(ctx, []connectors.Member{{GroupID: group(i).ID, AccountID: fmt.Sprintf("a%d", i)}}); err != nil {
			t.Fatal(err)
		}
		mm.CompleteGroup(group(i).ID)
		if _, err := s.System(ctx, sys); err != nil {
			t.Fatalf("a query between pages: %v", err)
		}
	}
	if c, err := gm.Commit(ctx, true); err != nil {
		t.Fatal(err)
	} else {
		wantCounts(t, c, state.MergeCounts{Inserted: 20})
	}
	c, err := mm.Commit(ctx)
	if err != nil {
		t.Fatal(err)
	}
	wantCounts(t, c, state.MergeCounts{Inserted: 20})
}
