package main

import (
	"context"
	"maps"
	"slices"

	"github.com/groupsync/groupsync/config"
	"github.com/groupsync/groupsync/connectors"
	"github.com/groupsync/groupsync/connectors/sciminbound"
	"github.com/groupsync/groupsync/scimface"
)

// inboundSystems are the configured scim_inbound systems, with the flows they feed.
func inboundSystems(cfg *config.Config) (clients []scimface.Client, systems []scimface.Inbound) {
	for _, name := range slices.Sorted(maps.Keys(cfg.Systems)) {
		s := cfg.Systems[name]
		if s.Kind != connectors.KindSCIMInbound {
			continue
		}
		rate, burst := s.RateLimit, s.Burst
		if rate == 0 {
			rate = config.DefaultInboundRateLimit
		}
		if burst == 0 {
			burst = config.DefaultInboundBurst
		}
		clients = append(clients, scimface.Client{System: name, Token: s.Token.Reveal(), Rate: rate, Burst: burst})
		opts, _ := sciminbound.ParseOptions(s.Options) // validated with the configuration
		in := scimface.Inbound{System: name, Debounce: opts.Debounce, MaxDelay: opts.MaxDelay}
		for _, flow := range slices.Sorted(maps.Keys(cfg.Flows)) {
			if cfg.Flows[flow].Source == name {
				in.Flows = append(in.Flows, flow)
			}
		}
		systems = append(systems, in)
	}
	return clients, systems
}

// startSCIMFace serves the SCIM face on scim.listen and runs the inbound triggers, when a
// scim_inbound system is configured; stop ends both, letting open requests finish.
func startSCIMFace(ctx context.Context, rt *engineRuntime) (stop func(), err error) {
	clients, systems := inboundSystems(rt.cfg)
	if len(systems) == 0 {
		return func() {}, nil
	}
	log := rt.logger.With("component", "scim")
	tctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() { defer close(done); scimface.RunTriggers(tctx, rt.store, systems, log) }()
	stopTriggers := func() { cancel(); <-done }
	if rt.cfg.SCIM.Listen == "" {
		log.Info("scim face disabled (scim.listen is empty): this replica only triggers flows on what others receive")
		return stopTriggers, nil
	}
	face, err := scimface.New(scimface.Options{Store: rt.store, Clients: clients, MaxBodyBytes: rt.cfg.SCIM.MaxBodyBytes, Logger: log})
	if err != nil {
		stopTriggers()
		return nil, err
	}
	srv, _, err := scimface.Listen(rt.cfg.SCIM.Listen, face, log)
	if err != nil {
		stopTriggers()
		return nil, err
	}
	return func() {
		sctx, c := context.WithTimeout(context.WithoutCancel(ctx), shutdownGrace)
		defer c()
		if err := srv.Shutdown(sctx); err != nil {
			log.Warn("stopping the scim face", "error", err)
		}
		stopTriggers()
	}, nil
}
