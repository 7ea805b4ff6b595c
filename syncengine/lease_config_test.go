package syncengine_test

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/groupsync/groupsync/state"
	"github.com/groupsync/groupsync/syncengine"
)

// leaseProbe reads, when the run first reports progress, how long the flow's lease has
// left: the TTL the engine acquired (or last renewed) it with, less a few milliseconds.
type leaseProbe struct {
	e    *env
	once sync.Once
	left time.Duration
	err  error
}

func (p *leaseProbe) Pulled(context.Context, string, string, int, int) {
	p.once.Do(func() {
		var secs float64
		p.err = p.e.store.Pool().QueryRow(p.e.t.Context(),
			`SELECT extract(epoch FROM expires_at - now()) FROM leases WHERE flow = 'f'`).Scan(&secs)
		p.left = time.Duration(secs * float64(time.Second))
	})
}

func (p *leaseProbe) Pushed(context.Context, string, int) {}

// The engine takes its lease TTL from the lease.ttl key when no Options.LeaseTTL is given.
func TestEngineUsesLeaseTTLFromConfig(t *testing.T) {
	t.Parallel()
	e, _, _ := pairEnv(t, defaultFlow("airtable", "devrev"), 3, 1, 2)
	e.cfg.Lease.TTL = 17 * time.Second
	probe := &leaseProbe{e: e}
	eng, err := syncengine.New(syncengine.Options{Store: e.store, Config: e.cfg, Connectors: e.conns, Progress: probe})
	if err != nil {
		t.Fatal(err)
	}
	res, err := eng.RunFlow(t.Context(), "f", syncengine.RunOptions{Trigger: syncengine.TriggerOnce})
	if err != nil {
		t.Fatal(err)
	}
	e.mustStatus(res, state.RunSucceeded)
	if probe.err != nil {
		t.Fatal(probe.err)
	}
	if probe.left <= 10*time.Second || probe.left > 17*time.Second {
		t.Fatalf("lease had %v left during the run, want just under lease.ttl (17s; the default is 2m)", probe.left)
	}
}
