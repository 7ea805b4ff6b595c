package state

import (
	"context"
	"errors"
	"fmt"
	"math"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/groupsync/groupsync/connectors"
	"github.com/groupsync/groupsync/connectors/apiclient"
)

// Budget is one system's API budget in Postgres (table api_budgets), shared by every
// replica and flow using the system's credentials. It implements connectors.Budget.
//
// Tokens are taken a few at a time (about a fifth of a second's worth) in one short
// statement, so a busy client costs a handful of round trips a second; tokens not spent
// within budgetHold are dropped rather than kept, so a stalled replica cannot save a burst
// for later. A pause recorded by another replica reaches this one at its next take: the
// few tokens it holds (at most a fifth of a second's worth) may still go out. Local waiters queue on one turn, so one process asks the database once at a
// time.
type Budget struct {
	db     *DB
	store  *Store
	system string
	rate   float64
	burst  float64
	batch  int

	turn chan struct{} // one waiter at a time asks the database

	mu        sync.Mutex
	held      int
	heldUntil time.Time
}

var _ connectors.Budget = (*Budget)(nil)

// budgetHold is how long tokens taken in a batch stay usable.
const budgetHold = time.Second

// budgetMaxSleep bounds one sleep between takes, so a pause lifted or a rate raised by
// another replica is seen soon.
const budgetMaxSleep = 2 * time.Second

// Budget returns the shared budget of system for a client limited to rate requests/second
// with the given burst. The row is created on first use; each take writes the caller's
// rate and burst, so a changed configuration takes effect on the next request.
func (s *Store) Budget(system string, rate float64, burst int) *Budget {
	if burst < 1 {
		burst = 1
	}
	batch := int(math.Ceil(rate / 5))
	batch = max(1, min(batch, burst))
	return &Budget{db: s.pool, store: s, system: system, rate: rate, burst: float64(burst), batch: batch,
		turn: make(chan struct{}, 1)}
}

// Budgets is the connectors.BudgetSource over this store (connectors.Deps.Budgets).
func (s *Store) Budgets() connectors.BudgetSource {
	return func(system string, rate float64, burst int) connectors.Budget {
		return s.Budget(system, rate, burst)
	}
}

// Wait takes one request from the budget, sleeping while it is empty or paused.
func (b *Budget) Wait(ctx context.Context) error {
	if b.takeHeld() {
		return nil
	}
	select {
	case b.turn <- struct{}{}:
	case <-ctx.Done():
		return fmt.Errorf("%s: api budget: %w", b.system, ctx.Err())
	}
	defer func() { <-b.turn }()
	for {
		if b.takeHeld() { // another waiter's batch, taken while this one queued
			return nil
		}
		granted, wait, err := b.take(ctx)
		if err != nil {
			if ctx.Err() != nil {
				return fmt.Errorf("%s: api budget: %w", b.system, ctx.Err())
			}
			// The mirror is unreachable: the client's own limiter still bounds this
			// replica, and the run's own writes will fail and say why. Failing every
			// request here would only hide that cause.
			b.store.logger.WarnContext(ctx, "shared api budget unavailable; this replica keeps to its own limit",
				"system", b.system, "error", err)
			return nil
		}
		if granted > 0 {
			b.mu.Lock()
			b.held, b.heldUntil = granted-1, time.Now().Add(budgetHold)
			b.mu.Unlock()
			return nil
		}
		if err := apiclient.SleepContext(ctx, min(wait, budgetMaxSleep)); err != nil {
			return fmt.Errorf("%s: api budget: %w", b.system, err)
		}
	}
}

func (b *Budget) takeHeld() bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.held > 0 && time.Now().Before(b.heldUntil) {
		b.held--
		return true
	}
	b.held = 0
	return false
}

// takeSQL refills the bucket for the time since its last take, grants up to $2 whole tokens
// unless the budget is paused, and says how long until the next token (or the pause's end).
const takeSQL = `
WITH cur AS (
    SELECT least($4::float8, tokens + $3::float8 * greatest(0, extract(epoch FROM clock_timestamp() - updated_at))::float8) AS avail,
           coalesce(paused_until, '-infinity') AS paused, clock_timestamp() AS now
    FROM api_budgets WHERE system = $1 FOR UPDATE
), g AS (
    SELECT avail, paused, now,
           CASE WHEN paused > now THEN 0 ELSE least(floor(avail), $2::float8) END AS granted
    FROM cur
)
UPDATE api_budgets b SET tokens = g.avail - g.granted, updated_at = g.now, rate = $3, burst = $4
FROM g WHERE b.system = $1
RETURNING g.granted::int,
          CASE WHEN g.paused > g.now THEN extract(epoch FROM g.paused - g.now)::float8
               ELSE greatest(0, 1 - (g.avail - g.granted)) / $3::float8 END`

// take runs one take; the row is created (full) the first time a system is seen.
func (b *Budget) take(ctx context.Context) (int, time.Duration, error) {
	var granted int
	var secs float64
	err := b.db.QueryRow(ctx, takeSQL, b.system, b.batch, b.rate, b.burst).Scan(&granted, &secs)
	if errors.Is(err, pgx.ErrNoRows) {
		if _, err := b.db.Exec(ctx, `INSERT INTO api_budgets (system, rate, burst, tokens) VALUES ($1, $2, $3, $3)
			ON CONFLICT (system) DO NOTHING`, b.system, b.rate, b.burst); err != nil {
			return 0, 0, err
		}
		err = b.db.QueryRow(ctx, takeSQL, b.system, b.batch, b.rate, b.burst).Scan(&granted, &secs)
	}
	if err != nil {
		return 0, 0, err
	}
	wait := time.Duration(secs * float64(time.Second))
	return granted, max(wait, time.Millisecond), nil
}

// Feedback pauses the budget for every sharer when the server asked for a wait (a 429) or
// announced a spent window (X-RateLimit-Remaining 0 until the reset). Other responses
// write nothing. A failure to record is logged, not returned: the client's own lockout
// still holds this replica back.
func (b *Budget) Feedback(ctx context.Context, fb connectors.BudgetFeedback) {
	now := time.Now()
	var until time.Time
	if fb.RetryAfter > 0 {
		until = now.Add(fb.RetryAfter)
	}
	if fb.HasWindow && fb.Window.Remaining == 0 && fb.Window.Reset.After(now) {
		// The reset is in whole seconds; a second more keeps the first request of the next
		// window from arriving early (as the client's own pacer does).
		if r := fb.Window.Reset.Add(time.Second); r.After(until) {
			until = r
		}
	}
	if until.IsZero() {
		return
	}
	b.mu.Lock()
	b.held = 0 // tokens in hand are not spent into a pause
	b.mu.Unlock()
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	if _, err := b.db.Exec(ctx, `UPDATE api_budgets SET paused_until = greatest(coalesce(paused_until, '-infinity'), $2)
		WHERE system = $1`, b.system, until); err != nil {
		b.store.logger.WarnContext(ctx, "recording a rate-limit pause in the shared api budget failed", "system", b.system, "error", err)
	}
}
