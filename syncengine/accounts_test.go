package syncengine_test

import (
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/groupsync/groupsync/connectors"
	"github.com/groupsync/groupsync/connectors/simkit"
	"github.com/groupsync/groupsync/state"
	"github.com/groupsync/groupsync/syncengine"
)

// freshEnv is a DevRev source (members listed by id, accounts resolved by id) feeding a
// SelfCommunity target, 8 people in one group, synced once.
func freshEnv(t *testing.T, maxAge time.Duration) (*env, simkit.Tenant) {
	t.Helper()
	e, _, tn := pairEnv(t, defaultFlow("devrev", "selfcommunity"), 8, 1, 6)
	e.cfg.Accounts.MaxAge = maxAge
	e.mustStatus(e.run("f", syncengine.RunOptions{}), state.RunSucceeded)
	e.assertMirrored("devrev", "selfcommunity")
	return e, tn
}

func knobs(t *testing.T, e *env, sys string) simkit.AccountKnobs {
	t.Helper()
	k, ok := e.sim(sys).(simkit.AccountKnobs)
	if !ok {
		t.Fatalf("%s simulator has no account knobs", sys)
	}
	return k
}

// settled runs the flow n times and fails unless each run succeeds without a failed
// change and changes nothing in the target: the engine has converged, and does not flap.
func (e *env) settled(target string, n int) {
	e.t.Helper()
	before := effects(e.sim(target))
	for range n {
		res := e.run("f", syncengine.RunOptions{})
		e.mustStatus(res, state.RunSucceeded)
		if f := e.changeCount(res.RunID, state.ChangeFailed); f != 0 {
			e.t.Fatalf("run %d: %d failed changes after convergence; targets %s", res.RunID, f, describe(res))
		}
	}
	if after := effects(e.sim(target)); after != before {
		e.t.Fatalf("%s changed while settled: creates/adds/removes %v → %v (flapping)", target, before, after)
	}
}

func (e *env) accountLive(sys, id string) bool {
	e.t.Helper()
	var live bool
	if err := e.store.Pool().QueryRow(e.t.Context(), `SELECT deleted_at IS NULL FROM accounts WHERE system = $1 AND external_id = $2`,
		sys, id).Scan(&live); err != nil {
		e.t.Fatalf("account %s/%s: %v", sys, id, err)
	}
	return live
}

// TestInvariantAccountsAreFresh: the accounts a plan relies on follow their systems
// (DESIGN.md, fresh accounts): an email changed on either side, an account deleted in
// the target, an account deactivated at the source, each converges within two runs and
// then stays put (no flapping, nothing failing every run until given up).
func TestInvariantAccountsAreFresh(t *testing.T) {
	t.Parallel()
	t.Run("target account deleted", func(t *testing.T) {
		t.Parallel()
		e, tn := freshEnv(t, 24*time.Hour)
		email := tn.People[tn.Groups[0].Members[2]].Email
		target := e.conns["selfcommunity"]
		acc, err := target.FindAccountByEmail(t.Context(), connectors.NormalizeEmail(email))
		if err != nil {
			t.Fatal(err)
		}
		if !knobs(t, e, "selfcommunity").DeleteAccount(email) {
			t.Fatal("no target account to delete")
		}
		// The mirror's copy is fresh by max_age, so the first run still tries the add; the
		// refusal marks the account for a recheck, and the next run tombstones it.
		e.run("f", syncengine.RunOptions{})
		res := e.run("f", syncengine.RunOptions{})
		e.mustStatus(res, state.RunSucceeded)
		if e.accountLive("selfcommunity", acc.ID) {
			t.Fatalf("deleted target account %s is still live in the mirror", acc.ID)
		}
		e.settled("selfcommunity", 2)
		e.assertMirrored("devrev", "selfcommunity", connectors.NormalizeEmail(email))
	})
	t.Run("email changed on both sides", func(t *testing.T) {
		t.Parallel()
		e, tn := freshEnv(t, time.Millisecond)
		old := tn.People[tn.Groups[0].Members[1]].Email
		renamed := "renamed." + old
		for _, sys := range []string{"devrev", "selfcommunity"} {
			if !knobs(t, e, sys).SetAccountEmail(old, renamed) {
				t.Fatalf("%s: no account %s", sys, old)
			}
		}
		// The same person, under a new address everywhere: nothing to write, now or later.
		e.settled("selfcommunity", 2)
		e.assertMirrored("devrev", "selfcommunity")
	})
	t.Run("email changed in the target", func(t *testing.T) {
		t.Parallel()
		e, tn := freshEnv(t, time.Millisecond)
		old := tn.People[tn.Groups[0].Members[3]].Email
		if !knobs(t, e, "selfcommunity").SetAccountEmail(old, "someone.else@example.net") {
			t.Fatal("no target account")
		}
		// The target account is no longer the source member's: it leaves the group, and the
		// source member has no target account any more. One run, then nothing.
		res := e.run("f", syncengine.RunOptions{})
		e.mustStatus(res, state.RunSucceeded)
		if ts := res.Targets["selfcommunity"]; ts.Removed != 1 || ts.Reasons["no_account"] == 0 {
			t.Fatalf("after the target's email change: %s, want 1 removed and the member skipped no_account", describe(res))
		}
		e.settled("selfcommunity", 2)
	})
	t.Run("target accounts unreadable", func(t *testing.T) {
		t.Parallel()
		e, _, tn := pairEnv(t, defaultFlow("airtable", "devrev"), 8, 1, 6)
		e.cfg.Accounts.MaxAge = time.Millisecond
		e.mustStatus(e.run("f", syncengine.RunOptions{}), state.RunSucceeded)
		email := tn.People[tn.Groups[0].Members[2]].Email
		if !knobs(t, e, "devrev").DeleteAccount(email) {
			t.Fatal("no target account to delete")
		}
		// The deleted account left the target group; its mirror row is stale and cannot be
		// re-read. A plan on that row would add the deleted account back: the target is not
		// synced this run, and says why.
		e.sim("devrev").Faults().StatusNext("dev-users.get", -1, 500)
		before := effects(e.sim("devrev"))
		res := e.run("f", syncengine.RunOptions{})
		e.mustStatus(res, state.RunFailed)
		if after := effects(e.sim("devrev")); after != before {
			t.Fatalf("devrev written with its accounts unreadable: %v → %v; %s", before, after, describe(res))
		}
		if res.Err == nil || !strings.Contains(res.Err.Error(), "target devrev not synced: accounts") {
			t.Fatalf("run error %v, want it to name the target and its accounts", res.Err)
		}
		e.sim("devrev").Faults().Clear()
		e.settled("devrev", 2)
		e.assertMirrored("airtable", "devrev", connectors.NormalizeEmail(email))
	})
	t.Run("source account deactivated", func(t *testing.T) {
		t.Parallel()
		e, tn := freshEnv(t, time.Millisecond)
		email := tn.People[tn.Groups[0].Members[4]].Email
		if !knobs(t, e, "devrev").DeactivateAccount(email) {
			t.Fatal("no source account")
		}
		// A deactivated person is known gone: removed from the mirrored target, and the
		// group is not held back as unsure.
		res := e.run("f", syncengine.RunOptions{})
		e.mustStatus(res, state.RunSucceeded)
		if ts := res.Targets["selfcommunity"]; ts.Removed != 1 {
			t.Fatalf("after deactivating %s at the source: %s, want 1 removed", email, describe(res))
		}
		e.settled("selfcommunity", 2)
		e.assertMirrored("devrev", "selfcommunity", connectors.NormalizeEmail(email))
	})
}

// TestAccountReReadOfNoneTombstonesNothing: a re-read by id in which the target returns not
// one of ten or more accounts (every lookup answering 404: a misrouted API) tombstones
// nothing and does not sync the target, rather than taking everyone as deleted.
func TestAccountReReadOfNoneTombstonesNothing(t *testing.T) {
	t.Parallel()
	e, _, tn := pairEnv(t, defaultFlow("airtable", "devrev"), 12, 1, 11)
	e.cfg.Accounts.MaxAge = time.Millisecond
	e.mustStatus(e.run("f", syncengine.RunOptions{}), state.RunSucceeded)
	e.sim("devrev").Faults().StatusNext("dev-users.get", -1, http.StatusNotFound)
	before := effects(e.sim("devrev"))
	res := e.run("f", syncengine.RunOptions{})
	e.mustStatus(res, state.RunFailed)
	if res.Err == nil || !strings.Contains(res.Err.Error(), "none of the") {
		t.Fatalf("run error %v, want it to say none of the accounts exists", res.Err)
	}
	if after := effects(e.sim("devrev")); after != before {
		t.Fatalf("devrev written while its account lookups all answered 404: %v → %v", before, after)
	}
	var dead int
	if err := e.store.Pool().QueryRow(t.Context(), `SELECT count(*) FROM accounts WHERE system = 'devrev' AND deleted_at IS NOT NULL`).Scan(&dead); err != nil {
		t.Fatal(err)
	}
	if dead != 0 {
		t.Fatalf("%d devrev accounts tombstoned on a re-read that found none of %d", dead, len(tn.Groups[0].Members))
	}
}
