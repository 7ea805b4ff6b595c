package state_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/groupsync/groupsync/logctx/logtest"

	"github.com/groupsync/groupsync/connectors"
	"github.com/groupsync/groupsync/state"
	"github.com/groupsync/groupsync/state/statetest"
)

const sys = "devrev-test"

func newStore(t *testing.T) *state.Store {
	t.Helper()
	s := statetest.Store(t)
	if err := s.UpsertSystem(t.Context(), sys, "devrev", "https://api.devrev.test"); err != nil {
		t.Fatal(err)
	}
	return s
}

func group(i int) connectors.Group {
	id := fmt.Sprintf("g%04d", i)
	raw := json.RawMessage(fmt.Sprintf(`{"id":%q,"name":"Group %d"}`, id, i))
	return connectors.Group{ID: id, Name: fmt.Sprintf("Group %d", i), Visibility: connectors.VisibilityPrivate,
		State: "active", Raw: raw, Hash: "h" + id}
}

func groups(n int) []connectors.Group {
	out := make([]connectors.Group, n)
	for i := range out {
		out[i] = group(i)
	}
	return out
}

// mergeGroups writes gs in pages of pageSize and commits.
func mergeGroups(t *testing.T, s *state.Store, gs []connectors.Group, complete bool) state.MergeCounts {
	t.Helper()
	ctx := t.Context()
	w, err := s.BeginGroupMerge(ctx, sys)
	if err != nil {
		t.Fatal(err)
	}
	defer w.Rollback(ctx)
	for len(gs) > 0 {
		n := min(7, len(gs))
		if err := w.Write(ctx, gs[:n]); err != nil {
			t.Fatal(err)
		}
		gs = gs[n:]
	}
	c, err := w.Commit(ctx, complete)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func mergeMembers(t *testing.T, s *state.Store, ms []connectors.Member, complete ...string) state.MergeCounts {
	t.Helper()
	ctx := t.Context()
	w, err := s.BeginMembershipMerge(ctx, sys)
	if err != nil {
		t.Fatal(err)
	}
	defer w.Rollback(ctx)
	if err := w.Write(ctx, ms); err != nil {
		t.Fatal(err)
	}
	for _, g := range complete {
		w.CompleteGroup(g)
	}
	c, err := w.Commit(ctx)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// xid returns the current transaction counter; rows written later have a greater xmin.
func xid(t *testing.T, s *state.Store) int64 {
	t.Helper()
	var x int64
	if err := s.Pool().QueryRow(t.Context(), `SELECT txid_current() % 4294967296`).Scan(&x); err != nil {
		t.Fatal(err)
	}
	return x
}

// writtenSince counts row versions of table created after xid x: inserts, updates and
// tombstones all create one.
func writtenSince(t *testing.T, s *state.Store, table string, x int64) int64 {
	t.Helper()
	var n int64
	if err := s.Pool().QueryRow(t.Context(), `SELECT count(*) FROM `+table+` WHERE xmin::text::bigint > $1`, x).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

func wantCounts(t *testing.T, got, want state.MergeCounts) {
	t.Helper()
	if got != want {
		t.Fatalf("counts = %+v, want %+v", got, want)
	}
}

func TestGroupMergeFirstLoadThenNoopWritesNothing(t *testing.T) {
	for _, mode := range []string{"stream", "per-page"} {
		t.Run(mode, func(t *testing.T) {
			s := newStore(t)
			if mode == "per-page" {
				state.UsePerPageCopy(s)
			}
			gs := groups(50)
			gs[3].CreatedAt = time.Date(2024, 1, 2, 3, 4, 5, 0, time.UTC)
			gs[4].Raw = nil
			wantCounts(t, mergeGroups(t, s, gs, true), state.MergeCounts{Inserted: 50})

			var name, status, origin string
			var created time.Time
			if err := s.Pool().QueryRow(t.Context(), `SELECT name, remote_created_at, last_sync_in_status, origin_system
				FROM groups WHERE system = $1 AND external_id = 'g0003'`, sys).Scan(&name, &created, &status, &origin); err != nil {
				t.Fatal(err)
			}
			if name != "Group 3" || !created.Equal(gs[3].CreatedAt) || status != "succeeded" || origin != sys {
				t.Fatalf("g0003 = %q %v %q %q", name, created, status, origin)
			}
			var rawNull bool
			if err := s.Pool().QueryRow(t.Context(), `SELECT raw IS NULL FROM groups WHERE external_id = 'g0004'`).Scan(&rawNull); err != nil || !rawNull {
				t.Fatalf("nil raw stored as NULL: %v, err %v", rawNull, err)
			}

			before := xid(t, s)
			wantCounts(t, mergeGroups(t, s, gs, true), state.MergeCounts{Unchanged: 50})
			if n := writtenSince(t, s, "groups", before); n != 0 {
				t.Fatalf("no-op re-merge wrote %d group rows, want 0", n)
			}
			got, err := s.System(t.Context(), sys)
			if err != nil {
				t.Fatal(err)
			}
			if got.GroupCount != 50 || got.LastPullComplete == nil || !*got.LastPullComplete || got.LastCompletePullAt == nil {
				t.Fatalf("systems row = %+v, want 50 groups and a complete pull", got)
			}
		})
	}
}

func TestGroupMergeUpdatesExactlyTheChangedOnes(t *testing.T) {
	s := newStore(t)
	gs := groups(200)
	mergeGroups(t, s, gs, true)

	gs[10].Name, gs[10].Hash = "Renamed", "changed"
	gs[150].Description = "mapped column changed, hash not" // a connector mapping change
	before := xid(t, s)
	wantCounts(t, mergeGroups(t, s, gs, true), state.MergeCounts{Updated: 2, Unchanged: 198})
	if n := writtenSince(t, s, "groups", before); n != 2 {
		t.Fatalf("wrote %d rows, want 2", n)
	}
	var status string
	if err := s.Pool().QueryRow(t.Context(), `SELECT last_sync_in_status FROM groups WHERE external_id = 'g0010'`).Scan(&status); err != nil || status != "modified" {
		t.Fatalf("status %q err %v, want modified", status, err)
	}
}

func TestGroupMergeTombstonesOnlyOnCompletePullAndRevives(t *testing.T) {
	s := newStore(t)
	mergeGroups(t, s, groups(10), true)
	mergeMembers(t, s, []connectors.Member{{GroupID: "g0009", AccountID: "a1", Type: "user", Role: "member"}})

	wantCounts(t, mergeGroups(t, s, groups(8), false), state.MergeCounts{Unchanged: 8})
	if n := liveCount(t, s, "groups"); n != 10 {
		t.Fatalf("incomplete pull left %d live groups, want 10", n)
	}

	wantCounts(t, mergeGroups(t, s, groups(8), true), state.MergeCounts{Unchanged: 8, Tombstoned: 2})
	if n := liveCount(t, s, "groups"); n != 8 {
		t.Fatalf("complete pull left %d live groups, want 8", n)
	}
	if n := liveCount(t, s, "memberships"); n != 0 {
		t.Fatalf("membership of a tombstoned group still live (%d)", n)
	}
	var total int
	if err := s.Pool().QueryRow(t.Context(), `SELECT count(*) FROM groups`).Scan(&total); err != nil || total != 10 {
		t.Fatalf("rows = %d (err %v): tombstoning must not delete", total, err)
	}
	got, _ := s.System(t.Context(), sys)
	if got.GroupCount != 8 || got.MembershipCount != 0 {
		t.Fatalf("systems counts = %d groups %d memberships, want 8 and 0", got.GroupCount, got.MembershipCount)
	}

	wantCounts(t, mergeGroups(t, s, groups(10), true), state.MergeCounts{Unchanged: 8, Revived: 2})
	if n := liveCount(t, s, "groups"); n != 10 {
		t.Fatalf("after revival %d live groups, want 10", n)
	}
}

func liveCount(t *testing.T, s *state.Store, table string) int {
	t.Helper()
	var n int
	if err := s.Pool().QueryRow(t.Context(), `SELECT count(*) FROM `+table+` WHERE deleted_at IS NULL`).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

func TestGroupMergeDuplicatesStoredOnceLastWins(t *testing.T) {
	s := newStore(t)
	a, b := group(1), group(1)
	b.Name, b.Hash = "Second", "h2"
	// Across pages (mergeGroups pages by 7) and within one page.
	gs := append(groups(9), a, a, b)
	wantCounts(t, mergeGroups(t, s, gs, true), state.MergeCounts{Inserted: 9})
	var name string
	if err := s.Pool().QueryRow(t.Context(), `SELECT name FROM groups WHERE external_id = 'g0001'`).Scan(&name); err != nil || name != "Second" {
		t.Fatalf("name = %q (err %v), want the last occurrence %q", name, err, "Second")
	}
}

func TestHostileNamesStoredVerbatim(t *testing.T) {
	s := newStore(t)
	names := []string{
		`O'Brien "quoted" \backslash`,
		`$tag$ $$ dollar $tag$`,
		`'; DROP TABLE groups; --`,
		"עברית RTL \u202e mixed",
		"zero\u200bwidth\ufeff joiner\u200d",
		"tab\tnewline\nCR\r",
	}
	var gs []connectors.Group
	for i, n := range names {
		gs = append(gs, connectors.Group{ID: fmt.Sprintf("id %d '\"", i), Name: n, Description: n, Hash: n,
			Raw: json.RawMessage(fmt.Sprintf(`{"name":%q, "esc":"\\u0000 is text here"}`, n))})
	}
	wantCounts(t, mergeGroups(t, s, gs, true), state.MergeCounts{Inserted: int64(len(names))})
	for _, g := range gs {
		var name, desc string
		if err := s.Pool().QueryRow(t.Context(), `SELECT name, description FROM groups WHERE system = $1 AND external_id = $2`,
			sys, g.ID).Scan(&name, &desc); err != nil {
			t.Fatalf("read %q: %v", g.ID, err)
		}
		if name != g.Name || desc != g.Description {
			t.Errorf("stored %q / %q, want %q", name, desc, g.Name)
		}
	}
}

func TestInvalidTextRejectedWithSystemIDAndField(t *testing.T) {
	cases := map[string]struct {
		g     connectors.Group
		field string
	}{
		"nul in name":       {connectors.Group{ID: "g1", Name: "bad\x00name"}, "field name"},
		"nul in id":         {connectors.Group{ID: "g\x001", Name: "x"}, "field id"},
		"bad utf-8":         {connectors.Group{ID: "g1", Description: "\xff\xfe"}, "field description: is not valid UTF-8"},
		"nul escape in raw": {connectors.Group{ID: "g1", Raw: json.RawMessage(`{"a":"\u0000"}`)}, `field raw: contains \u0000`},
		"raw not json":      {connectors.Group{ID: "g1", Raw: json.RawMessage(`{"a":`)}, "field raw: is not valid JSON"},
		"empty id":          {connectors.Group{Name: "x"}, "field id: is empty"},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			s := newStore(t)
			ctx := t.Context()
			w, err := s.BeginGroupMerge(ctx, sys)
			if err != nil {
				t.Fatal(err)
			}
			defer w.Rollback(ctx)
			if err := w.Write(ctx, groups(3)); err != nil {
				t.Fatal(err)
			}
			err = w.Write(ctx, []connectors.Group{group(5), tc.g})
			if !errors.Is(err, state.ErrInvalidRecord) || !strings.Contains(err.Error(), fmt.Sprintf("system %q: group %q: %s", sys, tc.g.ID, tc.field)) {
				t.Fatalf("Write error = %v, want ErrInvalidRecord naming system, id and %q", err, tc.field)
			}
			if _, err := w.Commit(ctx, true); !errors.Is(err, state.ErrInvalidRecord) {
				t.Fatalf("Commit after a rejected page = %v, want the same error", err)
			}
			if n := liveCount(t, s, "groups"); n != 0 {
				t.Fatalf("%d groups stored from an aborted merge", n)
			}
		})
	}
}

func TestNulRejectedInMembershipsAndAccounts(t *testing.T) {
	s := newStore(t)
	ctx := t.Context()
	mw, err := s.BeginMembershipMerge(ctx, sys)
	if err != nil {
		t.Fatal(err)
	}
	defer mw.Rollback(ctx)
	err = mw.Write(ctx, []connectors.Member{{GroupID: "g1", AccountID: "a1", Role: "mem\x00ber"}})
	if !errors.Is(err, state.ErrInvalidRecord) || !strings.Contains(err.Error(), `membership "g1/a1": field role`) {
		t.Fatalf("membership Write = %v", err)
	}
	aw, err := s.BeginAccountMerge(ctx, sys)
	if err != nil {
		t.Fatal(err)
	}
	defer aw.Rollback(ctx)
	err = aw.Write(ctx, []connectors.Account{{ID: "a1", DisplayName: "x\x00"}})
	if !errors.Is(err, state.ErrInvalidRecord) || !strings.Contains(err.Error(), `account "a1": field display_name`) {
		t.Fatalf("account Write = %v", err)
	}
}

func TestMembershipMergePerGroupCompleteness(t *testing.T) {
	s := newStore(t)
	mergeGroups(t, s, groups(3), true)
	m := func(g, a, role string) connectors.Member {
		return connectors.Member{GroupID: g, AccountID: a, Type: "user", Role: role, Email: " " + strings.ToUpper(a) + "@Example.com"}
	}
	first := []connectors.Member{m("g0000", "a1", "member"), m("g0000", "a2", "member"), m("g0001", "a1", "admin"),
		m("g0001", "a3", "member"), m("nope", "a1", "member"), m("g0000", "a2", "member")}
	wantCounts(t, mergeMembers(t, s, first, "g0000", "g0001"), state.MergeCounts{Inserted: 4, Orphaned: 1})
	var email string
	if err := s.Pool().QueryRow(t.Context(), `SELECT email FROM memberships WHERE group_id = 'g0000' AND account_id = 'a1'`).Scan(&email); err != nil || email != "a1@example.com" {
		t.Fatalf("email %q (err %v), want normalized", email, err)
	}

	before := xid(t, s)
	wantCounts(t, mergeMembers(t, s, first[:4], "g0000", "g0001"), state.MergeCounts{Unchanged: 4})
	if n := writtenSince(t, s, "memberships", before); n != 0 {
		t.Fatalf("no-op membership merge wrote %d rows", n)
	}

	// g0000 lost a2 and its listing completed; g0001's listing failed midway (only a1
	// seen, role changed): a3 must stay.
	wantCounts(t, mergeMembers(t, s, []connectors.Member{m("g0000", "a1", "member"), m("g0001", "a1", "member")}, "g0000"),
		state.MergeCounts{Unchanged: 1, Updated: 1, Tombstoned: 1})
	live := map[string]bool{}
	rows, err := s.Pool().Query(t.Context(), `SELECT group_id || '/' || account_id FROM memberships WHERE deleted_at IS NULL`)
	if err != nil {
		t.Fatal(err)
	}
	for rows.Next() {
		var k string
		_ = rows.Scan(&k)
		live[k] = true
	}
	if rows.Err() != nil || len(live) != 3 || !live["g0000/a1"] || !live["g0001/a1"] || !live["g0001/a3"] || live["g0000/a2"] {
		t.Fatalf("live memberships = %v (err %v), want g0000/a1 g0001/a1 g0001/a3", live, rows.Err())
	}

	// A group completed with no members at all loses them all; a2 comes back to g0000.
	wantCounts(t, mergeMembers(t, s, []connectors.Member{m("g0000", "a2", "member")}, "g0001", "g0000"),
		state.MergeCounts{Revived: 1, Tombstoned: 3})
	got, _ := s.System(t.Context(), sys)
	if got.MembershipCount != 1 {
		t.Fatalf("membership_count = %d, want 1", got.MembershipCount)
	}
}

func TestAccountMerge(t *testing.T) {
	s := newStore(t)
	as := []connectors.Account{{ID: "a1", Email: " Ann@Example.COM ", DisplayName: "Ann", Hash: "1"},
		{ID: "a2", Email: "bob@example.com", DisplayName: "Bob", Hash: "2"}}
	merge := func(as []connectors.Account, complete bool) state.MergeCounts {
		w, err := s.BeginAccountMerge(t.Context(), sys)
		if err != nil {
			t.Fatal(err)
		}
		defer w.Rollback(t.Context())
		if err := w.Write(t.Context(), as); err != nil {
			t.Fatal(err)
		}
		c, err := w.Commit(t.Context(), complete)
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	wantCounts(t, merge(as, true), state.MergeCounts{Inserted: 2})
	var id string
	if err := s.Pool().QueryRow(t.Context(), `SELECT external_id FROM accounts WHERE system = $1 AND email = 'ann@example.com'`, sys).Scan(&id); err != nil || id != "a1" {
		t.Fatalf("lookup by normalized email = %q, %v", id, err)
	}
	wantCounts(t, merge(as[:1], true), state.MergeCounts{Unchanged: 1, Tombstoned: 1})
	got, _ := s.System(t.Context(), sys)
	if got.AccountCount != 1 {
		t.Fatalf("account_count = %d, want 1", got.AccountCount)
	}
}

func TestMergeForUnregisteredSystemFails(t *testing.T) {
	s := statetest.Store(t)
	_, err := s.BeginGroupMerge(t.Context(), "nobody")
	if !errors.Is(err, state.ErrNotFound) || !strings.Contains(err.Error(), "UpsertSystem") {
		t.Fatalf("BeginGroupMerge for an unknown system = %v, want ErrNotFound with a hint", err)
	}
	if _, err := s.System(t.Context(), "nobody"); !errors.Is(err, state.ErrNotFound) {
		t.Fatalf("System = %v, want ErrNotFound", err)
	}
}

func TestRollbackMidStreamLeavesNothingAndRollbackAfterCommitIsSafe(t *testing.T) {
	s := newStore(t)
	ctx := t.Context()
	w, err := s.BeginGroupMerge(ctx, sys)
	if err != nil {
		t.Fatal(err)
	}
	if err := w.Write(ctx, groups(20)); err != nil {
		t.Fatal(err)
	}
	w.Rollback(ctx)
	w.Rollback(ctx)
	if _, err := w.Commit(ctx, true); err == nil {
		t.Fatal("Commit after Rollback succeeded")
	}
	if n := liveCount(t, s, "groups"); n != 0 {
		t.Fatalf("%d groups after rollback", n)
	}
	mergeGroups(t, s, groups(2), true) // the connection went back to the pool usable
	if n := liveCount(t, s, "groups"); n != 2 {
		t.Fatalf("%d groups, want 2", n)
	}
}

func TestCancelledContextAbortsMerge(t *testing.T) {
	s := newStore(t)
	ctx, cancel := context.WithCancel(t.Context())
	w, err := s.BeginGroupMerge(ctx, sys)
	if err != nil {
		t.Fatal(err)
	}
	defer w.Rollback(t.Context())
	if err := w.Write(ctx, groups(5)); err != nil {
		t.Fatal(err)
	}
	cancel()
	if _, err := w.Commit(ctx, true); !errors.Is(err, context.Canceled) {
		t.Fatalf("Commit after cancel = %v, want context.Canceled", err)
	}
	if n := liveCount(t, s, "groups"); n != 0 {
		t.Fatalf("%d groups after a cancelled merge", n)
	}
}

func TestSyncMetadataView(t *testing.T) {
	s := newStore(t)
	mergeGroups(t, s, groups(2), true)
	mergeMembers(t, s, []connectors.Member{{GroupID: "g0000", AccountID: "a1", Type: "user", Role: "member"}})
	var n int
	var key string
	if err := s.Pool().QueryRow(t.Context(), `SELECT count(*) OVER (), record_key FROM sync_metadata
		WHERE system = $1 AND last_sync_in_status = 'succeeded' ORDER BY record_kind DESC LIMIT 1`, sys).Scan(&n, &key); err != nil {
		t.Fatal(err)
	}
	if n != 3 || key != "g0000/a1" {
		t.Fatalf("sync_metadata: %d rows, first membership key %q; want 3 and g0000/a1", n, key)
	}
}

// Two group merges of one system stage at the same time (neither waits for the other to
// begin), and apply in turns: a commit waits for the merge lock, and the later one
// classifies against what the earlier one stored.
func TestGroupMergesOfOneSystemStageTogetherAndApplyInTurns(t *testing.T) {
	s := newStore(t)
	ctx := t.Context()
	first, err := s.BeginGroupMerge(ctx, sys)
	if err != nil {
		t.Fatal(err)
	}
	defer first.Rollback(ctx)
	if err := first.Write(ctx, groups(3)); err != nil {
		t.Fatal(err)
	}
	second, err := s.BeginGroupMerge(ctx, sys)
	if err != nil {
		t.Fatal(err)
	}
	defer second.Rollback(ctx)
	if err := second.Write(ctx, append(groups(2), group(7))); err != nil {
		t.Fatal(err)
	}

	// Someone holds the lock (as a merge applying would): the first commit must wait.
	holder, err := s.Pool().Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = holder.Rollback(ctx) }()
	if _, err := holder.Exec(ctx, `SELECT pg_advisory_xact_lock(hashtextextended('groupsync.merge:' || $1 || ':group:' || $2, 0))`,
		s.Schema(), sys); err != nil {
		t.Fatal(err)
	}
	type committed struct {
		c   state.MergeCounts
		err error
	}
	done := make(chan committed, 1)
	go func() {
		c, err := first.Commit(ctx, true)
		done <- committed{c, err}
	}()
	deadline := time.Now().Add(10 * time.Second)
	for {
		var waiting bool
		if err := s.Pool().QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM pg_locks WHERE locktype = 'advisory' AND NOT granted
			AND ((classid::bigint << 32) | objid::bigint) = hashtextextended('groupsync.merge:' || $1 || ':group:' || $2, 0))`,
			s.Schema(), sys).Scan(&waiting); err != nil {
			t.Fatal(err)
		}
		if waiting {
			break
		}
		select {
		case r := <-done:
			t.Fatalf("a commit applied while another held the merge lock (counts %+v, err %v)", r.c, r.err)
		default:
		}
		if time.Now().After(deadline) {
			t.Fatal("the commit never waited on the merge lock")
		}
	}
	if err := holder.Rollback(ctx); err != nil {
		t.Fatal(err)
	}
	r := <-done
	if r.err != nil {
		t.Fatal(r.err)
	}
	wantCounts(t, r.c, state.MergeCounts{Inserted: 3})
	c, err := second.Commit(ctx, true)
	if err != nil {
		t.Fatal(err)
	}
	wantCounts(t, c, state.MergeCounts{Unchanged: 2, Inserted: 1, Tombstoned: 1})
	if n := liveCount(t, s, "groups"); n != 3 {
		t.Fatalf("%d live groups, want 3 (g0000, g0001, g0007)", n)
	}
}

// firstLoadStores returns a store whose merges take the first-load fast path (with its
// debug log, to tell which path a merge took) and one whose merges classify everything,
// both with sys registered.
func firstLoadStores(t *testing.T, mode string) (fast *state.Store, log *logtest.Buffer, staged *state.Store) {
	t.Helper()
	log = &logtest.Buffer{}
	fast = statetest.StoreWithOptions(t, state.Options{
		Logger: slog.New(slog.NewTextHandler(log, &slog.HandlerOptions{Level: slog.LevelDebug}))})
	staged = statetest.Store(t)
	state.DisableFirstLoadFastPath(staged)
	for _, s := range []*state.Store{fast, staged} {
		if mode == "per-page" {
			state.UsePerPageCopy(s)
		}
		if err := s.UpsertSystem(t.Context(), sys, "devrev", ""); err != nil {
			t.Fatal(err)
		}
	}
	return fast, log, staged
}

// lastMerged is the "merged" debug line of the latest merge of kind.
func lastMerged(b *logtest.Buffer, kind string) string {
	last := ""
	for _, l := range strings.Split(b.String(), "\n") {
		if strings.Contains(l, "msg=merged") && strings.Contains(l, "kind="+kind+" ") {
			last = l
		}
	}
	return last
}

// dump is every row of query as text, for comparing two stores.
func dump(t *testing.T, s *state.Store, query string) []string {
	t.Helper()
	rows, err := s.Pool().Query(t.Context(), query)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for rows.Next() {
		vals, err := rows.Values()
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, fmt.Sprint(vals...))
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

func sameRows(t *testing.T, what string, got, want []string) {
	t.Helper()
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Fatalf("%s differ between the fast path and the staged path:\nfast:   %q\nstaged: %q", what, got, want)
	}
}

// The first-load fast path (staged rows inserted without classification, deduped last-wins,
// orphans left out) stores exactly what the classifying path does, with the same counts.
func TestFirstLoadFastPathMatchesStagedPath(t *testing.T) {
	hostile := "tab\tnew\nline\rCR back\\slash \\N quote' \"dq\" ünï \u202e"
	for _, mode := range []string{"stream", "per-page"} {
		t.Run(mode+"/groups", func(t *testing.T) {
			fast, log, staged := firstLoadStores(t, mode)
			gs := groups(20)
			gs[2].Name, gs[2].Description, gs[2].ID = hostile, hostile, "id "+hostile
			gs[3].CreatedAt = time.Date(2024, 1, 2, 3, 4, 5, 123456789, time.FixedZone("x", -7*3600-30*60))
			gs[3].ModifiedAt = time.Date(1999, 12, 31, 23, 59, 59, 0, time.UTC)
			gs[4].Raw = nil
			gs[5].Raw = json.RawMessage(`{"s":"a\tb\\c\nd","n":[1,2.5e10]}`)
			gs[6].MembershipManaged, gs[6].System = true, true
			again := gs[1] // a repeated key with new values: the fast path switches to staging here
			again.Name, again.Hash = "renamed", "h2"
			stream := append(append(append([]connectors.Group{}, gs[:12]...), again), gs[12:]...)
			stream = append(stream, gs[1]) // and back: the last occurrence wins
			want := state.MergeCounts{Inserted: 20}
			wantCounts(t, mergeGroups(t, fast, stream, true), want)
			wantCounts(t, mergeGroups(t, staged, stream, true), want)
			if l := lastMerged(log, "group"); !strings.Contains(l, "first_load=true deduped=true") {
				t.Fatalf("merge log %q: want a deduped first load", l)
			}
			q := `SELECT external_id, name, description, visibility, state, membership_managed, is_system,
				remote_created_at, remote_modified_at, raw::text, hash, deleted_at IS NULL, origin_system,
				last_sync_in_status, last_sync_in_date = first_seen_at, updated_at = first_seen_at
				FROM groups ORDER BY external_id`
			sameRows(t, "groups", dump(t, fast, q), dump(t, staged, q))
			for _, s := range []*state.Store{fast, staged} {
				before := xid(t, s)
				wantCounts(t, mergeGroups(t, s, gs, true), state.MergeCounts{Unchanged: 20})
				if n := writtenSince(t, s, "groups", before); n != 0 {
					t.Fatalf("no-op after a first load wrote %d rows", n)
				}
			}
		})
		t.Run(mode+"/accounts", func(t *testing.T) {
			fast, log, staged := firstLoadStores(t, mode)
			as := []connectors.Account{{ID: "a1", Email: " Ann@Example.COM ", DisplayName: hostile, Hash: "1"},
				{ID: "a2", Email: "bob@example.com", Raw: json.RawMessage(`{"x":"\\u00e9"}`)},
				{ID: "a1", Email: "ann@example.com", DisplayName: "Ann", State: "active", Hash: "1b"},
				{ID: "a3", Email: "c@example.com"}}
			for _, s := range []*state.Store{fast, staged} {
				w, err := s.BeginAccountMerge(t.Context(), sys)
				if err != nil {
					t.Fatal(err)
				}
				defer w.Rollback(t.Context())
				if err := w.Write(t.Context(), as); err != nil {
					t.Fatal(err)
				}
				c, err := w.Commit(t.Context(), true)
				if err != nil {
					t.Fatal(err)
				}
				wantCounts(t, c, state.MergeCounts{Inserted: 3})
			}
			if l := lastMerged(log, "account"); !strings.Contains(l, "first_load=true deduped=true") {
				t.Fatalf("merge log %q: want a deduped first load", l)
			}
			q := `SELECT external_id, email, display_name, state, raw::text, hash, deleted_at IS NULL, origin_system,
				last_sync_in_status, last_sync_in_date = first_seen_at FROM accounts ORDER BY external_id`
			sameRows(t, "accounts", dump(t, fast, q), dump(t, staged, q))
			got, _ := fast.System(t.Context(), sys)
			if got.AccountCount != 3 {
				t.Fatalf("account_count = %d, want 3", got.AccountCount)
			}
		})
		t.Run(mode+"/memberships", func(t *testing.T) {
			fast, log, staged := firstLoadStores(t, mode)
			m := func(g, a, role string) connectors.Member {
				return connectors.Member{GroupID: g, AccountID: a, Type: "user", Role: role, Email: strings.ToUpper(a) + "@x.test"}
			}
			stream := []connectors.Member{m("g0000", "a1", "member"), m("g0000", "a2", "member"), m("g0001", "a1", hostile),
				m("nope", "a1", "member"), // orphan: switches to staging
				m("g0000", "a1", "admin"), // a key copied straight in, now changed: last wins
				m("g0001", "a1", hostile), // one copied straight in, repeated unchanged
				m("g0001", "a3", "member"), m("nope", "a1", "member"), m("g0002", "a9", "member")}
			want := state.MergeCounts{Inserted: 5, Orphaned: 1}
			for _, s := range []*state.Store{fast, staged} {
				mergeGroups(t, s, groups(3), true)
				// Every group completed: rows copied straight in are in the stream and
				// must not be tombstoned for being absent from the staged part.
				wantCounts(t, mergeMembers(t, s, stream, "g0000", "g0001", "g0002"), want)
			}
			if l := lastMerged(log, "membership"); !strings.Contains(l, "first_load=true deduped=true") {
				t.Fatalf("merge log %q: want a deduped first load", l)
			}
			q := `SELECT group_id, account_id, member_type, role, email, deleted_at IS NULL, origin_system,
				last_sync_in_status, last_sync_in_date = first_seen_at FROM memberships ORDER BY 1, 2`
			sameRows(t, "memberships", dump(t, fast, q), dump(t, staged, q))
			got, _ := fast.System(t.Context(), sys)
			if got.MembershipCount != 5 {
				t.Fatalf("membership_count = %d, want 5", got.MembershipCount)
			}
			for _, s := range []*state.Store{fast, staged} {
				before := xid(t, s)
				wantCounts(t, mergeMembers(t, s, stream, "g0000", "g0001", "g0002"), state.MergeCounts{Unchanged: 5, Orphaned: 1})
				if n := writtenSince(t, s, "memberships", before); n != 0 {
					t.Fatalf("no-op after a first load wrote %d rows", n)
				}
			}
		})
	}
}

// When the duplicate-detection set overflows, a first load can no longer tell new keys
// from repeated ones: it dedupes, and the result is the same.
func TestFirstLoadFastPathSwitchesWhenKeySetOverflows(t *testing.T) {
	fast, log, staged := firstLoadStores(t, "stream")
	state.SetMaxTrackedKeys(fast, 4)
	var stream []connectors.Member
	for i := range 10 {
		stream = append(stream, connectors.Member{GroupID: fmt.Sprintf("g%04d", i%2), AccountID: fmt.Sprintf("a%d", i), Type: "user"})
	}
	stream = append(stream, connectors.Member{GroupID: "g0000", AccountID: "a0", Type: "user", Role: "admin"})
	for _, s := range []*state.Store{fast, staged} {
		mergeGroups(t, s, groups(2), true)
		wantCounts(t, mergeMembers(t, s, stream, "g0000", "g0001"), state.MergeCounts{Inserted: 10})
	}
	if l := lastMerged(log, "membership"); !strings.Contains(l, "first_load=true deduped=true") {
		t.Fatalf("merge log %q: want a deduped first load", l)
	}
	q := `SELECT group_id, account_id, role, deleted_at IS NULL FROM memberships ORDER BY 1, 2`
	sameRows(t, "memberships", dump(t, fast, q), dump(t, staged, q))
}

// A row another writer commits while a first load is staging is in the mirror when the
// merge applies: the merge classifies against it instead of failing or storing it twice.
func TestFirstLoadClassifiesARowWrittenMeanwhile(t *testing.T) {
	for _, mode := range []string{"stream", "per-page"} {
		t.Run(mode, func(t *testing.T) {
			s := newStore(t)
			if mode == "per-page" {
				state.UsePerPageCopy(s)
			}
			mergeGroups(t, s, groups(1), true)
			ctx := t.Context()
			w, err := s.BeginMembershipMerge(ctx, sys)
			if err != nil {
				t.Fatal(err)
			}
			defer w.Rollback(ctx)
			if _, err := s.Pool().Exec(ctx, `INSERT INTO memberships (system, group_id, account_id) VALUES ($1, 'g0000', 'a5')`, sys); err != nil {
				t.Fatal(err)
			}
			for i := range 50 {
				if err := w.Write(ctx, []connectors.Member{{GroupID: "g0000", AccountID: fmt.Sprintf("a%d", i), Type: "user"}}); err != nil {
					t.Fatal(err)
				}
			}
			c, err := w.Commit(ctx)
			if err != nil {
				t.Fatal(err)
			}
			wantCounts(t, c, state.MergeCounts{Inserted: 49, Unchanged: 1})
			var n int
			if err := s.Pool().QueryRow(ctx, `SELECT count(*) FROM memberships`).Scan(&n); err != nil || n != 50 {
				t.Fatalf("memberships = %d (err %v), want 50", n, err)
			}
		})
	}
}

// A first load records the counts on the systems row without recounting.
func TestFirstLoadCounts(t *testing.T) {
	s := newStore(t)
	wantCounts(t, mergeGroups(t, s, groups(3), true), state.MergeCounts{Inserted: 3})
	ms := []connectors.Member{{GroupID: "g0000", AccountID: "a1"}, {GroupID: "g0001", AccountID: "a1"}}
	wantCounts(t, mergeMembers(t, s, ms, "g0000"), state.MergeCounts{Inserted: 2})
	got, err := s.System(t.Context(), sys)
	if err != nil {
		t.Fatal(err)
	}
	if got.GroupCount != 3 || got.MembershipCount != 2 {
		t.Fatalf("systems row = %+v, want 3 groups and 2 memberships", got)
	}
}

// A member repeated after its group completed (against the CompleteGroup contract) is still
// stored once: the forgotten partition marks the stream as possibly repeating.
func TestMemberRepeatedAfterCompleteGroupStoredOnce(t *testing.T) {
	for _, first := range []bool{true, false} {
		t.Run(fmt.Sprintf("first_load=%v", first), func(t *testing.T) {
			s := newStore(t)
			mergeGroups(t, s, groups(2), true)
			if !first {
				mergeMembers(t, s, []connectors.Member{{GroupID: "g0001", AccountID: "u9", Type: "user", Role: "member"}})
			}
			ctx := t.Context()
			w, err := s.BeginMembershipMerge(ctx, sys)
			if err != nil {
				t.Fatal(err)
			}
			defer w.Rollback(ctx)
			page := []connectors.Member{{GroupID: "g0000", AccountID: "u1", Type: "user", Role: "member"},
				{GroupID: "g0000", AccountID: "u2", Type: "user", Role: "member"}}
			if err := w.Write(ctx, page); err != nil {
				t.Fatal(err)
			}
			w.CompleteGroup("g0000")
			if err := w.Write(ctx, page[:1]); err != nil {
				t.Fatal(err)
			}
			if _, err := w.Commit(ctx); err != nil {
				t.Fatalf("a repeat after CompleteGroup broke the merge: %v", err)
			}
			var n int
			if err := s.Pool().QueryRow(ctx, `SELECT count(*) FROM memberships WHERE group_id = 'g0000'`).Scan(&n); err != nil || n != 2 {
				t.Fatalf("memberships of g0000 = %d, %v; want 2", n, err)
			}
		})
	}
}
