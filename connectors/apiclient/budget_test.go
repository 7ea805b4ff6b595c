package apiclient_test

import (
	"net/http"
	"testing"
	"time"

	"github.com/groupsync/groupsync/connectors/apiclient"
	"github.com/groupsync/groupsync/state/statetest"
)

// TestSharedBudgetHoldsBackOtherClients: two clients of one system (two replicas) share the
// budget in Postgres; one meets a 429 with Retry-After 2 s, and the other, which never saw
// it, waits out the same pause instead of knocking.
func TestSharedBudgetHoldsBackOtherClients(t *testing.T) {
	srv := newServer(t)
	store := statetest.Store(t)
	mod := func(c *apiclient.Config) {
		c.Sleep = apiclient.SleepContext
		c.RateLimit, c.Burst = 50, 5
		c.Budgets = store.Budgets()
	}
	a, _, _ := newClient(t, srv, mod)
	b, _, _ := newClient(t, srv, mod)
	srv.faults.RateLimitNext("/a", 1, 2*time.Second)
	done := make(chan error, 1)
	go func() { done <- a.Do(t.Context(), apiclient.Request{Method: http.MethodGet, Path: "/a"}, nil) }()
	deadline := time.Now().Add(10 * time.Second)
	for srv.counter.CountStatus("/a", http.StatusTooManyRequests) == 0 {
		if time.Now().After(deadline) {
			t.Fatal("the 429 never came")
		}
		time.Sleep(5 * time.Millisecond)
	}
	throttled := time.Now()
	if err := b.Do(t.Context(), apiclient.Request{Method: http.MethodGet, Path: "/b"}, nil); err != nil {
		t.Fatal(err)
	}
	if d := time.Since(throttled); d < 1800*time.Millisecond {
		t.Fatalf("the other client's request went out %s after a 429 asked the system for 2 s", d)
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if n := srv.counter.CountStatus("/b", http.StatusOK); n != 1 {
		t.Fatalf("/b answered 200 %d times, want 1", n)
	}
}
