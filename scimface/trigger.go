package scimface

import (
	"context"
	"errors"
	"log/slog"
	"time"

	"github.com/groupsync/groupsync/state"
)

// Inbound is one scim_inbound system as the trigger sees it.
type Inbound struct {
	System string
	// Flows are the flows whose source it is.
	Flows []string
	// Debounce and MaxDelay: see sciminbound.Options.
	Debounce, MaxDelay time.Duration
}

// TriggerPoll is how often the daemon looks for inbound writes due to trigger their flows.
const TriggerPoll = time.Second

// TriggerOnce requests a run of the flows of every system whose writes are due (quiet for
// its debounce, or pending longer than its max delay). Replicas may call it at once: each
// system's pending writes are claimed by one of them.
func TriggerOnce(ctx context.Context, store *state.Store, systems []Inbound, logger *slog.Logger) error {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	var errs []error
	for _, in := range systems {
		due, err := store.ClaimInboundTriggers(ctx, []string{in.System}, in.Debounce, in.MaxDelay)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		if len(due) == 0 {
			continue
		}
		for _, flow := range in.Flows {
			id, err := store.RequestRun(ctx, flow, "scim:"+in.System)
			if err != nil {
				errs = append(errs, err)
				continue
			}
			logger.Info("scim_inbound writes trigger a run", "system", in.System, "flow", flow, "request", id)
		}
	}
	return errors.Join(errs...)
}

// RunTriggers calls TriggerOnce every TriggerPoll until ctx ends, logging what fails.
func RunTriggers(ctx context.Context, store *state.Store, systems []Inbound, logger *slog.Logger) {
	t := time.NewTicker(TriggerPoll)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			if err := TriggerOnce(ctx, store, systems, logger); err != nil && ctx.Err() == nil {
				logger.Warn("scim_inbound trigger: the mirror failed; writes stay pending and trigger later", "error", err)
			}
		}
	}
}
