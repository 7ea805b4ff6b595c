package bench

import (
	"context"
	"fmt"
	"maps"
	"net/http"
	"net/http/httptest"
	"os"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/groupsync/groupsync/config"
	"github.com/groupsync/groupsync/connectors"
	"github.com/groupsync/groupsync/connectors/airtable"
	"github.com/groupsync/groupsync/connectors/airtable/airtablesim"
	"github.com/groupsync/groupsync/connectors/registry"
	"github.com/groupsync/groupsync/connectors/simkit"
	"github.com/groupsync/groupsync/connectors/simorg"
	"github.com/groupsync/groupsync/state"
	"github.com/groupsync/groupsync/state/statetest"
	"github.com/groupsync/groupsync/syncengine"
)

// recorder sits in front of a simulator and notes when each request arrived.
type recorder struct {
	next http.Handler
	mu   sync.Mutex
	hits []reqHit
}

type reqHit struct {
	at     time.Time
	write  bool
	status int
	method string
	path   string
}

type statusWriter struct {
	http.ResponseWriter
	status int
}

func (w *statusWriter) WriteHeader(s int) { w.status = s; w.ResponseWriter.WriteHeader(s) }

func (r *recorder) ServeHTTP(w http.ResponseWriter, req *http.Request) {
	at := time.Now()
	sw := &statusWriter{ResponseWriter: w, status: http.StatusOK}
	r.next.ServeHTTP(sw, req)
	write := req.Method != http.MethodGet && !isReadPost(req.URL.Path)
	r.mu.Lock()
	r.hits = append(r.hits, reqHit{at: at, write: write, status: sw.status, method: req.Method, path: req.URL.Path})
	r.mu.Unlock()
}

// isReadPost tells DevRev's POST reads (…list, …get) from its writes.
func isReadPost(path string) bool {
	for _, suffix := range []string{".list", ".get"} {
		if len(path) >= len(suffix) && path[len(path)-len(suffix):] == suffix {
			return true
		}
	}
	return false
}

// pushCase is one target kind under its rate limit.
type pushCase struct {
	kind connectors.Kind
	// rate and burst are what the simulator enforces: the published limit where there is
	// one (Airtable), else the connector's own default (the limit it assumes).
	rate    float64
	burst   int
	lockout time.Duration
	// known says whether the limit is published/announced, so zero 429s is required.
	known           bool
	groups, members int
	// latency is added to every answer of the target (real APIs take 100–300 ms).
	latency time.Duration
}

// Only Airtable publishes a per-second limit (50/s per token, 30 s lockout). DevRev
// announces a per-5-minute quota through X-Ratelimit-* without publishing the number, and
// SelfCommunity and Socialcast document none: for them the simulator enforces exactly the
// rate the connector assumes, which shows the connector uses all of it, and that with no
// margin an occasional 429 from arrival jitter is met (and honoured).
var pushCases = []pushCase{
	{connectors.KindAirtable, airtable.PublishedRateLimit, airtable.PublishedRateLimit, airtable.RateLimitPenalty, true, 100, 3, 0},
	{connectors.KindDevRev, 10, 10, 0, false, 10, 9, 0},
	{connectors.KindSelfCommunity, 5, 5, 0, false, 20, 4, 0},
	{connectors.KindSocialcast, 5, 5, 0, false, 25, 0, 0},
}

// BenchmarkPushRate pushes a fresh tenant into each kind of target whose simulator enforces
// the rate limit, and reports the request rate achieved while pushing against the allowed
// one (target >= 0.9) and the 429s met (target 0 where the limit is known).
//
//	go test -run '^$' -bench PushRate ./bench/ -benchtime 1x
func BenchmarkPushRate(b *testing.B) {
	runPushCases(b, pushCases)
}

// latencyCases push member additions through 150 ms answers. Airtable takes 100 members a
// call, so it adds 10,000; DevRev and SelfCommunity take one a call (at 10 and 5/s, 10,000
// would take 17 and 33 minutes), so they add 1,000 and 500: enough calls for the rate to
// settle. Socialcast writes no members.
var latencyCases = []pushCase{
	{connectors.KindAirtable, airtable.PublishedRateLimit, airtable.PublishedRateLimit, airtable.RateLimitPenalty, true, 100, 100,
		150 * time.Millisecond},
	{connectors.KindDevRev, 10, 10, 0, false, 20, 50, 150 * time.Millisecond},
	{connectors.KindSelfCommunity, 5, 5, 0, false, 10, 50, 150 * time.Millisecond},
}

// BenchmarkPushRateWithLatency is BenchmarkPushRate with 150 ms per answer: one call at a
// time would reach 6.7 calls/s whatever the limit, so reaching >= 0.9 of it takes calls in
// flight together.
//
//	go test -run '^$' -bench PushRateWithLatency ./bench/ -benchtime 1x
func BenchmarkPushRateWithLatency(b *testing.B) {
	runPushCases(b, latencyCases)
}

func runPushCases(b *testing.B, cases []pushCase) {
	for _, pc := range cases {
		b.Run(string(pc.kind), func(b *testing.B) {
			for range b.N {
				benchPush(b, pc)
			}
		})
	}
}

func benchPush(b *testing.B, pc pushCase) {
	ctx := context.WithoutCancel(b.Context())
	b.StopTimer()
	srcKind := connectors.KindDevRev
	if pc.kind == connectors.KindDevRev {
		srcKind = connectors.KindAirtable
	}
	org, err := simorg.Start(simorg.Spec{Name: "source", Kind: srcKind}, simorg.Spec{Name: "target", Kind: pc.kind})
	if err != nil {
		b.Fatal(err)
	}
	defer org.Close()
	tn := simkit.Generate(simkit.GenOptions{Groups: pc.groups, People: 200, MembersPerGroup: pc.members, Seed: 11})
	org.Systems["source"].Sim.Seed(tn)
	org.Systems["target"].Sim.Seed(simkit.Tenant{People: tn.People})
	tgt := org.Systems["target"]
	rec := &recorder{next: tgt.Sim}
	front := httptest.NewServer(rec)
	defer front.Close()
	tgt.Sim.Faults().Limit(pc.rate, pc.burst, pc.lockout)
	if pc.latency > 0 {
		tgt.Sim.Faults().Latency(pc.latency)
	}

	st := statetest.StoreWithOptions(b, state.Options{MaxConns: 4})
	eng := measuredEngine(b, org, st, "source", "target", "target", front.URL, pc.kind)
	b.StartTimer()
	res, err := eng.RunFlow(ctx, "f", syncengine.RunOptions{Trigger: syncengine.TriggerOnce})
	b.StopTimer()
	if err != nil {
		b.Fatal(err)
	}
	if res.Status != state.RunSucceeded {
		b.Fatalf("%s: run %s: %v", pc.kind, res.Status, res.Err)
	}
	rec.mu.Lock()
	hits := slices.Clone(rec.hits)
	rec.mu.Unlock()
	first, last := -1, -1
	n429 := 0
	for i, h := range hits {
		if h.status == http.StatusTooManyRequests {
			n429++
		}
		if h.write {
			if first < 0 {
				first = i
			}
			last = i
		}
	}
	if first < 0 || last == first {
		b.Fatalf("%s: fewer than two writes reached the target", pc.kind)
	}
	// Requests of any kind count against the limit: the rate is all requests from the first
	// write to the last, over that span.
	span := hits[last].at.Sub(hits[first].at)
	achieved := float64(last-first) / span.Seconds()
	b.ReportMetric(achieved, "req/s")
	b.ReportMetric(pc.rate, "allowed_req/s")
	b.ReportMetric(achieved/pc.rate, "achieved/allowed")
	b.ReportMetric(float64(n429), "429s")
	b.ReportMetric(float64(last-first+1), "push_requests")
	b.Logf("%s: %d requests in %s while pushing (%.1f/s of %.0f allowed), %d 429s; summary %s",
		pc.kind, last-first+1, span.Round(time.Millisecond), achieved, pc.rate, n429, summary(res))
	if pc.known && n429 > 0 {
		b.Errorf("%s: %d 429s against a known limit", pc.kind, n429)
	}
}

// measuredEngine builds the engine of a one-flow benchmark, source → target. The measured
// system, one of the two (reached through frontURL, a recorder in front of its simulator) runs at the
// connector's defaults, wired as the daemon wires it (cmd/groupsync/runtime.go): the fenced
// transport (one connection per request) and the shared API budget in the mirror, whose
// takes compete with the run's own writes for the pool. That is what is measured; the other
// system is unthrottled. mods adjust the flow's configuration before the engine is built.
func measuredEngine(b *testing.B, org *simorg.Org, st *state.Store, source, target, measured, frontURL string,
	kind connectors.Kind, mods ...func(*config.Config)) *syncengine.Engine {
	b.Helper()
	conns := map[string]connectors.Connector{}
	for name, s := range org.Systems {
		cfg := s.Config
		cfg.Options = maps.Clone(cfg.Options)
		var deps connectors.Deps
		if name != measured {
			cfg.RateLimit, cfg.Burst = 1e6, 1000
		} else {
			cfg.BaseURL = frontURL
			if kind == connectors.KindAirtable {
				cfg.Options[airtable.OptionSCIMURL] = frontURL + airtablesim.SCIMPrefix
			}
			deps = daemonDeps(st)
		}
		c, err := registry.Open(cfg, deps)
		if err != nil {
			b.Fatal(err)
		}
		conns[name] = c
	}
	cfg := &config.Config{Systems: map[string]config.System{}, Flows: map[string]config.Flow{"f": {
		Source: source, Targets: []string{target}, Schedule: "@every 1h", Scope: config.Scope{All: true},
		Membership: config.MembershipMirror, CreateGroups: true, DeleteGroups: config.DeleteNever,
		Limits:            config.Limits{MaxMemberRemovals: 50, MaxMemberRemovalsPercent: 10, MaxGroupDeletions: 5},
		MaxChangeAttempts: 3,
	}}}
	for name, s := range org.Systems {
		cfg.Systems[name] = config.System{Kind: s.Kind, BaseURL: s.Config.BaseURL}
	}
	for _, mod := range mods {
		mod(cfg)
	}
	eng, err := syncengine.New(syncengine.Options{Store: st, Config: cfg, Connectors: conns})
	if err != nil {
		b.Fatal(err)
	}
	return eng
}

// daemonDeps are the dependencies cmd/groupsync/runtime.go opens a connector with: the
// fenced transport and the shared API budget. GROUPSYNC_BENCH_LIMITER_ONLY=1 leaves both
// out, to tell the client limiter's own pace from what the budget's takes cost.
func daemonDeps(st *state.Store) connectors.Deps {
	if os.Getenv("GROUPSYNC_BENCH_LIMITER_ONLY") != "" {
		return connectors.Deps{}
	}
	return connectors.Deps{HTTPClient: &http.Client{Transport: syncengine.FencedTransport(nil)}, Budgets: st.Budgets()}
}

func summary(res *syncengine.Result) string {
	t := res.Targets["target"]
	if t == nil {
		return "no changes"
	}
	return fmt.Sprintf("created=%d added=%d skipped=%d failed=%d", t.Created, t.Added, t.Skipped, t.Failed)
}
