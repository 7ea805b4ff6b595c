// Package simorg starts simulators of the four systems on local ports and describes them as
// configured systems, so the engine's end-to-end tests, the demo and the benchmarks run the
// real connectors against one simulated organisation.
package simorg

import (
	"fmt"
	"log/slog"
	"maps"
	"net/http"
	"net/http/httptest"
	"slices"
	"time"

	"github.com/groupsync/groupsync/connectors"
	"github.com/groupsync/groupsync/connectors/airtable"
	"github.com/groupsync/groupsync/connectors/airtable/airtablesim"
	"github.com/groupsync/groupsync/connectors/devrev/devrevsim"
	"github.com/groupsync/groupsync/connectors/registry"
	"github.com/groupsync/groupsync/connectors/selfcommunity/selfcommunitysim"
	"github.com/groupsync/groupsync/connectors/simkit"
	"github.com/groupsync/groupsync/connectors/socialcast/socialcastsim"
	"github.com/groupsync/groupsync/secret"
)

// System is one running simulator and the configuration that reaches it.
type System struct {
	Name   string
	Kind   connectors.Kind
	Sim    simkit.Sim
	Server *httptest.Server
	// Config is the connector configuration for this simulator (credentials included).
	Config connectors.SystemConfig
}

// Org is a set of running simulators.
type Org struct {
	Systems map[string]*System
}

// Spec names a system to start.
type Spec struct {
	Name string
	Kind connectors.Kind
}

// Start starts one simulator per spec on 127.0.0.1 with a fresh, empty state.
func Start(specs ...Spec) (*Org, error) {
	o := &Org{Systems: map[string]*System{}}
	for _, sp := range specs {
		s, err := start(sp)
		if err != nil {
			o.Close()
			return nil, err
		}
		o.Systems[sp.Name] = s
	}
	return o, nil
}

func start(sp Spec) (*System, error) {
	s := &System{Name: sp.Name, Kind: sp.Kind}
	token := "sim-token-" + sp.Name
	cfg := connectors.SystemConfig{Name: sp.Name, Kind: sp.Kind, Token: secret.New(token),
		// Simulators answer at once; retries need not wait long.
		Timeout: 10 * time.Second, MaxRetryWait: time.Minute}
	switch sp.Kind {
	case connectors.KindDevRev:
		s.Sim = devrevsim.New(devrevsim.Options{Token: token})
	case connectors.KindAirtable:
		at := airtablesim.New(airtablesim.Options{Token: token})
		s.Sim = at
		cfg.Options = map[string]string{airtable.OptionEnterpriseAccountID: at.EnterpriseID()}
	case connectors.KindSelfCommunity:
		s.Sim = selfcommunitysim.New(selfcommunitysim.Options{Token: token})
	case connectors.KindSocialcast:
		s.Sim = socialcastsim.New(socialcastsim.Options{Token: token})
	default:
		return nil, fmt.Errorf("simorg: unknown kind %q", sp.Kind)
	}
	s.Server = httptest.NewServer(s.Sim)
	cfg.BaseURL = s.Server.URL
	if sp.Kind == connectors.KindAirtable {
		cfg.Options[airtable.OptionSCIMURL] = s.Server.URL + airtablesim.SCIMPrefix
	}
	s.Config = cfg
	return s, nil
}

// Close stops every simulator.
func (o *Org) Close() {
	for _, s := range o.Systems {
		s.Server.Close()
	}
}

// Names lists the systems, sorted.
func (o *Org) Names() []string { return slices.Sorted(maps.Keys(o.Systems)) }

// Open opens a connector for every system through the registry, with the simulator's own
// HTTP client. mod, if set, may adjust each configuration first.
func (o *Org) Open(logger *slog.Logger, observer connectors.RequestObserver, mod func(*connectors.SystemConfig)) (map[string]connectors.Connector, error) {
	return o.OpenShared(logger, observer, nil, mod)
}

// OpenShared is Open with every client drawing from budgets (a replica's shared API
// budgets, state.Store.Budgets); nil budgets keeps each client's limit its own.
func (o *Org) OpenShared(logger *slog.Logger, observer connectors.RequestObserver, budgets connectors.BudgetSource, mod func(*connectors.SystemConfig)) (map[string]connectors.Connector, error) {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	out := map[string]connectors.Connector{}
	for name, s := range o.Systems {
		cfg := s.Config
		cfg.Options = maps.Clone(cfg.Options)
		if mod != nil {
			mod(&cfg)
		}
		c, err := registry.Open(cfg, connectors.Deps{HTTPClient: s.Server.Client(), Logger: logger.With("system", name),
			Observer: observer, Budgets: budgets})
		if err != nil {
			return nil, err
		}
		out[name] = c
	}
	return out, nil
}

// Client returns an HTTP client for the simulators (they share one transport setup).
func (o *Org) Client(name string) *http.Client { return o.Systems[name].Server.Client() }
