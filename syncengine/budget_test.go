package syncengine_test

import (
	"net/http"
	"os"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/groupsync/groupsync/config"
	"github.com/groupsync/groupsync/connectors"
	"github.com/groupsync/groupsync/connectors/simkit"
	"github.com/groupsync/groupsync/connectors/simorg"
	"github.com/groupsync/groupsync/state"
	"github.com/groupsync/groupsync/state/statetest"
	"github.com/groupsync/groupsync/syncengine"
)

// dstHits records when the shared target answered and with what status.
type dstHits struct {
	mu   sync.Mutex
	at   []time.Time
	n429 int
}

func (h *dstHits) observe(_, _ string, status int) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.at = append(h.at, time.Now())
	if status == http.StatusTooManyRequests {
		h.n429++
	}
}

// TestOneBudgetAcrossReplicasAndFlows: two replicas (two engines, each with its own pool,
// connectors and HTTP clients) run two flows at once into one DevRev target that allows
// 10 req/s (burst 10), each client configured at that same 10 req/s. Without a shared
// budget they would send 20 req/s between them; with the budget in Postgres the target
// sees no 429 and the pair still gets ≥ 0.9 × its limit.
func TestOneBudgetAcrossReplicasAndFlows(t *testing.T) {
	members := 40
	if v, err := strconv.Atoi(os.Getenv("GROUPSYNC_BUDGET_TEST_MEMBERS")); err == nil && v > 0 {
		members = v // a longer run for BENCHMARKS.md
	}
	org, err := simorg.Start(simorg.Spec{Name: "src-a", Kind: connectors.KindAirtable},
		simorg.Spec{Name: "src-b", Kind: connectors.KindSelfCommunity}, simorg.Spec{Name: "dst", Kind: connectors.KindDevRev})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(org.Close)
	ps := people(3 * members)
	for i, src := range []string{"src-a", "src-b"} {
		tn := simkit.Generate(simkit.GenOptions{Groups: 3, People: len(ps), MembersPerGroup: members, Seed: uint64(i + 5),
			NamePrefix: src + " "})
		tn.People = ps
		org.Systems[src].Sim.Seed(tn)
	}
	seedAccounts(org.Systems["dst"].Sim, ps)
	cfg := &config.Config{Systems: map[string]config.System{}, Flows: map[string]config.Flow{
		"flow-a": defaultFlow("src-a", "dst"), "flow-b": defaultFlow("src-b", "dst"),
	}}
	for name, s := range org.Systems {
		cfg.Systems[name] = config.System{Kind: s.Kind, BaseURL: s.Config.BaseURL}
	}
	const limit = 10
	hits := &dstHits{}
	dst := org.Systems["dst"].Sim.Faults()
	dst.Limit(limit, limit, 0)
	dst.Observe(hits.observe)

	engines := budgetReplicas(t, org, cfg, limit)

	var wg sync.WaitGroup
	results := map[string]*syncengine.Result{}
	var mu sync.Mutex
	for replica, flow := range map[string]string{"replica-a": "flow-a", "replica-b": "flow-b"} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			res, err := engines[replica].RunFlow(t.Context(), flow, syncengine.RunOptions{Trigger: syncengine.TriggerOnce})
			if err != nil {
				t.Errorf("%s: RunFlow(%s): %v", replica, flow, err)
				return
			}
			mu.Lock()
			results[flow] = res
			mu.Unlock()
		}()
	}
	wg.Wait()
	for flow, res := range results {
		if res.Status != state.RunSucceeded {
			t.Fatalf("%s: status %s (%v); targets %s", flow, res.Status, res.Err, describe(res))
		}
	}
	hits.mu.Lock()
	defer hits.mu.Unlock()
	n, span := len(hits.at), hits.at[len(hits.at)-1].Sub(hits.at[0])
	got := float64(n-1) / span.Seconds()
	t.Logf("dst: %d requests in %s = %.2f req/s (limit %d), %d × 429", n, span.Round(time.Millisecond), got, limit, hits.n429)
	if hits.n429 != 0 {
		t.Fatalf("the target answered %d requests with 429: replicas and flows exceeded its limit together", hits.n429)
	}
	if _, adds, _ := org.Systems["dst"].Sim.Effects().Totals(); adds != 2*3*members {
		t.Fatalf("%d members added, want %d", adds, 2*3*members)
	}
	if got < 0.9*limit {
		t.Fatalf("combined rate %.2f req/s, want ≥ %.1f (0.9 × the limit)", got, 0.9*limit)
	}
}

// budgetReplicas builds two engines on one mirror schema, each with its own pool and its own
// connectors drawing from that pool's shared budgets, dst's clients at limit req/s.
func budgetReplicas(t *testing.T, org *simorg.Org, cfg *config.Config, limit float64) map[string]*syncengine.Engine {
	t.Helper()
	var err error
	first := statetest.Store(t)
	engines := map[string]*syncengine.Engine{}
	for _, replica := range []string{"replica-a", "replica-b"} {
		store := first
		if replica != "replica-a" {
			store, err = state.Open(t.Context(), statetest.URL(), state.Options{Schema: first.Schema(), MaxConns: 4})
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(store.Close)
		}
		conns, err := org.OpenShared(nil, nil, store.Budgets(), func(c *connectors.SystemConfig) {
			if c.Name == "dst" {
				c.RateLimit, c.Burst = limit, 2
			}
		})
		if err != nil {
			t.Fatal(err)
		}
		eng, err := syncengine.New(syncengine.Options{Store: store, Config: cfg, Connectors: conns, Holder: replica})
		if err != nil {
			t.Fatal(err)
		}
		engines[replica] = eng
	}
	return engines
}
