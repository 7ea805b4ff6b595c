package apiclient

import (
	"time"

	"golang.org/x/time/rate"

	"github.com/groupsync/groupsync/connectors"
)

// Limits are a connector's defaults for the client-side rate limiter, taken from its API's
// published limit.
type Limits struct {
	RateLimit float64
	Burst     int
	// MaxRetryWait is the longest server-requested wait worth waiting out: the API's quota
	// window where it has one (DevRev: 5 minutes), so a spent window is waited for rather
	// than failed. Zero means DefaultMaxRetryWait.
	MaxRetryWait time.Duration
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
	maxWait := cfg.MaxRetryWait
	if maxWait == 0 {
		maxWait = d.MaxRetryWait
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
		MaxRetryWait: maxWait,
		Logger:       deps.Logger,
		Observer:     deps.Observer,
		Sleep:        deps.Sleep,
		Now:          deps.Now,
		Budgets:      deps.Budgets,

		AllowInsecureHTTP: cfg.AllowInsecureHTTP,
	}
}
