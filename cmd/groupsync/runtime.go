package main

import (
	"context"
	"fmt"
	"log/slog"
	"math"
	"net/http"
	"slices"

	"github.com/groupsync/groupsync/config"
	"github.com/groupsync/groupsync/connectors"
	"github.com/groupsync/groupsync/connectors/registry"
	"github.com/groupsync/groupsync/state"
	"github.com/groupsync/groupsync/syncengine"
)

// runtime is what the engine commands share: configuration, logger, the migrated mirror,
// the opened connectors and the engine over them.
type engineRuntime struct {
	cfg    *config.Config
	logger *slog.Logger
	store  *state.Store
	conns  map[string]connectors.Connector
	engine *syncengine.Engine
}

// runtimeHooks let a command plug observers into the connectors and the engine.
type runtimeHooks struct {
	requests connectors.RequestObserver
	observer syncengine.Observer
	progress syncengine.Progress
}

// openRuntime loads the configuration, opens and migrates the mirror (the engine always
// runs on the current schema), opens every configured system and builds the engine.
func (a *app) openRuntime(ctx context.Context, hooks runtimeHooks) (*engineRuntime, error) {
	cfg, logger, err := a.setup()
	if err != nil {
		return nil, err
	}
	store, err := state.Open(ctx, cfg.Database.URL.Reveal(), state.Options{
		Schema:         cfg.Database.Schema,
		MaxConns:       int32(min(cfg.Database.MaxConns, math.MaxInt32)),
		AcquireTimeout: cfg.Database.AcquireTimeout,
		Logger:         logger,
	})
	if err != nil {
		return nil, err
	}
	if applied, err := store.Migrate(ctx); err != nil {
		store.Close()
		return nil, fmt.Errorf("migrate schema %s: %w", cfg.Database.Schema, err)
	} else if len(applied) > 0 {
		logger.Info("migrations applied", "schema", cfg.Database.Schema, "versions", applied)
	}
	// One client for every system: a run that lost its lease sends nothing more.
	client := &http.Client{Transport: syncengine.FencedTransport(nil)}
	conns := map[string]connectors.Connector{}
	for name := range cfg.Systems {
		c, err := registry.Open(cfg.SystemConfig(name), connectors.Deps{
			HTTPClient: client,
			Logger:     logger.With("system", name),
			Observer:   hooks.requests,
			// Every replica and flow on a system draws from one budget in the mirror.
			Budgets: store.Budgets(),
			// scim_inbound systems read what their identity provider pushed from the mirror.
			Inbound: store.Inbound(),
		})
		if err != nil {
			store.Close()
			return nil, err
		}
		conns[name] = c
	}
	eng, err := syncengine.New(syncengine.Options{
		Store: store, Config: cfg, Connectors: conns, Logger: logger, LeaseTTL: cfg.Lease.TTL,
		Observer: hooks.observer, Progress: hooks.progress,
	})
	if err != nil {
		store.Close()
		return nil, err
	}
	return &engineRuntime{cfg: cfg, logger: logger, store: store, conns: conns, engine: eng}, nil
}

func (r *engineRuntime) Close() { r.store.Close() }

// selectFlows returns the named flows (all when none is named), refusing unknown names.
func (r *engineRuntime) selectFlows(names []string) ([]string, error) {
	all := r.engine.Flows()
	if len(names) == 0 {
		if len(all) == 0 {
			return nil, fmt.Errorf("no flows configured in %s", r.cfg.Path)
		}
		return all, nil
	}
	for _, n := range names {
		if !slices.Contains(all, n) {
			return nil, usageError("--flow %q: no such flow (configured: %v)", n, all)
		}
	}
	return names, nil
}
