package connectors

import (
	"context"
	"time"
)

// RateWindow is what a response said about the server's rate-limit window
// (X-RateLimit-Limit / X-RateLimit-Remaining / X-RateLimit-Reset).
type RateWindow struct {
	// Limit is the window's budget; 0 when the server did not say.
	Limit int
	// Remaining is what is left of the budget after this request.
	Remaining int
	// Reset is when the window turns and the budget is whole again.
	Reset time.Time
}

// Budget is one system's request budget shared beyond one HTTP client: every replica and
// every flow using the system's credentials draws from it, so together they keep to the
// system's limit instead of each keeping its own. Implementations (state.Budget, in
// Postgres) must be safe for concurrent use and hold no transaction across an HTTP call.
type Budget interface {
	// Wait blocks until the budget grants one request, or ctx ends.
	Wait(ctx context.Context) error
	// Feedback tells the budget what a response said: its window (when the API announces
	// one) and a server-requested wait (a 429's Retry-After), so every sharer holds back.
	Feedback(ctx context.Context, fb BudgetFeedback)
}

// BudgetFeedback is what one response said about the system's limit.
type BudgetFeedback struct {
	Window    RateWindow
	HasWindow bool
	// RetryAfter is the wait a 429 asked for (or the API's fixed penalty); 0 for none.
	RetryAfter time.Duration
}

// BudgetSource opens a system's shared budget for a client whose own limiter runs at rate
// requests/second with the given burst (the connector's effective limit).
type BudgetSource func(system string, rate float64, burst int) Budget
