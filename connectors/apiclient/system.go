package apiclient

import (
	"golang.org/x/time/rate"

	"github.com/groupsync/groupsync/connectors"
)

// Limits are a connector's defaults for the client-side rate limiter, taken from its API's
// published limit.
type Limits struct {
	RateLimit float64
	Burst     int
}

// ForSystem maps a configured system and the process's dependencies to a client Config:
// name, HTTP client, timeout, body cap, retries, logger, observer and sleep, with the
// connector's rate-limit defaults applied where the configuration leaves them zero. The
// connector adds what only it knows: BaseURL, Auth, DecodeError and any penalty.
func ForSystem(cfg connectors.SystemConfig, deps connectors.Deps, d Limits) Config {
	limit, burst := cfg.RateLimit, cfg.Burst
	if limit == 0 {
		limit = d.RateLimit
	}
	if burst == 0 {
		burst = d.Burst
	}
	return Config{
		System:       cfg.Name,
		BaseURL:      cfg.BaseURL,
		HTTPClient:   deps.HTTPClient,
		Timeout:      cfg.Timeout,
		MaxBodyBytes: cfg.MaxBodyBytes,
		RateLimit:    rate.Limit(limit),
		Burst:        burst,
		MaxAttempts:  cfg.MaxAttempts,
		MaxRetryWait: cfg.MaxRetryWait,
		Logger:       deps.Logger,
		Observer:     deps.Observer,
		Sleep:        deps.Sleep,

		AllowInsecureHTTP: cfg.AllowInsecureHTTP,
	}
}
