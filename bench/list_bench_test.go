package bench

import (
	"context"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/groupsync/groupsync/connectors"
	"github.com/groupsync/groupsync/connectors/airtable"
	"github.com/groupsync/groupsync/connectors/simkit"
	"github.com/groupsync/groupsync/connectors/simorg"
	"github.com/groupsync/groupsync/state"
	"github.com/groupsync/groupsync/state/statetest"
	"github.com/groupsync/groupsync/syncengine"
)

// listCase is one kind of system whose groups, members and accounts are pulled through
// 150 ms answers under its rate limit (the limits of pushCases).
type listCase struct {
	pushCase
	people int
}

// listCases are sized for 10–20 s of member listings at each kind's limit, long enough for
// the initial burst to weigh little: Airtable reads one group a request (members inline),
// the others list each group's members (one page each here).
var listCases = []listCase{
	{pushCase{connectors.KindAirtable, airtable.PublishedRateLimit, airtable.PublishedRateLimit, airtable.RateLimitPenalty, true,
		500, 5, 150 * time.Millisecond}, 200},
	{pushCase{connectors.KindDevRev, 10, 10, 0, false, 200, 5, 150 * time.Millisecond}, 50},
	{pushCase{connectors.KindSelfCommunity, 5, 5, 0, false, 80, 5, 150 * time.Millisecond}, 30},
	{pushCase{connectors.KindSocialcast, 5, 5, 0, false, 80, 5, 150 * time.Millisecond}, 30},
}

// BenchmarkListRateWithLatency pulls a tenant from each kind of system (as a flow's source,
// in a dry run: pull and plan, nothing pushed) through 150 ms answers, and reports the
// request rate achieved from its first request to its last against the allowed one
// (issue 13 item 3: >= 0.9) and the 429s met.
//
//	go test -run '^$' -bench ListRateWithLatency -benchtime 1x ./bench/
func BenchmarkListRateWithLatency(b *testing.B) {
	for _, lc := range listCases {
		b.Run(string(lc.kind), func(b *testing.B) {
			for range b.N {
				benchList(b, lc)
			}
		})
	}
}

func benchList(b *testing.B, lc listCase) {
	ctx := context.WithoutCancel(b.Context())
	b.StopTimer()
	other := connectors.KindSelfCommunity
	if lc.kind == connectors.KindSelfCommunity {
		other = connectors.KindDevRev
	}
	org, err := simorg.Start(simorg.Spec{Name: "listed", Kind: lc.kind}, simorg.Spec{Name: "other", Kind: other})
	if err != nil {
		b.Fatal(err)
	}
	defer org.Close()
	tn := simkit.Generate(simkit.GenOptions{Groups: lc.groups, People: lc.people, MembersPerGroup: lc.members, Seed: 13})
	listed := org.Systems["listed"]
	listed.Sim.Seed(tn)
	org.Systems["other"].Sim.Seed(simkit.Tenant{People: tn.People})
	rec := &recorder{next: listed.Sim}
	front := httptest.NewServer(rec)
	defer front.Close()
	listed.Sim.Faults().Limit(lc.rate, lc.burst, lc.lockout)
	listed.Sim.Faults().Latency(lc.latency)

	st := statetest.StoreWithOptions(b, state.Options{MaxConns: 4})
	eng := measuredEngine(b, org, st, "listed", "other", "listed", front.URL, lc.kind)
	b.StartTimer()
	res, err := eng.RunFlow(ctx, "f", syncengine.RunOptions{Trigger: syncengine.TriggerOnce, DryRun: true})
	b.StopTimer()
	if err != nil {
		b.Fatal(err)
	}
	if res.Status != state.RunDryRun {
		b.Fatalf("%s: run %s: %v", lc.kind, res.Status, res.Err)
	}
	reportListRate(b, lc, rec)
}

// listsMembers tells a kind's member-listing requests (for Airtable, the group reads that
// carry the members) from its other requests.
func listsMembers(kind connectors.Kind, h reqHit) bool {
	switch kind {
	case connectors.KindAirtable:
		return h.method == http.MethodGet && strings.HasPrefix(h.path, "/v0/meta/groups/")
	case connectors.KindDevRev:
		return strings.HasSuffix(h.path, "/groups.members.list")
	case connectors.KindSelfCommunity:
		return h.method == http.MethodGet && strings.HasPrefix(h.path, "/api/v2/group/") && strings.HasSuffix(h.path, "/subscribe/")
	case connectors.KindSocialcast:
		return strings.HasSuffix(h.path, "/memberships.json")
	}
	return false
}

// reportListRate reports the rate of the requests the listed system received from its first
// member listing to its last (every request in that span counts against the limit, as in
// the push benchmarks) against its limit. The group listing before and the account
// lookups after are other steps of the pull, with a mirror commit between them.
func reportListRate(b *testing.B, lc listCase, rec *recorder) {
	rec.mu.Lock()
	hits := slices.Clone(rec.hits)
	rec.mu.Unlock()
	first, last, n429 := -1, -1, 0
	for i, h := range hits {
		if h.status == http.StatusTooManyRequests {
			n429++
		}
		if listsMembers(lc.kind, h) {
			if first < 0 {
				first = i
			}
			last = i
		}
	}
	if first < 0 || last == first {
		b.Fatalf("%s: fewer than two member listings among %d requests", lc.kind, len(hits))
	}
	span := hits[last].at.Sub(hits[first].at)
	achieved := float64(last-first) / span.Seconds()
	b.ReportMetric(achieved, "req/s")
	b.ReportMetric(achieved/lc.rate, "achieved/allowed")
	b.ReportMetric(float64(n429), "429s")
	b.ReportMetric(float64(last-first+1), "listing_requests")
	b.Logf("%s: %d requests in %s while listing members (%.1f/s of %.0f allowed); %d requests in all, %d 429s", lc.kind,
		last-first+1, span.Round(time.Millisecond), achieved, lc.rate, len(hits), n429)
	if lc.known && n429 > 0 {
		b.Errorf("%s: %d 429s against a known limit", lc.kind, n429)
	}
}
