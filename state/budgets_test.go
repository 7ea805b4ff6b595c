package state_test

import (
	"context"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/groupsync/groupsync/connectors"
	"github.com/groupsync/groupsync/state"
	"github.com/groupsync/groupsync/state/statetest"
)

// replica opens a second store on s's schema, as another daemon replica would.
func replica(t *testing.T, s *state.Store) *state.Store {
	t.Helper()
	r, err := state.Open(t.Context(), statetest.URL(), state.Options{Schema: s.Schema(), MaxConns: 4})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(r.Close)
	return r
}

// TestBudgetSharedAcrossReplicas: two replicas with three workers each draw from one
// system's budget of 20 req/s (burst 2) for 3 s: together they get what one would (about
// 62), not twice that; another system's budget is separate.
func TestBudgetSharedAcrossReplicas(t *testing.T) {
	s := statetest.Store(t)
	r := replica(t, s)
	budgets := []connectors.Budget{s.Budget("devrev-prod", 20, 2), r.Budget("devrev-prod", 20, 2)}
	other := r.Budget("airtable-prod", 20, 2)
	ctx, cancel := context.WithTimeout(t.Context(), 3*time.Second)
	defer cancel()
	var shared, separate atomic.Int64
	var wg sync.WaitGroup
	for i := range 6 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for budgets[i%2].Wait(ctx) == nil {
				shared.Add(1)
			}
		}()
	}
	wg.Add(1)
	go func() {
		defer wg.Done()
		for other.Wait(ctx) == nil {
			separate.Add(1)
		}
	}()
	wg.Wait()
	// 3 s × 20 + burst 2 = 62 at most; a loaded machine may grant somewhat fewer.
	if n := shared.Load(); n > 62 || n < 40 {
		t.Fatalf("two replicas took %d requests in 3 s from a 20 req/s budget, want 40..62", n)
	}
	if n := separate.Load(); n < 40 || n > 62 {
		t.Fatalf("another system's budget granted %d, want 40..62 (budgets are per system)", n)
	}
}

// TestBudgetPauseHoldsEveryReplica: one replica's 429 (Retry-After 1 s) pauses the other.
// At 5 req/s a take is one token, so no replica holds a batch it could spend into the pause.
func TestBudgetPauseHoldsEveryReplica(t *testing.T) {
	s := statetest.Store(t)
	r := replica(t, s)
	a, b := s.Budget("devrev-prod", 5, 10), r.Budget("devrev-prod", 5, 10)
	if err := a.Wait(t.Context()); err != nil {
		t.Fatal(err)
	}
	a.Feedback(t.Context(), connectors.BudgetFeedback{RetryAfter: time.Second})
	start := time.Now()
	if err := b.Wait(t.Context()); err != nil {
		t.Fatal(err)
	}
	if d := time.Since(start); d < 900*time.Millisecond {
		t.Fatalf("the other replica got a request %s after a 1 s pause began", d)
	}
	// A spent window (Remaining 0) pauses until its reset and a second.
	a.Feedback(t.Context(), connectors.BudgetFeedback{HasWindow: true,
		Window: connectors.RateWindow{Limit: 10, Remaining: 0, Reset: time.Now().Add(500 * time.Millisecond)}})
	start = time.Now()
	if err := b.Wait(t.Context()); err != nil {
		t.Fatal(err)
	}
	if d := time.Since(start); d < 1300*time.Millisecond {
		t.Fatalf("a request went %s after a window reported spent until +0.5 s (want the reset and 1 s)", d)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 100*time.Millisecond)
	defer cancel()
	a.Feedback(t.Context(), connectors.BudgetFeedback{RetryAfter: time.Minute})
	if err := b.Wait(ctx); err == nil {
		t.Fatal("Wait returned nil inside a one-minute pause")
	}
}
