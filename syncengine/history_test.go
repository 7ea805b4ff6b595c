package syncengine_test

import (
	"context"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/groupsync/groupsync/config"
	"github.com/groupsync/groupsync/state"
	"github.com/groupsync/groupsync/syncengine"
)

// dbNow reads the database clock between steps: every history timestamp is a transaction's
// now(), so a step's writes fall after the instant read before it and before the one read
// after it (no sleeps, no clock seam needed).
func (e *env) dbNow() time.Time {
	e.t.Helper()
	var at time.Time
	if err := e.store.Pool().QueryRow(e.t.Context(), `SELECT clock_timestamp()`).Scan(&at); err != nil {
		e.t.Fatal(err)
	}
	return at
}

// membersAt counts the members of the group named name in system at an instant.
func (e *env) membersAt(system, name string, at time.Time) int {
	e.t.Helper()
	var n int
	if err := e.store.Pool().QueryRow(e.t.Context(), `SELECT count(*) FROM groups g, members_at(g.system, g.external_id, $3) m
		WHERE g.system = $1 AND g.name = $2`, system, name, at).Scan(&n); err != nil {
		e.t.Fatal(err)
	}
	return n
}

// intervals is each member's intervals in system (group by name), as "opened_by run -
// closed_by run" in order, by member email.
func (e *env) intervals(system, name string) map[string][]string {
	e.t.Helper()
	rows, err := e.store.Pool().Query(e.t.Context(), `SELECT i.member_email_key,
		i.opened_by || ' ' || coalesce(i.opened_run, 0) || ' - ' || coalesce(i.closed_by || ' ' || i.closed_run, 'open')
		FROM membership_intervals i JOIN groups g ON g.system = i.system AND g.external_id = i.group_id
		WHERE g.system = $1 AND g.name = $2 ORDER BY i.member_email_key, i.valid_from`, system, name)
	if err != nil {
		e.t.Fatal(err)
	}
	defer rows.Close()
	out := map[string][]string{}
	for rows.Next() {
		var email, iv string
		if err := rows.Scan(&email, &iv); err != nil {
			e.t.Fatal(err)
		}
		out[email] = append(out[email], iv)
	}
	if err := rows.Err(); err != nil {
		e.t.Fatal(err)
	}
	return out
}

// TestHistoryOfABadRunAndItsRevert runs the engine over the simulators: a bad run removes
// 20 members of a group from the target, its revert adds them back. members_at gives 30,
// then 10, then 30 members at instants before, between and after; each removed member has
// two target intervals (written by the first run and closed by the bad run's push; opened
// by the revert's push), and in the source the bad run's pull closed the 20 as observed by
// that run.
func TestHistoryOfABadRunAndItsRevert(t *testing.T) {
	t.Parallel()
	e, tn := revertEnv(t)
	group := tn.Groups[0].Name
	first := e.latestRun(t)
	before := e.dbNow()
	bad := e.badRun(tn)
	between := e.dbNow()
	rv := e.revert(bad.RunID, false)
	e.mustStatus(e.apply(rv.RunID, false), state.RunSucceeded)
	after := e.dbNow()

	for _, tt := range []struct {
		what string
		at   time.Time
		want int
	}{{"before the bad run", before, 30}, {"between the bad run and the revert", between, 10}, {"after the revert", after, 30}} {
		if got := e.membersAt("devrev", group, tt.at); got != tt.want {
			t.Errorf("members_at devrev %q %s = %d, want %d", group, tt.what, got, tt.want)
		}
	}
	restored := []string{fmt.Sprintf("written %d - written %d", first, bad.RunID), fmt.Sprintf("written %d - open", rv.RunID)}
	kept := []string{fmt.Sprintf("written %d - open", first)}
	n := map[string]int{}
	for email, ivs := range e.intervals("devrev", group) {
		switch {
		case slices.Equal(ivs, restored):
			n["restored"]++
		case slices.Equal(ivs, kept):
			n["kept"]++
		default:
			t.Errorf("devrev intervals of %s = %q, want %q or %q", email, ivs, restored, kept)
		}
	}
	if n["restored"] != 20 || n["kept"] != 10 {
		t.Errorf("devrev %q: %d members restored, %d kept; want 20 and 10", group, n["restored"], n["kept"])
	}
	closedByPull := 0
	for _, ivs := range e.intervals("airtable", group) {
		if slices.Contains(ivs, fmt.Sprintf("observed %d - observed %d", first, bad.RunID)) {
			closedByPull++
		}
	}
	if closedByPull != 20 {
		t.Errorf("airtable %q: %d intervals opened by run %d's pull and closed by run %d's, want 20", group, closedByPull, first, bad.RunID)
	}
}

// latestRun is the id of the newest run.
func (e *env) latestRun(t *testing.T) int64 {
	t.Helper()
	var id int64
	if err := e.store.Pool().QueryRow(t.Context(), `SELECT max(id) FROM runs`).Scan(&id); err != nil {
		t.Fatal(err)
	}
	return id
}

// TestSchedulerPrunesHistoryPastRetention: the daemon's scheduler prunes closed history
// past history.retention when it starts and again every HistoryPruneEvery, and leaves
// recent history alone.
func TestSchedulerPrunesHistoryPastRetention(t *testing.T) {
	t.Parallel()
	e, _, _ := pairEnv(t, defaultFlow("airtable", "devrev"), 10, 2, 3)
	clock := &fakeClock{now: time.Date(2026, 3, 1, 9, 0, 0, 0, time.UTC)}
	cfg := *e.cfg
	cfg.History.Retention = 30 * 24 * time.Hour
	eng, err := syncengine.New(syncengine.Options{Store: e.store, Config: &cfg, Connectors: e.conns, Clock: clock, Holder: "prune"})
	if err != nil {
		t.Fatal(err)
	}
	daily, err := config.ParseSchedule("@every 24h")
	if err != nil {
		t.Fatal(err)
	}
	// ended inserts a closed interval of member id that ended daysAgo days ago.
	ended := func(id string, daysAgo int) {
		t.Helper()
		if _, err := e.store.Pool().Exec(t.Context(), `INSERT INTO membership_history
			(system, group_id, member_id, valid_from, valid_to, opened_by, closed_by)
			VALUES ('devrev', 'g', $1, now() - make_interval(days => $2 + 1), now() - make_interval(days => $2), 'observed', 'observed')`,
			id, daysAgo); err != nil {
			t.Fatal(err)
		}
	}
	left := func() []string {
		rows, err := e.store.Pool().Query(t.Context(), `SELECT member_id FROM membership_history WHERE group_id = 'g' ORDER BY 1`)
		if err != nil {
			t.Fatal(err)
		}
		ids, err := pgx.CollectRows(rows, pgx.RowTo[string])
		if err != nil {
			t.Fatal(err)
		}
		return ids
	}
	ended("old", 31)
	ended("recent", 29)
	sched := eng.NewScheduler(map[string]syncengine.Schedule{"f": daily})
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- sched.Run(ctx) }()
	waitFor(t, "the pruning at start", func() bool { return slices.Equal(left(), []string{"recent"}) })
	waitFor(t, "the scheduler to wait for the next pruning", func() bool { return clock.timerCount(syncengine.HistoryPruneEvery) == 1 })
	ended("older", 40)
	clock.Advance(syncengine.HistoryPruneEvery)
	waitFor(t, "the hourly pruning", func() bool { return slices.Equal(left(), []string{"recent"}) })
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}
