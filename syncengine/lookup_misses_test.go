package syncengine_test

import (
	"testing"

	"github.com/groupsync/groupsync/config"
	"github.com/groupsync/groupsync/connectors"
	"github.com/groupsync/groupsync/connectors/selfcommunity/selfcommunitysim"
	"github.com/groupsync/groupsync/connectors/simkit"
	"github.com/groupsync/groupsync/state"
	"github.com/groupsync/groupsync/syncengine"
)

// TestLookupMissesAreAskedOncePerTTL: a source member without an account in the target
// is looked up by email once, not on every run; the add waits (skipped no_account) until
// the miss is older than accounts.lookup_miss_ttl, or until an operator runs the group.
func TestLookupMissesAreAskedOncePerTTL(t *testing.T) {
	t.Parallel()
	e := newEnv(t, map[string]connectors.Kind{"devrev": connectors.KindDevRev, "selfcommunity": connectors.KindSelfCommunity},
		map[string]config.Flow{"f": defaultFlow("devrev", "selfcommunity")})
	ps := people(8)
	tn := seedSource(e.sim("devrev"), ps, 1, 6)
	a, b := tn.People[tn.Groups[0].Members[0]], tn.People[tn.Groups[0].Members[1]]
	var others []simkit.Person
	for _, p := range ps {
		if p.Email != a.Email && p.Email != b.Email {
			others = append(others, p)
		}
	}
	seedAccounts(e.sim("selfcommunity"), others)
	tgt := e.sim("selfcommunity")
	lookups := func() int { return tgt.Counter().Count(selfcommunitysim.RouteAccountFind) }
	noAccount := func(res *syncengine.Result) int { return res.Targets["selfcommunity"].Reasons["no_account"] }

	before := lookups()
	res := e.run("f", syncengine.RunOptions{})
	e.mustStatus(res, state.RunSucceeded)
	first := lookups() - before
	if first == 0 || noAccount(res) != 2 {
		t.Fatalf("first run: %d lookups, %s; want the two missing emails asked and skipped no_account", first, describe(res))
	}
	before = lookups()
	res = e.run("f", syncengine.RunOptions{})
	e.mustStatus(res, state.RunSucceeded)
	if n := lookups() - before; n != 0 || noAccount(res) != 2 {
		t.Fatalf("second run: %d lookups, %s; want none within the TTL and both still skipped no_account", n, describe(res))
	}

	// a gets an account: the next scheduled run does not know yet, a run of the group does.
	tgt.AddPerson(a)
	res = e.run("f", syncengine.RunOptions{})
	if noAccount(res) != 2 {
		t.Fatalf("within the TTL: %s, want both still skipped", describe(res))
	}
	res = e.run("f", syncengine.RunOptions{Groups: []string{tn.Groups[0].Name}})
	e.mustStatus(res, state.RunSucceeded)
	if ts := res.Targets["selfcommunity"]; ts.Added != 1 || noAccount(res) != 1 {
		t.Fatalf("a run of the group: %s, want a added and b still skipped", describe(res))
	}

	// b gets an account; once its miss is older than the TTL a scheduled run asks again.
	tgt.AddPerson(b)
	if noAccount(e.run("f", syncengine.RunOptions{})) != 1 {
		t.Fatal("b was asked again within the TTL")
	}
	if _, err := e.store.Pool().Exec(t.Context(), `UPDATE account_misses SET missed_at = missed_at - $1::interval`,
		config.DefaultLookupMissTTL.String()); err != nil {
		t.Fatal(err)
	}
	res = e.run("f", syncengine.RunOptions{})
	e.mustStatus(res, state.RunSucceeded)
	if ts := res.Targets["selfcommunity"]; ts.Added != 1 || noAccount(res) != 0 {
		t.Fatalf("after the TTL: %s, want b added", describe(res))
	}
	e.assertMirrored("devrev", "selfcommunity")
	var left int
	if err := e.store.Pool().QueryRow(t.Context(), `SELECT count(*) FROM account_misses`).Scan(&left); err != nil {
		t.Fatal(err)
	}
	if left != 0 {
		t.Fatalf("%d misses left after both were found and the TTL passed", left)
	}
}

// TestLookupMissesOfEveryEmailAreNotRemembered: a target that has none of ten or more
// emails asked for is more likely misconfigured (base_url, token) than empty of the
// people: nothing is remembered, so the fix takes effect on the next run, not a TTL later.
func TestLookupMissesOfEveryEmailAreNotRemembered(t *testing.T) {
	t.Parallel()
	e := newEnv(t, map[string]connectors.Kind{"devrev": connectors.KindDevRev, "selfcommunity": connectors.KindSelfCommunity},
		map[string]config.Flow{"f": defaultFlow("devrev", "selfcommunity")})
	tn := seedSource(e.sim("devrev"), people(12), 1, 11)
	tgt := e.sim("selfcommunity")
	for range 2 {
		before := tgt.Counter().Count(selfcommunitysim.RouteAccountFind)
		res := e.run("f", syncengine.RunOptions{})
		e.mustStatus(res, state.RunSucceeded)
		if n := tgt.Counter().Count(selfcommunitysim.RouteAccountFind) - before; n < len(tn.Groups[0].Members) {
			t.Fatalf("%d lookups for %d members the target has no account for, want each asked every run", n, len(tn.Groups[0].Members))
		}
	}
	var n int
	if err := e.store.Pool().QueryRow(t.Context(), `SELECT count(*) FROM account_misses`).Scan(&n); err != nil {
		t.Fatal(err)
	}
	if n != 0 {
		t.Fatalf("%d misses remembered from a target that had none of the emails", n)
	}
}
