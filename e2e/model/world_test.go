package model

import (
	"context"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/groupsync/groupsync/config"
	"github.com/groupsync/groupsync/connectors"
	"github.com/groupsync/groupsync/connectors/registry"
	"github.com/groupsync/groupsync/connectors/simkit"
	"github.com/groupsync/groupsync/connectors/simorg"
	"github.com/groupsync/groupsync/state"
	"github.com/groupsync/groupsync/state/statetest"
	"github.com/groupsync/groupsync/syncengine"
)

// world is the simulators, the engine and the reference model of one seed.
type world struct {
	t     *testing.T
	seed  uint64
	rng   *rand.Rand
	org   *simorg.Org
	conns map[string]connectors.Connector
	store *state.Store
	eng   *syncengine.Engine
	// writes counts the write requests the targets' simulators accepted.
	writes atomic.Int64
	m      *model
	// touched are the source groups changed in the current churn step.
	touched map[*sgroup]bool
	// order is the order the flows run in (drawn per seed: who links a contested name first
	// depends on it).
	order []string
}

// The systems: two Airtable sources, two targets.
var specs = []simorg.Spec{
	{Name: "at", Kind: connectors.KindAirtable},
	{Name: "at2", Kind: connectors.KindAirtable},
	{Name: "scm", Kind: connectors.KindSelfCommunity},
	{Name: "dvt", Kind: connectors.KindDevRev},
}

var targetNames = []string{"scm", "dvt"}

func newWorld(t *testing.T, seed uint64) *world {
	org, err := simorg.Start(specs...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(org.Close)
	w := &world{t: t, seed: seed, rng: rand.New(rand.NewPCG(seed, 7)), org: org, order: []string{"alpha", "beta"}}
	if w.rng.IntN(2) == 0 {
		w.order = []string{"beta", "alpha"}
	}
	w.m = newModel(w.rng)
	w.seedSims()
	w.conns = w.openConnectors()
	cfg := &config.Config{Systems: map[string]config.System{}, Flows: map[string]config.Flow{}}
	if w.m.rereadEveryRun {
		cfg.Accounts.MaxAge = time.Nanosecond
	}
	for name, s := range org.Systems {
		cfg.Systems[name] = config.System{Kind: s.Kind, BaseURL: s.Config.BaseURL}
	}
	for _, f := range w.m.flows {
		cfg.Flows[f.name] = f.config()
	}
	w.store = statetest.Store(t)
	w.eng, err = syncengine.New(syncengine.Options{Store: w.store, Config: cfg, Connectors: w.conns, Holder: "model"})
	if err != nil {
		t.Fatal(err)
	}
	w.loadSourceIDs()
	return w
}

// seedSims gives every system the same people, and each source its groups.
func (w *world) seedSims() {
	for _, n := range targetNames {
		w.org.Systems[n].Sim.Seed(simkit.Tenant{People: w.m.people})
		w.org.Systems[n].Sim.Faults().Observe(func(method, path string, status int) {
			// Writes that landed: a refused write changes nothing (checkChanges sees it).
			if isWrite(method, path) && status < 400 {
				w.writes.Add(1)
			}
		})
	}
	for _, f := range w.m.flows {
		w.org.Systems[f.source].Sim.Seed(f.tenant(w.m.people))
	}
}

// openConnectors opens every system with a rate limit the simulators do not need and a
// sleep that returns at once, so retries cost no wall time.
func (w *world) openConnectors() map[string]connectors.Connector {
	out := map[string]connectors.Connector{}
	noSleep := func(ctx context.Context, _ time.Duration) error { return ctx.Err() }
	for name, s := range w.org.Systems {
		cfg := s.Config
		cfg.MaxAttempts, cfg.RateLimit, cfg.Burst = 2, 10000, 1000
		c, err := registry.Open(cfg, connectors.Deps{HTTPClient: s.Server.Client(),
			Logger: slog.New(slog.DiscardHandler), Sleep: noSleep})
		if err != nil {
			w.t.Fatal(err)
		}
		out[name] = c
	}
	return out
}

// loadSourceIDs learns the ids the source simulators gave the seeded groups and accounts.
func (w *world) loadSourceIDs() {
	ctx := w.t.Context()
	for _, f := range w.m.flows {
		byName := map[string]string{}
		for _, g := range w.org.Systems[f.source].Sim.Snapshot() {
			byName[g.Name] = g.ID
		}
		for _, g := range f.seeded {
			g.id = byName[g.name]
			f.groups[g.id] = g
		}
		f.seeded = nil
		f.accountIDs = map[string]string{}
		_, err := w.conns[f.source].ListAccounts(ctx, nil, func(as []connectors.Account) error {
			for _, a := range as {
				f.accountIDs[connectors.NormalizeEmail(a.Email)] = a.ID
			}
			return nil
		})
		if err != nil {
			w.t.Fatalf("seed %d: list %s accounts: %v", w.seed, f.source, err)
		}
	}
}

// isWrite tells writes from reads across the APIs (DevRev lists and gets by POST).
func isWrite(method, path string) bool {
	if method == "GET" {
		return false
	}
	return !(strings.Contains(path, ".list") || strings.Contains(path, ".get") || strings.Contains(path, "search"))
}

func (w *world) logf(format string, args ...any) {
	w.t.Helper()
	w.t.Logf("seed %d: "+format, append([]any{w.seed}, args...)...)
}

// errorf reports a failed check with the command that reproduces it.
func (w *world) errorf(step int, format string, args ...any) {
	w.t.Helper()
	w.t.Errorf("seed %d step %d: %s\n(reproduce: go test ./e2e/model -run TestModel -args -seed=%d)",
		w.seed, step, fmt.Sprintf(format, args...), w.seed)
}

func (w *world) policies() string {
	var b strings.Builder
	for _, f := range w.m.flows {
		fmt.Fprintf(&b, "%s: delete_groups=%s membership=%s; ", f.name, f.delete, f.membership)
	}
	return fmt.Sprintf("%sorder %s; accounts re-read every run: %v", b.String(), strings.Join(w.order, ","), w.m.rereadEveryRun)
}
