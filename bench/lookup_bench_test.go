package bench

import (
	"context"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/groupsync/groupsync/config"
	"github.com/groupsync/groupsync/connectors"
	"github.com/groupsync/groupsync/connectors/selfcommunity/selfcommunitysim"
	"github.com/groupsync/groupsync/connectors/simkit"
	"github.com/groupsync/groupsync/connectors/simorg"
	"github.com/groupsync/groupsync/state"
	"github.com/groupsync/groupsync/state/statetest"
	"github.com/groupsync/groupsync/syncengine"
)

// BenchmarkRerunWithPeopleWithoutAccounts re-runs a settled flow, DevRev into SelfCommunity
// at the connector's default 5 req/s, where only half of the 200 people have a target account
// (75 of the groups' member emails have none): the re-run's account lookups and its length,
// with the misses remembered
// (accounts.lookup_miss_ttl, default 1h) and asked every run (a TTL of 1 ns, as before
// misses were remembered).
//
//	go test -run '^$' -bench RerunWithPeopleWithoutAccounts -benchtime 1x ./bench/
func BenchmarkRerunWithPeopleWithoutAccounts(b *testing.B) {
	for _, tc := range []struct {
		name string
		ttl  time.Duration
	}{{"remembered", config.DefaultLookupMissTTL}, {"asked-every-run", time.Nanosecond}} {
		b.Run(tc.name, func(b *testing.B) {
			for range b.N {
				benchRerunLookups(b, tc.ttl)
			}
		})
	}
}

func benchRerunLookups(b *testing.B, ttl time.Duration) {
	ctx := context.WithoutCancel(b.Context())
	b.StopTimer()
	org, err := simorg.Start(simorg.Spec{Name: "source", Kind: connectors.KindDevRev},
		simorg.Spec{Name: "target", Kind: connectors.KindSelfCommunity})
	if err != nil {
		b.Fatal(err)
	}
	defer org.Close()
	tn := simkit.Generate(simkit.GenOptions{Groups: 10, People: 200, MembersPerGroup: 20, Seed: 11})
	org.Systems["source"].Sim.Seed(tn)
	org.Systems["target"].Sim.Seed(simkit.Tenant{People: tn.People[:100]})
	tgt := org.Systems["target"]
	front := httptest.NewServer(&recorder{next: tgt.Sim})
	defer front.Close()
	tgt.Sim.Faults().Limit(5, 5, 0)
	st := statetest.StoreWithOptions(b, state.Options{MaxConns: 4})
	eng := measuredEngine(b, org, st, "source", "target", "target", front.URL, connectors.KindSelfCommunity,
		func(c *config.Config) { c.Accounts.LookupMissTTL = ttl })
	run := func() *syncengine.Result {
		res, err := eng.RunFlow(ctx, "f", syncengine.RunOptions{Trigger: syncengine.TriggerOnce})
		if err != nil || res.Status != state.RunSucceeded {
			b.Fatalf("run: %v %v", res, err)
		}
		return res
	}
	first := run()
	lookups := tgt.Sim.Counter().Count(selfcommunitysim.RouteAccountFind)
	start := time.Now()
	b.StartTimer()
	res := run()
	b.StopTimer()
	took := time.Since(start)
	again := tgt.Sim.Counter().Count(selfcommunitysim.RouteAccountFind) - lookups
	b.ReportMetric(float64(lookups), "first_run_lookups")
	b.ReportMetric(float64(again), "rerun_lookups")
	b.ReportMetric(took.Seconds(), "rerun_s")
	b.Logf("first run %s; re-run %s in %s with %d lookups", summary(first), summary(res), took.Round(time.Millisecond), again)
}
