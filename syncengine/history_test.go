package syncengine_test

import (
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/groupsync/groupsync/state"
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
