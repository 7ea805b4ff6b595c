package e2e

import (
	"github.com/groupsync/groupsync/connectors/airtable/airtablesim"
	"net/http"
	"strings"
	"testing"
	"time"
)

// twoSystemOrg is airtable (source, 6 groups × 5 members over 30 people) → devrev, with the
// binary's configuration written; extra adjusts each system's keys.
func twoSystemOrg(t *testing.T, extra map[string]map[string]any, flowExtra map[string]any) (*org, string) {
	t.Helper()
	o := newOrg(t, "airtable", "devrev")
	ps := people(30)
	seedSource(o.sim("airtable"), ps, 6, 5)
	seedAccounts(o.sim("devrev"), ps)
	cfg := o.writeConfig("", map[string]map[string]any{
		"airtable": o.systemYAML("airtable", extra["airtable"]), "devrev": o.systemYAML("devrev", extra["devrev"]),
	}, map[string]map[string]any{"f": flowYAML("airtable", []string{"devrev"}, flowExtra)}, "")
	return o, cfg
}

// TestServerErrorsOnAShare: with 20% of every request answered 503 on both sides, runs
// retry, never duplicate, never remove, and converge within a few runs.
func TestServerErrorsOnAShare(t *testing.T) {
	t.Parallel()
	o, cfg := twoSystemOrg(t, nil, nil)
	o.sim("airtable").Faults().StatusShare("", 0.2, http.StatusServiceUnavailable, -1)
	o.sim("devrev").Faults().StatusShare("", 0.2, http.StatusInternalServerError, -1)
	converged := false
	for i := 0; i < 6 && !converged; i++ {
		code, p := runOnce(t, cfg)
		if code != 0 && code != 1 && code != 3 {
			t.Fatalf("run %d exited %d; stderr:\n%s", i, code, tail(p.stderr.String(), 2000))
		}
		converged, _ = mirrored(o.sim("airtable"), o.sim("devrev"))
	}
	if !converged {
		_, why := mirrored(o.sim("airtable"), o.sim("devrev"))
		t.Fatalf("not converged after 6 runs under 20%% 5xx: %s", why)
	}
	if got := o.sim("devrev").Counter().Total(); got == 0 {
		t.Fatal("no request reached the target")
	}
	o.assertNoDuplicates("devrev")
	if _, _, r := o.sim("devrev").Effects().Totals(); r != 0 {
		t.Fatalf("%d members removed under 5xx faults, want 0", r)
	}
	if n := o.queryInt(`SELECT count(*) FROM groups WHERE system = 'airtable' AND deleted_at IS NOT NULL`); n != 0 {
		t.Fatalf("%d source groups tombstoned by failing listings", n)
	}
}

// lockoutGrace is how long after a 429 requests may still arrive that were on their way
// before the client could read it (parallel workers; a loaded CI machine under -race).
const lockoutGrace = 250 * time.Millisecond

// lockoutViolations counts requests that arrived inside a lockout the server announced:
// after a 429 at t0, nothing may arrive in [t0+grace, t0+lockout). The grace covers
// requests already on the wire when the 429 was answered (workers running in parallel).
func lockoutViolations(hits []hit, lockout, grace time.Duration) (violations, lockouts int) {
	var end time.Time
	var start time.Time
	for _, h := range hits {
		if h.at.Before(end) {
			if h.at.After(start.Add(grace)) {
				violations++
			}
			continue
		}
		if h.status == http.StatusTooManyRequests {
			lockouts++
			start, end = h.at, h.at.Add(lockout)
		}
	}
	return violations, lockouts
}

// TestRateLimitLockoutDevRevStyle: the target enforces a rate with a lockout announced by
// Retry-After (and the body's retry_after); the client waits it out every time.
func TestRateLimitLockoutDevRevStyle(t *testing.T) {
	t.Parallel()
	o, cfg := twoSystemOrg(t, nil, nil)
	const lockout = time.Second
	o.sim("devrev").Faults().Limit(50, 10, lockout)
	if code, p := runOnce(t, cfg); code != 0 {
		t.Fatalf("run under DevRev's rate limit exited %d; stderr:\n%s", code, tail(p.stderr.String(), 3000))
	}
	o.assertMirrored("airtable", "devrev")
	o.assertNoDuplicates("devrev")
	v, n := lockoutViolations(o.fronts["devrev"].Hits(), lockout, lockoutGrace)
	if n == 0 {
		t.Fatal("the client never met the limit: the test proves nothing")
	}
	if v != 0 {
		t.Fatalf("%d requests landed inside %d DevRev lockouts", v, n)
	}
	t.Logf("devrev: %d lockouts met, %d requests, none inside a lockout", n, len(o.fronts["devrev"].Hits()))
}

// TestRateLimitLockoutAirtableStyle: Airtable answers a 429 with no Retry-After and locks
// the token out for 30 s; the client must stay silent for those 30 s.
func TestRateLimitLockoutAirtableStyle(t *testing.T) {
	t.Parallel()
	o, cfg := twoSystemOrg(t, map[string]map[string]any{"airtable": {"max_retry_wait": "45s"}}, nil)
	const lockout = 30 * time.Second
	// Four requests pass, the fifth is refused and locks the token out; by the lockout's
	// end the bucket is full again and the rest of the pull fits in it.
	o.sim("airtable").Faults().Limit(1, 4, lockout)
	start := time.Now()
	if code, p := runOnce(t, cfg); code != 0 {
		t.Fatalf("run under Airtable's lockout exited %d; stderr:\n%s", code, tail(p.stderr.String(), 3000))
	}
	o.assertMirrored("airtable", "devrev")
	hits := o.fronts["airtable"].Hits()
	v, n := lockoutViolations(hits, lockout, lockoutGrace)
	if n == 0 {
		t.Fatal("the client never met the lockout: the test proves nothing")
	}
	if v != 0 {
		t.Fatalf("%d requests landed inside the 30 s Airtable lockout", v)
	}
	t.Logf("airtable: %d lockouts, %d requests, run took %s", n, len(hits), time.Since(start).Round(time.Millisecond))
}

// TestAbsurdRetryAfterIsCapped: a Retry-After of ten hours is not obeyed: the call fails
// at once as rate-limited (max_retry_wait), the run reports it, the next run converges.
func TestAbsurdRetryAfterIsCapped(t *testing.T) {
	t.Parallel()
	o, cfg := twoSystemOrg(t, map[string]map[string]any{"devrev": {"max_retry_wait": "2s"}}, nil)
	o.sim("devrev").Faults().RateLimitNext("", 1, 10*time.Hour)
	start := time.Now()
	code, p := runOnce(t, cfg)
	took := time.Since(start)
	if code == 0 {
		t.Fatalf("a run whose target demanded a 10 h wait succeeded; stderr:\n%s", tail(p.stderr.String(), 2000))
	}
	if took > 20*time.Second {
		t.Fatalf("the run took %s: the absurd Retry-After was not capped", took)
	}
	if code, p := runOnce(t, cfg); code != 0 {
		t.Fatalf("the run after the absurd wait exited %d; stderr:\n%s", code, tail(p.stderr.String(), 2000))
	}
	o.assertMirrored("airtable", "devrev")
	o.assertNoDuplicates("devrev")
}

// TestHungRequestsAndCutBodies: a hung listing times out at the configured timeout and a
// listing cut mid-JSON or malformed is never read as short or empty: the runs block,
// nothing is removed from the target, no source group is tombstoned.
func TestHungRequestsAndCutBodies(t *testing.T) {
	t.Parallel()
	o, cfg := twoSystemOrg(t, map[string]map[string]any{"airtable": {"timeout": "1s", "max_attempts": 2}}, nil)
	if code, p := runOnce(t, cfg); code != 0 {
		t.Fatalf("first run exited %d; stderr:\n%s", code, tail(p.stderr.String(), 2000))
	}
	o.assertMirrored("airtable", "devrev")
	base := effectsOf(o.sim("devrev"))

	faults := []struct {
		name string
		arm  func()
	}{
		{"hung", func() { o.sim("airtable").Faults().HangNext("", -1) }},
		{"truncated", func() { o.sim("airtable").Faults().TruncateNext("", -1) }},
		{"malformed", func() { o.sim("airtable").Faults().MalformedNext("", -1) }},
		// Only the member listings of groups are cut: the group list is whole.
		{"truncated_group", func() { o.sim("airtable").Faults().TruncateNext(airtablesim.RouteGroup, -1) }},
	}
	for _, f := range faults {
		f.arm()
		start := time.Now()
		code, p := runOnce(t, cfg)
		took := time.Since(start)
		o.sim("airtable").Faults().Clear()
		if code == 0 {
			t.Fatalf("%s: a run over a broken source listing succeeded", f.name)
		}
		if f.name == "hung" {
			// Two attempts of one second each, plus backoff: far below a default 30 s timeout.
			if took > 12*time.Second {
				t.Fatalf("hung: the run took %s with a 1 s timeout", took)
			}
			if !strings.Contains(p.stderr.String(), "timeout") && !strings.Contains(p.stderr.String(), "deadline") {
				t.Fatalf("hung: the logs do not say the request timed out:\n%s", tail(p.stderr.String(), 2000))
			}
		}
		if got := effectsOf(o.sim("devrev")); got != base {
			t.Fatalf("%s: the target changed under a broken source: %s → %s", f.name, base, got)
		}
		if n := o.queryInt(`SELECT count(*) FROM groups WHERE system = 'airtable' AND deleted_at IS NOT NULL`); n != 0 {
			t.Fatalf("%s: %d source groups tombstoned from a broken listing", f.name, n)
		}
		if n := o.queryInt(`SELECT count(*) FROM memberships WHERE system = 'airtable' AND deleted_at IS NOT NULL`); n != 0 {
			t.Fatalf("%s: %d source memberships tombstoned from a broken listing", f.name, n)
		}
	}
	if code, p := runOnce(t, cfg); code != 0 {
		t.Fatalf("run after the faults exited %d; stderr:\n%s", code, tail(p.stderr.String(), 2000))
	}
	if got := effectsOf(o.sim("devrev")); got != base {
		t.Fatalf("the target changed after recovery though the source did not: %s → %s", base, got)
	}
}

// TestUnauthorizedIsNotHammered: with a wrong token on every call for several runs, each
// run sends a handful of requests (no retries on 401), fails, says so, and never logs
// the token.
func TestUnauthorizedIsNotHammered(t *testing.T) {
	t.Parallel()
	const badToken = "wrong-token-d41d8cd98f00b204e980"
	o, cfg := twoSystemOrg(t, map[string]map[string]any{"devrev": {"token": badToken}}, nil)
	var perRun []int
	for i := range 3 {
		before := o.sim("devrev").Counter().Total()
		code, p := runOnce(t, cfg)
		if code == 0 {
			t.Fatalf("run %d with a wrong target token succeeded", i)
		}
		logs := p.stderr.String() + p.stdout.String()
		if strings.Contains(logs, badToken) {
			t.Fatalf("run %d logged the token", i)
		}
		if !strings.Contains(strings.ToLower(logs), "unauthorized") && !strings.Contains(logs, "401") {
			t.Fatalf("run %d does not report the credential problem:\n%s", i, tail(logs, 2000))
		}
		perRun = append(perRun, o.sim("devrev").Counter().Total()-before)
	}
	for i, n := range perRun {
		// One listing per kind the run needs at most; a retry loop would show tens.
		if n > 3 {
			t.Fatalf("run %d sent %d requests with a rejected token (per run: %v)", i, n, perRun)
		}
	}
	if n := o.queryInt(`SELECT count(*) FROM runs WHERE status = 'failed' AND error <> '' AND position($1 in error) = 0`, badToken); n < 3 {
		t.Fatalf("only %d failed runs record the error (without the token), want 3", n)
	}
	if n := o.queryInt(`SELECT count(*) FROM changes WHERE position($1 in coalesce(last_error, '')) > 0`, badToken); n != 0 {
		t.Fatalf("%d changes hold the token in their error", n)
	}
}
