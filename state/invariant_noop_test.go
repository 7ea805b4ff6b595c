package state_test

import (
	"encoding/json"
	"fmt"
	"testing"

	"github.com/groupsync/groupsync/connectors"
	"github.com/groupsync/groupsync/state"
)

// Invariant 9, its pull half: a pull that finds what the mirror holds writes no row version
// in any table of the mirror's schema, whatever history led there (renames, tombstones,
// revivals, member changes, digests leaving groups out). The one row it writes is its
// system's bookkeeping in systems (when the pull started and finished), which is not a
// record; merge_stages is the staging registry, and its row is gone by then.
func TestInvariantNoOpPullWritesNothing(t *testing.T) {
	s := newStore(t)
	run := newRun(t, s)
	accounts := func(n int) []connectors.Account {
		out := make([]connectors.Account, n)
		for i := range out {
			id := fmt.Sprintf("u%d", i)
			out[i] = connectors.Account{ID: id, Email: id + "@example.com", DisplayName: "User " + id, State: "active",
				Raw: json.RawMessage(`{"id":"` + id + `"}`), Hash: "h" + id}
		}
		return out
	}
	pullAll := func(gs []connectors.Group, as []connectors.Account, members map[string][]int) {
		mergeGroups(t, s, gs, true)
		mergeAccountsOf(t, s, as)
		for _, g := range gs {
			var ms []connectors.Member
			for _, i := range members[g.ID] {
				ms = append(ms, member(g.ID, i))
			}
			pull(t, s, run, g.ID, ms...)
		}
	}
	gs := groups(3)
	pullAll(gs, accounts(6), map[string][]int{"g0000": {1, 2, 3}, "g0001": {2, 4}, "g0002": {5}})
	pullAll(gs[:2], accounts(5), map[string][]int{"g0000": {1, 2}, "g0001": {2, 4, 3}}) // g0002 and u5 gone
	gs[1].Name, gs[1].Hash = "Renamed", "h2"
	final := map[string][]int{"g0000": {1, 2, 3}, "g0001": {2, 4, 3}, "g0002": {5}} // u3 and g0002 back
	pullAll(gs, accounts(6), final)

	before := xid(t, s)
	pullAll(gs, accounts(6), final)
	for table, n := range rowVersionsSince(t, s, before) {
		if table != "systems" {
			t.Errorf("the no-op pull wrote %d row versions in %s", n, table)
		}
	}
	if n := writtenSince(t, s, "systems", before); n != 1 {
		t.Errorf("the no-op pull wrote %d systems rows, want its own bookkeeping row only", n)
	}
}

// mergeAccountsOf merges a complete account listing.
func mergeAccountsOf(t *testing.T, s *state.Store, as []connectors.Account) {
	t.Helper()
	w, err := s.BeginAccountMerge(t.Context(), sys)
	if err != nil {
		t.Fatal(err)
	}
	defer w.Rollback(t.Context())
	if err := w.Write(t.Context(), as); err != nil {
		t.Fatal(err)
	}
	if _, err := w.Commit(t.Context(), true); err != nil {
		t.Fatal(err)
	}
}

// rowVersionsSince counts, per table of the mirror's schema, the row versions created
// after xid x.
func rowVersionsSince(t *testing.T, s *state.Store, x int64) map[string]int64 {
	t.Helper()
	var tables []string
	rows, err := s.Pool().Query(t.Context(), `SELECT tablename FROM pg_tables WHERE schemaname = current_schema()`)
	if err != nil {
		t.Fatal(err)
	}
	for rows.Next() {
		var name string
		if err := rows.Scan(&name); err != nil {
			t.Fatal(err)
		}
		tables = append(tables, name)
	}
	if err := rows.Err(); err != nil || len(tables) < 10 {
		t.Fatalf("the mirror's tables: %v (%v)", tables, err)
	}
	out := map[string]int64{}
	for _, table := range tables {
		if n := writtenSince(t, s, table, x); n > 0 {
			out[table] = n
		}
	}
	return out
}
