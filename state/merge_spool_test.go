package state_test

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/groupsync/groupsync/connectors"
	"github.com/groupsync/groupsync/logctx/logtest"
	"github.com/groupsync/groupsync/state"
	"github.com/groupsync/groupsync/state/statetest"
)

// spoolStores returns a store whose first loads spool (with its debug log) and one whose
// first loads stage and INSERT … SELECT, both with sys registered.
func spoolStores(t *testing.T) (spooled *state.Store, log *logtest.Buffer, staged *state.Store) {
	t.Helper()
	log = &logtest.Buffer{}
	spooled = statetest.StoreWithOptions(t, state.Options{
		Logger: slog.New(slog.NewTextHandler(log, &slog.HandlerOptions{Level: slog.LevelDebug}))})
	staged = statetest.Store(t)
	state.DisableFirstLoadSpool(staged)
	for _, s := range []*state.Store{spooled, staged} {
		if err := s.UpsertSystem(t.Context(), sys, "devrev", ""); err != nil {
			t.Fatal(err)
		}
	}
	return spooled, log, staged
}

func wantMergeLog(t *testing.T, log *logtest.Buffer, kind string, want ...string) {
	t.Helper()
	l := lastMerged(log, kind)
	for _, w := range want {
		if !strings.Contains(l, w) {
			t.Fatalf("%s merge log %q: want %q", kind, l, w)
		}
	}
}

// A first load without repeated keys or unknown groups goes from the spool file straight
// into the mirror tables, and stores exactly what the staged first load stores: hostile
// text, JSON (a row larger than the spool's read buffer too), times, NULLs, the sync
// columns and the systems row's counts.
func TestSpooledFirstLoadMatchesStagedFirstLoad(t *testing.T) {
	spooled, log, staged := spoolStores(t)
	hostile := "tab\tnew\nline\rCR back\\slash \\N quote' \"dq\" ünï \u202e"
	gs := groups(30)
	gs[2].Name, gs[2].Description, gs[2].ID = hostile, hostile, "id "+hostile
	gs[3].CreatedAt = time.Date(2024, 1, 2, 3, 4, 5, 123456789, time.FixedZone("x", -7*3600-30*60))
	gs[3].ModifiedAt = time.Date(1999, 12, 31, 23, 59, 59, 0, time.UTC)
	gs[4].Raw = nil
	gs[5].Raw = json.RawMessage(`{"s":"a\tb\\c\nd","n":[1,2.5e10], "k": {"z":1,"a":2}}`)
	gs[6].Raw = json.RawMessage(`{"big":"` + strings.Repeat("x", 3<<20) + `"}`)
	gs[7].MembershipManaged, gs[7].System = true, true
	as := []connectors.Account{{ID: "a1", Email: " Ann@Example.COM ", DisplayName: hostile, Hash: "1"},
		{ID: "a2", Email: "bob@example.com", Raw: json.RawMessage(`{"x":"\u00e9"}`)}, {ID: "a3"}}
	var ms []connectors.Member
	for i := range 30 * 400 {
		ms = append(ms, connectors.Member{GroupID: gs[i%30].ID, AccountID: fmt.Sprintf("u%06d", i),
			Type: "user", Role: []string{"member", hostile}[i%2], Email: fmt.Sprintf("U%d@X.test", i)})
	}
	for _, s := range []*state.Store{spooled, staged} {
		wantCounts(t, mergeGroups(t, s, gs, true), state.MergeCounts{Inserted: 30})
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
		wantCounts(t, mergeMembers(t, s, ms), state.MergeCounts{Inserted: int64(len(ms))})
	}
	for _, kind := range []string{"group", "account", "membership"} {
		wantMergeLog(t, log, kind, "first_load=true", "spooled=true direct=true", "batches=0")
	}
	for what, q := range map[string]string{
		"groups": `SELECT external_id, name, name_key, description, visibility, state, membership_managed, is_system,
			remote_created_at, remote_modified_at, raw::text, hash, deleted_at IS NULL, origin_system,
			last_sync_in_status, last_sync_in_date = first_seen_at, updated_at = first_seen_at FROM groups ORDER BY external_id`,
		"accounts": `SELECT external_id, email, display_name, state, raw::text, hash, deleted_at IS NULL, origin_system,
			last_sync_in_status, last_sync_in_date = first_seen_at FROM accounts ORDER BY external_id`,
		"memberships": `SELECT group_id, account_id, member_type, role, email, deleted_at IS NULL, origin_system,
			last_sync_in_status, last_sync_in_date = first_seen_at FROM memberships ORDER BY 1, 2`,
		"systems": `SELECT group_count, account_count, membership_count, last_pull_complete FROM systems`,
	} {
		sameRows(t, what, dump(t, spooled, q), dump(t, staged, q))
	}
	// And the next merge finds the rows it loaded: nothing to write.
	before := xid(t, spooled)
	wantCounts(t, mergeMembers(t, spooled, ms), state.MergeCounts{Unchanged: int64(len(ms))})
	if n := writtenSince(t, spooled, "memberships", before); n != 0 {
		t.Fatalf("no-op after a spooled first load wrote %d rows", n)
	}
}

// A first load whose keys repeat spools, then stages the spool at Commit and dedupes as a
// staged first load does: the last occurrence wins, each key counts once.
func TestSpooledFirstLoadWithRepeatedKeysDedupesLikeStaging(t *testing.T) {
	spooled, log, staged := spoolStores(t)
	m := func(g, a, role string) connectors.Member {
		return connectors.Member{GroupID: g, AccountID: a, Type: "user", Role: role}
	}
	stream := []connectors.Member{m("g0000", "a1", "member"), m("g0000", "a2", "member"), m("g0001", "a1", "member"),
		m("g0000", "a1", "admin"), m("g0001", "a1", "manager"), m("g0001", "a1", "member")}
	for _, s := range []*state.Store{spooled, staged} {
		mergeGroups(t, s, groups(2), true)
		wantCounts(t, mergeMembers(t, s, stream, "g0000", "g0001"), state.MergeCounts{Inserted: 3})
	}
	wantMergeLog(t, log, "membership", "first_load=true deduped=true spooled=true direct=false")
	q := `SELECT group_id, account_id, role, deleted_at IS NULL, last_sync_in_status FROM memberships ORDER BY 1, 2`
	sameRows(t, "memberships", dump(t, spooled, q), dump(t, staged, q))
	if got := dump(t, spooled, `SELECT role FROM memberships WHERE group_id = 'g0000' AND account_id = 'a1'`); got[0] != "admin" {
		t.Fatalf("g0000/a1 role %v, want the last occurrence's (admin)", got)
	}
}

// A member of a group the mirror did not hold at Begin keeps the spool out of the mirror
// table: Commit stages it and decides against the groups then (here the group came in
// meanwhile, so nothing is orphaned).
func TestSpooledFirstLoadWithAGroupNewSinceBegin(t *testing.T) {
	spooled, log, _ := spoolStores(t)
	ctx := t.Context()
	mergeGroups(t, spooled, groups(1), true)
	w, err := spooled.BeginMembershipMerge(ctx, sys)
	if err != nil {
		t.Fatal(err)
	}
	defer w.Rollback(ctx)
	if err := w.Write(ctx, []connectors.Member{{GroupID: "g0000", AccountID: "a1"}, {GroupID: "g0001", AccountID: "a1"},
		{GroupID: "nope", AccountID: "a1"}}); err != nil {
		t.Fatal(err)
	}
	mergeGroups(t, spooled, groups(2), true)
	c, err := w.Commit(ctx)
	if err != nil {
		t.Fatal(err)
	}
	wantCounts(t, c, state.MergeCounts{Inserted: 2, Orphaned: 1})
	wantMergeLog(t, log, "membership", "first_load=true deduped=false spooled=true direct=false")
}

// A spooled first load that does not commit writes nothing and leaves nothing behind: the
// spool file is unlinked from the start (a killed process cannot leave it), and the
// mirror sees no row until Commit's transaction commits.
func TestSpooledFirstLoadInterruptedWritesNothing(t *testing.T) {
	dir := t.TempDir()
	t.Setenv("TMPDIR", dir)
	spooled, log, _ := spoolStores(t)
	mergeGroups(t, spooled, groups(3), true)
	page := func(i int) []connectors.Member {
		var p []connectors.Member
		for k := range 100 {
			p = append(p, connectors.Member{GroupID: fmt.Sprintf("g%04d", i%3), AccountID: fmt.Sprintf("u%d-%d", i, k)})
		}
		return p
	}
	for _, end := range []string{"rollback", "cancelled commit"} {
		ctx, cancel := context.WithCancel(t.Context())
		w, err := spooled.BeginMembershipMerge(ctx, sys)
		if err != nil {
			t.Fatal(err)
		}
		for i := range 50 {
			if err := w.Write(ctx, page(i)); err != nil {
				t.Fatal(err)
			}
		}
		if left, _ := os.ReadDir(dir); len(left) != 0 {
			t.Fatalf("%s: the spool file is visible in TMPDIR (%v); a killed process would leave it behind", end, left)
		}
		if end == "rollback" {
			w.Rollback(ctx)
		} else {
			cancel()
			if _, err := w.Commit(ctx); err == nil {
				t.Fatal("a commit with a cancelled context succeeded")
			}
		}
		cancel()
		if n := dump(t, spooled, `SELECT count(*) FROM memberships`); n[0] != "0" {
			t.Fatalf("after %s: %s memberships, want 0", end, n[0])
		}
		wantNoStaging(t, spooled, end)
	}
	// The next merge is a first load again, and completes.
	wantCounts(t, mergeMembers(t, spooled, page(0)), state.MergeCounts{Inserted: 100})
	wantMergeLog(t, log, "membership", "spooled=true direct=true")
}

// Without a usable TMPDIR a first load stages instead of failing.
func TestFirstLoadWithoutTempDirStages(t *testing.T) {
	t.Setenv("TMPDIR", t.TempDir()+"/missing")
	spooled, log, _ := spoolStores(t)
	wantCounts(t, mergeGroups(t, spooled, groups(3), true), state.MergeCounts{Inserted: 3})
	wantMergeLog(t, log, "group", "first_load=true", "spooled=false direct=false")
}

// A system with more groups than a spooling membership merge holds in memory stages its
// first membership load instead, with the same result.
func TestFirstLoadOfManyGroupsStages(t *testing.T) {
	spooled, log, _ := spoolStores(t)
	state.SetMaxKnownGroups(spooled, 2)
	mergeGroups(t, spooled, groups(3), true)
	ms := []connectors.Member{{GroupID: "g0000", AccountID: "a1"}, {GroupID: "g0002", AccountID: "a1"}, {GroupID: "nope", AccountID: "a1"}}
	wantCounts(t, mergeMembers(t, spooled, ms), state.MergeCounts{Inserted: 2, Orphaned: 1})
	wantMergeLog(t, log, "membership", "first_load=true deduped=false spooled=false direct=false")
}
