package state_test

import (
	"slices"
	"testing"
	"time"

	"github.com/groupsync/groupsync/connectors"
	"github.com/groupsync/groupsync/state"
)

// accountRow is what a test reads back of one account.
type accountRow struct {
	Email, State string
	Live         bool
	CheckedAgo   time.Duration
}

func (f *factory) accountRow(sys, id string) accountRow {
	f.tb.Helper()
	var r accountRow
	var secs float64
	if err := f.db.QueryRow(f.ctx, `SELECT email, state, deleted_at IS NULL,
		       CASE WHEN checked_at = '-infinity' THEN 1e9 ELSE extract(epoch FROM now() - checked_at) END
		  FROM accounts WHERE system = $1 AND external_id = $2`, sys, id).Scan(&r.Email, &r.State, &r.Live, &secs); err != nil {
		f.tb.Fatalf("account %s/%s: %v", sys, id, err)
	}
	r.CheckedAgo = time.Duration(secs * float64(time.Second))
	return r
}

// age makes an account's last read that long ago.
func (f *factory) age(sys, id string, d time.Duration) {
	f.tb.Helper()
	f.exec(`UPDATE accounts SET checked_at = now() - make_interval(secs => $3) WHERE system = $1 AND external_id = $2`,
		sys, id, d.Seconds())
}

// TestRecordAccountsDecidesLiveness: RecordAccounts is the one place that decides whether
// an account is live. Found and active: live (a tombstone is revived); found inactive, or
// not returned: tombstoned, keeping what the mirror knew. Every row is marked checked; an
// unchanged account changes no content column; the counts and systems.account_count follow.
func TestRecordAccountsDecidesLiveness(t *testing.T) {
	f := newFactory(t)
	f.systems("tgt")
	f.account("tgt", "same", "same@x.io", false)
	f.account("tgt", "moved", "old@x.io", false)
	f.account("tgt", "back", "back@x.io", true)
	f.account("tgt", "quit", "quit@x.io", false)
	f.account("tgt", "vanished", "vanished@x.io", false)
	f.exec(`UPDATE systems SET account_count = 4 WHERE name = 'tgt'`)
	for _, id := range []string{"same", "moved", "back", "quit", "vanished"} {
		f.age("tgt", id, 48*time.Hour)
	}
	c, err := f.s.RecordAccounts(f.ctx, "tgt", []connectors.Account{
		{ID: "same", Email: "same@x.io", Hash: "h"},
		{ID: "moved", Email: "New@X.io", Hash: "h2", State: "active"},
		{ID: "back", Email: "back@x.io", Hash: "h", State: "active"},
		{ID: "quit", Email: "quit@x.io", Hash: "h3", State: "Deactivated"},
		{ID: "fresh", Email: "fresh@x.io", Hash: "h4", State: "active"},
	}, []string{"vanished", "never-seen"})
	if err != nil {
		t.Fatal(err)
	}
	want := state.MergeCounts{Inserted: 1, Updated: 1, Revived: 1, Tombstoned: 2, Unchanged: 2}
	if c != want {
		t.Errorf("counts = %+v, want %+v", c, want)
	}
	for id, w := range map[string]accountRow{
		"same": {Email: "same@x.io", Live: true}, "moved": {Email: "new@x.io", State: "active", Live: true},
		"back": {Email: "back@x.io", State: "active", Live: true}, "quit": {Email: "quit@x.io", State: "Deactivated"},
		"vanished": {Email: "vanished@x.io"}, "fresh": {Email: "fresh@x.io", State: "active", Live: true},
		"never-seen": {},
	} {
		got := f.accountRow("tgt", id)
		if got.CheckedAgo > time.Minute {
			t.Errorf("%s: checked %s ago, want now", id, got.CheckedAgo)
		}
		got.CheckedAgo = 0
		if got != w {
			t.Errorf("%s = %+v, want %+v", id, got, w)
		}
	}
	// updated_at moves only with the content (the re-read itself moved checked_at).
	for id, changed := range map[string]bool{"same": false, "moved": true, "vanished": true} {
		var moved bool
		if err := f.db.QueryRow(f.ctx, `SELECT updated_at = checked_at FROM accounts WHERE system = 'tgt' AND external_id = $1`,
			id).Scan(&moved); err != nil {
			t.Fatal(err)
		}
		if moved != changed {
			t.Errorf("%s: updated_at moved = %v, want %v", id, moved, changed)
		}
	}
	var live, count int
	if err := f.db.QueryRow(f.ctx, `SELECT (SELECT count(*) FROM accounts WHERE system = 'tgt' AND deleted_at IS NULL),
		account_count FROM systems WHERE name = 'tgt'`).Scan(&live, &count); err != nil {
		t.Fatal(err)
	}
	if live != 4 || count != live {
		t.Errorf("live accounts %d, systems.account_count %d, want 4 and 4", live, count)
	}
	// Bad input is refused whole, naming the record, and writes nothing.
	if _, err := f.s.RecordAccounts(f.ctx, "tgt", []connectors.Account{{ID: "bad", Email: "a\x00@x.io", Hash: "h"}}, nil); err == nil {
		t.Error("an email with a NUL byte was recorded, want an error")
	}
}

// TestStaleAccountIDs: the accounts a plan relies on are re-read when never read (no row,
// with or without an inline email), older than max_age (tombstones too), contradicted by a membership's
// inline email that changed since the read, or marked for a recheck; on a target also the
// accounts the source's emails match. Fresh ones, and ones in no relied-on group, are not.
func TestStaleAccountIDs(t *testing.T) {
	f := newFactory(t)
	f.systems("src", "tgt")
	f.group("src", "g1", "One")
	f.group("src", "g9", "Out of scope")
	f.group("tgt", "t1", "One")
	for _, a := range []struct{ id, email string }{{"fresh", "fresh@x.io"}, {"old", "old@x.io"}, {"contra", "c-old@x.io"}, {"out", "out@x.io"}} {
		f.account("src", a.id, a.email, false)
	}
	f.account("src", "oldgone", "gone@x.io", true)
	f.age("src", "old", 25*time.Hour)
	f.age("src", "oldgone", 25*time.Hour)
	f.age("src", "out", 25*time.Hour)
	f.age("src", "contra", time.Hour)
	for _, m := range []struct{ g, id, email string }{{"g1", "fresh", ""}, {"g1", "old", ""}, {"g1", "oldgone", ""},
		{"g1", "contra", "c-new@x.io"}, {"g1", "unread", ""}, {"g1", "inline", "inline@x.io"}, {"g9", "out", ""}} {
		f.member("src", m.g, m.id, m.email)
	}
	src := state.StaleAccounts{System: "src", GroupIDs: []string{"g1"}, MaxAge: 24 * time.Hour}
	stale := f.stale(src)
	if want := []string{"contra", "inline", "old", "oldgone", "unread"}; !slices.Equal(stale, want) {
		t.Errorf("source stale = %v, want %v", stale, want)
	}
	// Paging: after and limit walk the same set.
	if page, _ := f.s.StaleAccountIDs(f.ctx, src, "inline", 2); !slices.Equal(page, []string{"old", "oldgone"}) {
		t.Errorf("page after inline = %v, want [old oldgone]", page)
	}

	f.account("tgt", "tfresh", "fresh@x.io", false)
	f.account("tgt", "told", "old@x.io", false)
	f.account("tgt", "tmember", "m@x.io", false)
	f.account("tgt", "tfailed", "inline@x.io", false)
	f.account("tgt", "tother", "nobody@x.io", false)
	f.age("tgt", "told", 25*time.Hour)
	f.age("tgt", "tother", 25*time.Hour)
	f.age("tgt", "tmember", 25*time.Hour)
	f.member("tgt", "t1", "tmember", "")
	f.account("tgt", "tleft", "left@x.io", false)
	f.goneMember("tgt", "t1", "tleft", "") // left the group after its account was read
	if err := f.s.RecheckAccounts(f.ctx, "tgt", []string{"tfailed"}); err != nil {
		t.Fatal(err)
	}
	tgt := state.StaleAccounts{System: "tgt", GroupIDs: []string{"t1"}, MatchSource: "src", MatchScopeIDs: []string{"g1"},
		MaxAge: 24 * time.Hour}
	if got, want := f.stale(tgt), []string{"tfailed", "tleft", "tmember", "told"}; !slices.Equal(got, want) {
		t.Errorf("target stale = %v, want %v", got, want)
	}
	// Once recorded, none is stale any more: each batch of a re-read moves on.
	if _, err := f.s.RecordAccounts(f.ctx, "src", nil, stale); err != nil {
		t.Fatal(err)
	}
	if got := f.stale(src); len(got) != 0 {
		t.Errorf("stale after the re-read = %v, want none", got)
	}
	groups, err := f.s.GroupsWithStaleAccounts(f.ctx, "src", []string{"g1", "g9"}, 24*time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(groups, []string{"g9"}) {
		t.Errorf("groups with stale accounts = %v, want [g9]", groups)
	}
}

func (f *factory) stale(q state.StaleAccounts) []string {
	f.tb.Helper()
	ids, err := f.s.StaleAccountIDs(f.ctx, q, "", 100)
	if err != nil {
		f.tb.Fatal(err)
	}
	return ids
}

// TestPlanLeavesOutTombstonedAccounts: a source member whose account is tombstoned
// (deleted or deactivated at the source) is known gone: not added, removed from a mirrored
// target, and it does not make its group unsure. A target account that is tombstoned is
// not added to (no_account).
func TestPlanLeavesOutTombstonedAccounts(t *testing.T) {
	f := newFactory(t)
	f.systems("src", "tgt")
	f.group("src", "g1", "One")
	f.group("tgt", "t1", "One")
	f.link(f.link(0, "src", "g1", "f"), "tgt", "t1", "f")
	f.account("src", "sa", "a@x.io", false)
	f.account("src", "squit", "quit@x.io", true)
	f.account("src", "sb", "b@x.io", false)
	f.account("tgt", "ta", "a@x.io", false)
	f.account("tgt", "tquit", "quit@x.io", false)
	f.account("tgt", "tb", "b@x.io", true)
	f.member("src", "g1", "sa", "")
	f.member("src", "g1", "squit", "")
	f.member("src", "g1", "sb", "")
	f.member("tgt", "t1", "ta", "")
	f.member("tgt", "t1", "tquit", "")
	cs := f.mustPlan(f.run("f", "schedule", "running"), planCase{scope: []string{"g1"}, caps: allCaps})
	if r := find(cs, "remove_member", "g1"); len(r) != 1 || r[0].Status != "planned" || r[0].TargetAccount != "tquit" {
		t.Errorf("removals = %+v, want tquit planned (its source account is gone)", r)
	}
	if a := find(cs, "add_member", "g1"); len(a) != 1 || a[0].Email != "b@x.io" || a[0].Status != "skipped" || a[0].Reason != "no_account" {
		t.Errorf("additions = %+v, want b@x.io skipped/no_account (its target account is gone)", a)
	}
}
