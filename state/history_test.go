package state_test

import (
	"context"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/groupsync/groupsync/connectors"
	"github.com/groupsync/groupsync/state"
)

// The store has no clock seam: every history timestamp is a transaction's now(). The tests
// read the database clock (clock_timestamp()) between steps instead of sleeping: a step's
// transaction starts after the instant read before it and commits before the one read
// after it, so members_at at those instants must give the state between the steps.
func dbNow(t *testing.T, s *state.Store) time.Time {
	t.Helper()
	var at time.Time
	if err := s.Pool().QueryRow(t.Context(), `SELECT clock_timestamp()`).Scan(&at); err != nil {
		t.Fatal(err)
	}
	return at
}

func membersAt(t *testing.T, s *state.Store, gid string, at time.Time) []string {
	t.Helper()
	rows, err := s.Pool().Query(t.Context(), `SELECT member_id || '<' || member_email_key || '>' FROM members_at($1, $2, $3)`, sys, gid, at)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var out []string
	for rows.Next() {
		var m string
		if err := rows.Scan(&m); err != nil {
			t.Fatal(err)
		}
		out = append(out, m)
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

func member(gid string, i int) connectors.Member {
	return connectors.Member{GroupID: gid, AccountID: fmt.Sprintf("u%d", i), Type: "user", Role: "member",
		Email: fmt.Sprintf("User%d@Example.com", i)}
}

// pull merges one complete member listing of gid as a pull of run (0: outside a run).
func pull(t *testing.T, s *state.Store, run int64, gid string, ms ...connectors.Member) state.MergeCounts {
	t.Helper()
	ctx := t.Context()
	if run > 0 {
		ctx = state.WithRunID(ctx, run)
	}
	w, err := s.BeginMembershipMerge(ctx, sys)
	if err != nil {
		t.Fatal(err)
	}
	defer w.Rollback(ctx)
	if err := w.Write(ctx, ms); err != nil {
		t.Fatal(err)
	}
	w.CompleteGroup(gid)
	c, err := w.Commit(ctx)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func newRun(t *testing.T, s *state.Store) int64 {
	t.Helper()
	id, err := s.CreateRun(t.Context(), state.NewRun{Flow: "f", Trigger: "once"})
	if err != nil {
		t.Fatal(err)
	}
	return id
}

type changeRow struct {
	Member, Change, Via string
	Run                 int64
}

// membershipChanges is membership_changes of gid in order (run 0: none).
func membershipChanges(t *testing.T, s *state.Store, gid string) []changeRow {
	t.Helper()
	rows, err := s.Pool().Query(t.Context(), `SELECT member_id, change, via, coalesce(run_id, 0) FROM membership_changes
		WHERE system = $1 AND group_id = $2 ORDER BY at, member_id`, sys, gid)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var out []changeRow
	for rows.Next() {
		var c changeRow
		if err := rows.Scan(&c.Member, &c.Change, &c.Via, &c.Run); err != nil {
			t.Fatal(err)
		}
		out = append(out, c)
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

// members_at gives nobody before the first pull, the first listing between the pulls, and
// the second one after it; membership_changes names what each pull's run did, the first
// load's joins included (the direct COPY stores no run on the rows).
func TestMembersAtAnswersBeforeBetweenAndAfterPulls(t *testing.T) {
	t.Parallel()
	s := newStore(t)
	mergeGroups(t, s, []connectors.Group{group(0)}, true)
	r1, r2 := newRun(t, s), newRun(t, s)

	t0 := dbNow(t, s)
	if c := pull(t, s, r1, "g0000", member("g0000", 1), member("g0000", 2)); c.Inserted != 2 {
		t.Fatalf("first pull: %+v", c)
	}
	t1 := dbNow(t, s)
	if c := pull(t, s, r2, "g0000", member("g0000", 2), member("g0000", 3)); c.Inserted != 1 || c.Tombstoned != 1 {
		t.Fatalf("second pull: %+v", c)
	}
	t2 := dbNow(t, s)

	for _, tt := range []struct {
		at   time.Time
		what string
		want []string
	}{
		{t0, "before the first pull", nil},
		{t1, "between the pulls", []string{"u1<user1@example.com>", "u2<user2@example.com>"}},
		{t2, "after the second pull", []string{"u2<user2@example.com>", "u3<user3@example.com>"}},
	} {
		if got := membersAt(t, s, "g0000", tt.at); !slices.Equal(got, tt.want) {
			t.Errorf("members_at %s = %v, want %v", tt.what, got, tt.want)
		}
	}
	want := []changeRow{
		{"u1", "joined", "observed", r1}, {"u2", "joined", "observed", r1},
		{"u1", "left", "observed", r2}, {"u3", "joined", "observed", r2},
	}
	if got := membershipChanges(t, s, "g0000"); !slices.Equal(got, want) {
		t.Errorf("membership_changes = %+v\nwant %+v", got, want)
	}
}

// historyWrites counts the rows of the history tables (and of the mirror tables history
// lives on) written since transaction xid before.
func historyWrites(t *testing.T, s *state.Store, before int64) map[string]int64 {
	t.Helper()
	out := map[string]int64{}
	for _, table := range []string{"membership_history", "group_history", "history_pulls", "memberships", "groups"} {
		var n int64
		if err := s.Pool().QueryRow(t.Context(), `SELECT count(*) FROM `+table+` WHERE xmin::text::bigint > $1`, before).Scan(&n); err != nil {
			t.Fatal(err)
		}
		if n > 0 {
			out[table] = n
		}
	}
	return out
}

// A pull that finds what the mirror holds writes nothing, history included, even after
// intervals were closed and reopened and groups renamed.
func TestNoOpPullAddsNoHistoryRows(t *testing.T) {
	t.Parallel()
	s := newStore(t)
	run := newRun(t, s)
	g := group(0)
	mergeGroups(t, s, []connectors.Group{g}, true)
	pull(t, s, run, "g0000", member("g0000", 1), member("g0000", 2))
	pull(t, s, run, "g0000", member("g0000", 2))
	pull(t, s, run, "g0000", member("g0000", 1), member("g0000", 2))
	g.Name, g.Hash = "Renamed", "h2"
	mergeGroups(t, s, []connectors.Group{g}, true)

	before := xid(t, s)
	if c := pull(t, s, run, "g0000", member("g0000", 1), member("g0000", 2)); c.Unchanged != 2 {
		t.Fatalf("no-op pull: %+v", c)
	}
	if c := mergeGroups(t, s, []connectors.Group{g}, true); c.Unchanged != 1 {
		t.Fatalf("no-op group pull: %+v", c)
	}
	if got := historyWrites(t, s, before); len(got) != 0 {
		t.Fatalf("no-op pulls wrote rows: %v", got)
	}
}

// rowUpdates installs a row trigger of the test's own on table and returns a function
// counting the updates of the rows whose key column equals key since then.
func rowUpdates(t *testing.T, s *state.Store, table, key string) func(value string) int {
	t.Helper()
	log := table + "_updates"
	for _, sql := range []string{
		`CREATE TABLE ` + log + ` (key text NOT NULL)`,
		`CREATE FUNCTION count_` + log + `() RETURNS trigger LANGUAGE plpgsql AS $$
		BEGIN INSERT INTO ` + log + ` VALUES (NEW.` + key + `); RETURN NEW; END $$`,
		`CREATE TRIGGER count_` + log + ` AFTER UPDATE ON ` + table + ` FOR EACH ROW EXECUTE FUNCTION count_` + log + `()`,
	} {
		if _, err := s.Pool().Exec(t.Context(), sql); err != nil {
			t.Fatal(err)
		}
	}
	return func(value string) int {
		t.Helper()
		var n int
		if err := s.Pool().QueryRow(t.Context(), `SELECT count(*) FROM `+log+` WHERE key = $1`, value).Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n
	}
}

// A member who comes back opens a new interval, observed by the pull's run, and the merge
// writes the revived row once: reopening the interval is part of the revival's update, not
// a second update of the same row (each changed row costs one tuple).
func TestRevivalOpensItsIntervalInOneWrite(t *testing.T) {
	t.Parallel()
	s := newStore(t)
	mergeGroups(t, s, []connectors.Group{group(0)}, true)
	r1, r2, r3 := newRun(t, s), newRun(t, s), newRun(t, s)
	pull(t, s, r1, "g0000", member("g0000", 1), member("g0000", 2))
	pull(t, s, r2, "g0000", member("g0000", 2))

	updates := rowUpdates(t, s, "memberships", "account_id")
	between := dbNow(t, s)
	if c := pull(t, s, r3, "g0000", member("g0000", 1), member("g0000", 2)); c.Revived != 1 || c.Unchanged != 1 {
		t.Fatalf("revival pull: %+v", c)
	}
	if n := updates("u1"); n != 1 {
		t.Errorf("the revived row was updated %d times, want once", n)
	}
	want := []changeRow{
		{"u1", "joined", "observed", r1}, {"u2", "joined", "observed", r1},
		{"u1", "left", "observed", r2}, {"u1", "joined", "observed", r3},
	}
	if got := membershipChanges(t, s, "g0000"); !slices.Equal(got, want) {
		t.Errorf("membership_changes = %+v\nwant %+v", got, want)
	}
	if got := membersAt(t, s, "g0000", between); !slices.Equal(got, []string{"u2<user2@example.com>"}) {
		t.Errorf("members_at before the revival = %v, want only u2", got)
	}
}

// A group renamed, changed in its description only, tombstoned and revived is written
// once per merge that changed it, its new intervals included.
func TestGroupIntervalsOpenInOneWrite(t *testing.T) {
	t.Parallel()
	s := newStore(t)
	run := newRun(t, s)
	g := group(0)
	mergeGroups(t, s, []connectors.Group{g, group(1)}, true)
	updates := rowUpdates(t, s, "groups", "external_id")
	ctx := state.WithRunID(t.Context(), run)
	merge := func(gs ...connectors.Group) state.MergeCounts {
		w, err := s.BeginGroupMerge(ctx, sys)
		if err != nil {
			t.Fatal(err)
		}
		defer w.Rollback(ctx)
		if err := w.Write(ctx, gs); err != nil {
			t.Fatal(err)
		}
		c, err := w.Commit(ctx, true)
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	g.Name, g.Hash = "Renamed", "h2"
	merge(g, group(1))
	g.Description, g.Hash = "only the description", "h3"
	merge(g, group(1))
	merge(group(1))
	if c := merge(g, group(1)); c.Revived != 1 {
		t.Fatalf("revival: %+v", c)
	}
	if n := updates("g0000"); n != 4 {
		t.Errorf("four merges that changed the group updated its row %d times, want 4", n)
	}
	got := dump(t, s, `SELECT name || ' ' || coalesce(opened_run, 0) || '-' || coalesce(closed_run, -1)
		FROM group_intervals WHERE system = '`+sys+`' AND group_id = 'g0000' ORDER BY valid_from`)
	want := []string{"Group 0 0-" + fmt.Sprint(run), fmt.Sprintf("Renamed %d-%d", run, run), fmt.Sprintf("Renamed %d--1", run)}
	if !slices.Equal(got, want) {
		t.Errorf("group_intervals = %q, want %q", got, want)
	}
}

// A group's renames and visibility changes are intervals too; its tombstone closes its own
// interval and its members'.
func TestGroupNameAndVisibilityIntervals(t *testing.T) {
	t.Parallel()
	s := newStore(t)
	run := newRun(t, s)
	g := group(0)
	mergeGroups(t, s, []connectors.Group{g}, true)
	pull(t, s, 0, "g0000", member("g0000", 1))
	g.Name, g.Hash = "Renamed", "h2"
	mergeGroups(t, s, []connectors.Group{g}, true)
	g.Visibility, g.Hash = connectors.VisibilityPublic, "h3"
	mergeGroups(t, s, []connectors.Group{g}, true)
	g.Description, g.Hash = "only the description", "h4"
	mergeGroups(t, s, []connectors.Group{g}, true)
	at := dbNow(t, s)
	ctx := state.WithRunID(t.Context(), run)
	w, err := s.BeginGroupMerge(ctx, sys)
	if err != nil {
		t.Fatal(err)
	}
	defer w.Rollback(ctx)
	if c, err := w.Commit(ctx, true); err != nil || c.Tombstoned != 1 {
		t.Fatalf("empty complete listing: %+v, %v", c, err)
	}

	rows, err := s.Pool().Query(t.Context(), `SELECT name || '/' || visibility || ' ' || opened_by || '-' || coalesce(closed_by, 'open')
		|| ' run ' || coalesce(closed_run, 0) FROM group_intervals WHERE system = $1 AND group_id = 'g0000' ORDER BY valid_from`, sys)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for rows.Next() {
		var r string
		if err := rows.Scan(&r); err != nil {
			t.Fatal(err)
		}
		got = append(got, r)
	}
	want := []string{"Group 0/private observed-observed run 0", "Renamed/private observed-observed run 0",
		fmt.Sprintf("Renamed/public observed-observed run %d", run)}
	if !slices.Equal(got, want) {
		t.Errorf("group_intervals = %q, want %q", got, want)
	}
	if got := membersAt(t, s, "g0000", at); len(got) != 1 {
		t.Errorf("members_at before the tombstone = %v, want u1", got)
	}
	if got := membersAt(t, s, "g0000", dbNow(t, s)); len(got) != 0 {
		t.Errorf("members_at after the group's tombstone = %v, want nobody", got)
	}
}

// memberChange stores an in-flight member change of run for u<i> in g0000.
func memberChange(t *testing.T, s *state.Store, run int64, op string, i int) state.Change {
	t.Helper()
	c := state.Change{RunID: run, Flow: "f", TargetSystem: sys, Operation: op, TargetGroupID: "g0000",
		TargetAccountID: fmt.Sprintf("u%d", i)}
	if err := s.Pool().QueryRow(t.Context(), `INSERT INTO changes (run_id, flow, target_system, operation, link_id,
		target_group_id, target_account_id, account_email, status) VALUES ($1, 'f', $2, $3, 1, 'g0000', $4, $5, 'in_flight') RETURNING id`,
		run, sys, op, c.TargetAccountID, fmt.Sprintf("user%d@example.com", i)).Scan(&c.ID); err != nil {
		t.Fatal(err)
	}
	return c
}

// A run's removal closes the interval as written by that run, and a later run's addition
// (what a revert does) opens a new one written by it: both show, and members_at follows.
func TestRunWritesCloseAndOpenIntervalsAsWritten(t *testing.T) {
	t.Parallel()
	s := newStore(t)
	mergeGroups(t, s, []connectors.Group{group(0)}, true)
	pull(t, s, 0, "g0000", member("g0000", 1), member("g0000", 2))
	bad, undo := newRun(t, s), newRun(t, s)
	ctx := t.Context()

	if err := s.RecordMembersRemoved(ctx, []state.Change{memberChange(t, s, bad, "remove_member", 1)}); err != nil {
		t.Fatal(err)
	}
	between := dbNow(t, s)
	if err := s.RecordMembersAdded(ctx, []state.Change{memberChange(t, s, undo, "add_member", 1)}); err != nil {
		t.Fatal(err)
	}
	// Adding a member already there keeps its interval.
	if err := s.RecordMembersAdded(ctx, []state.Change{memberChange(t, s, undo, "add_member", 2)}); err != nil {
		t.Fatal(err)
	}
	if got := membersAt(t, s, "g0000", between); !slices.Equal(got, []string{"u2<user2@example.com>"}) {
		t.Errorf("members_at between the runs = %v, want u2 alone", got)
	}
	want := []changeRow{
		{"u1", "joined", "observed", 0}, {"u2", "joined", "observed", 0},
		{"u1", "left", "written", bad}, {"u1", "joined", "written", undo},
	}
	if got := membershipChanges(t, s, "g0000"); !slices.Equal(got, want) {
		t.Errorf("membership_changes = %+v\nwant %+v", got, want)
	}
	// A pull that then lists the member again changes nothing: the written interval stays.
	before := xid(t, s)
	pull(t, s, 0, "g0000", member("g0000", 1), member("g0000", 2))
	if got := historyWrites(t, s, before); len(got) != 0 {
		t.Errorf("the pull after the run's writes wrote %v", got)
	}
}

// Retention prunes closed intervals that ended before the cutoff, in batches, and nothing
// else: recent closed intervals and every open one (live memberships) stay.
func TestPruneHistoryRemovesOnlyOldClosedIntervals(t *testing.T) {
	t.Parallel()
	s := newStore(t)
	mergeGroups(t, s, []connectors.Group{group(0)}, true)
	pull(t, s, 0, "g0000", member("g0000", 1))
	exec := func(sql string, args ...any) {
		t.Helper()
		if _, err := s.Pool().Exec(t.Context(), sql, args...); err != nil {
			t.Fatal(err)
		}
	}
	// 25 old intervals (ended 500 days ago), 3 recent ones (ended 10 days ago), 2 old
	// group name intervals.
	exec(`INSERT INTO membership_history (system, group_id, member_id, valid_from, valid_to, opened_by, closed_by)
		SELECT $1, 'g0000', 'old' || i, now() - interval '600 days', now() - interval '500 days', 'observed', 'observed'
		  FROM generate_series(1, 25) i`, sys)
	exec(`INSERT INTO membership_history (system, group_id, member_id, valid_from, valid_to, opened_by, closed_by)
		SELECT $1, 'g0000', 'recent' || i, now() - interval '20 days', now() - interval '10 days', 'observed', 'written'
		  FROM generate_series(1, 3) i`, sys)
	exec(`INSERT INTO group_history (system, group_id, name, visibility, valid_from, valid_to, opened_by, closed_by)
		SELECT $1, 'g0000', 'Old name ' || i, '', now() - interval '900 days', now() - interval '401 days', 'observed', 'observed'
		  FROM generate_series(1, 2) i`, sys)

	n, err := s.PruneHistory(t.Context(), 400*24*time.Hour, 10)
	if err != nil || n != 27 {
		t.Fatalf("PruneHistory = %d, %v; want 27 pruned", n, err)
	}
	var left []string
	rows, err := s.Pool().Query(t.Context(), `SELECT member_id FROM membership_intervals WHERE group_id = 'g0000'
		UNION ALL SELECT name FROM group_intervals WHERE group_id = 'g0000' ORDER BY 1`)
	if err != nil {
		t.Fatal(err)
	}
	for rows.Next() {
		var m string
		if err := rows.Scan(&m); err != nil {
			t.Fatal(err)
		}
		left = append(left, m)
	}
	if want := []string{"Group 0", "recent1", "recent2", "recent3", "u1"}; !slices.Equal(left, want) {
		t.Errorf("after pruning: %v, want %v", left, want)
	}
	if _, err := s.PruneHistory(context.WithoutCancel(t.Context()), 0, 0); err == nil {
		t.Error("PruneHistory with no retention pruned instead of refusing")
	}
}

// TestMembersAtIsEmptyOnceItsGroupIsGone: a group tombstoned by a complete listing or
// deleted by the engine ends its members' intervals (the engine's delete leaves its
// memberships live: no listing of the group can close them), so members_at at a later
// instant is empty, while before it the members are there.
func TestMembersAtIsEmptyOnceItsGroupIsGone(t *testing.T) {
	t.Parallel()
	for _, how := range []string{"listing", "engine"} {
		t.Run(how, func(t *testing.T) {
			t.Parallel()
			s := newStore(t)
			mergeGroups(t, s, []connectors.Group{group(0), group(1)}, true)
			pull(t, s, 0, "g0000", member("g0000", 1), member("g0000", 2))
			t1 := dbNow(t, s)
			if how == "listing" {
				mergeGroups(t, s, []connectors.Group{group(1)}, true)
			} else {
				c := memberChange(t, s, newRun(t, s), "delete_group", 0)
				if err := s.RecordGroupDeleted(t.Context(), c, false); err != nil {
					t.Fatal(err)
				}
			}
			t2 := dbNow(t, s)
			if got := membersAt(t, s, "g0000", t1); len(got) != 2 {
				t.Errorf("members_at while the group lived = %v, want its 2 members", got)
			}
			if got := membersAt(t, s, "g0000", t2); len(got) != 0 {
				t.Errorf("members_at after the group was gone = %v, want none", got)
			}
		})
	}
}
