package apiclient_test

import (
	"context"
	"errors"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/groupsync/groupsync/connectors"
	"github.com/groupsync/groupsync/connectors/apiclient"
	"github.com/groupsync/groupsync/state/statetest"
)

// TestLongListingPacedToTheWindow: a server with a budget of 20 requests per 2 s window
// (X-RateLimit-* on every answer) and a client with no rate limit of its own; four workers
// sending 60 requests between them finish without a single 429, because the client spreads
// what is left of each window over the time left and waits for the reset when it is spent.
func TestLongListingPacedToTheWindow(t *testing.T) {
	srv := newServer(t)
	srv.faults.QuotaWindow(20, 2*time.Second)
	c, _, _ := newClient(t, srv, func(c *apiclient.Config) { c.Sleep = apiclient.SleepContext })
	var wg sync.WaitGroup
	errs := make(chan error, 60)
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range 15 {
				errs <- c.Do(t.Context(), apiclient.Request{Method: http.MethodGet, Path: "/page"}, nil)
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatalf("a paced request failed: %v", err)
		}
	}
	if n := srv.counter.CountStatus("/page", http.StatusTooManyRequests); n != 0 {
		t.Fatalf("%d requests were throttled (429); the client ran the window dry", n)
	}
	if n := srv.counter.CountStatus("/page", http.StatusOK); n != 60 {
		t.Fatalf("%d requests answered 200, want 60", n)
	}
}

// TestSpentWindowWaitedOut: the window was spent by someone else (another flow on the same
// token); the 429 names the reset, and the client waits it out instead of failing.
func TestSpentWindowWaitedOut(t *testing.T) {
	srv := newServer(t)
	srv.faults.QuotaWindow(5, 2*time.Second).Spend()
	c, _, _ := newClient(t, srv, func(c *apiclient.Config) { c.Sleep = apiclient.SleepContext })
	start := time.Now()
	if err := c.Do(t.Context(), apiclient.Request{Method: http.MethodGet, Path: "/x"}, nil); err != nil {
		t.Fatalf("request after a spent window: %v", err)
	}
	if n := srv.counter.CountStatus("/x", http.StatusTooManyRequests); n != 1 {
		t.Fatalf("%d 429s, want exactly the one that announced the spent window", n)
	}
	if time.Since(start) > 10*time.Second {
		t.Fatalf("took %s to wait out a 2 s window", time.Since(start))
	}
}

// TestWindowWaitLimitFromConnectorDefaults: a connector whose API has a 5-minute window
// gives ForSystem that window as the wait limit, so a 429 asking for 5 minutes is waited
// out (the generic 2-minute cap would fail it at once); a configured max_retry_wait still
// wins, and the wait still ends with the context.
func TestWindowWaitLimitFromConnectorDefaults(t *testing.T) {
	srv := newServer(t)
	cfg := apiclient.ForSystem(connectors.SystemConfig{Name: "quota-system", BaseURL: srv.URL},
		connectors.Deps{HTTPClient: srv.Client()}, apiclient.Limits{MaxRetryWait: 5*time.Minute + 30*time.Second})
	if cfg.MaxRetryWait != 5*time.Minute+30*time.Second {
		t.Fatalf("max retry wait = %s, want the connector's window default", cfg.MaxRetryWait)
	}
	sl := &sleeps{}
	cfg.Sleep = sl.sleep
	cfg.Auth = func(_ context.Context, r *http.Request) error {
		r.Header.Set("Authorization", "Bearer "+canary)
		return nil
	}
	c, err := apiclient.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	srv.faults.RateLimitNext("", 1, 5*time.Minute)
	if err := c.Do(t.Context(), apiclient.Request{Method: http.MethodGet, Path: "/x"}, nil); err != nil {
		t.Fatalf("a 5-minute window wait failed: %v", err)
	}
	if sl.max() < 5*time.Minute {
		t.Fatalf("slept at most %s; want the 5-minute reset waited out", sl.max())
	}

	configured := apiclient.ForSystem(connectors.SystemConfig{Name: "quota-system", BaseURL: srv.URL, MaxRetryWait: time.Minute},
		connectors.Deps{}, apiclient.Limits{MaxRetryWait: 5 * time.Minute})
	if configured.MaxRetryWait != time.Minute {
		t.Fatalf("configured max_retry_wait 1m became %s", configured.MaxRetryWait)
	}
}

// TestWindowWaitEndsWithContext: a spent 5-minute window parks the caller only until its
// context ends.
func TestWindowWaitEndsWithContext(t *testing.T) {
	srv := newServer(t)
	srv.faults.QuotaWindow(5, 5*time.Minute).Spend()
	c, _, _ := newClient(t, srv, func(c *apiclient.Config) {
		c.Sleep = apiclient.SleepContext
		c.MaxRetryWait = 6 * time.Minute
	})
	ctx, cancel := context.WithTimeout(t.Context(), 300*time.Millisecond)
	defer cancel()
	start := time.Now()
	err := c.Do(ctx, apiclient.Request{Method: http.MethodGet, Path: "/x"}, nil)
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("err = %v, want the context's deadline", err)
	}
	if d := time.Since(start); d > 20*time.Second {
		t.Fatalf("returned after %s; the wait ignored the context", d)
	}
}

func TestParseWindow(t *testing.T) {
	now := time.Unix(1_700_000_000, 0)
	h := http.Header{}
	h.Set("X-RateLimit-Limit", "1000")
	h.Set("X-RateLimit-Remaining", "17")
	h.Set("X-RateLimit-Reset", "1700000300")
	w, ok := apiclient.ParseWindow(h, now)
	if !ok || w.Limit != 1000 || w.Remaining != 17 || !w.Reset.Equal(now.Add(5*time.Minute)) {
		t.Fatalf("epoch reset: %+v %v", w, ok)
	}
	h.Set("X-RateLimit-Reset", "30")
	if w, ok := apiclient.ParseWindow(h, now); !ok || !w.Reset.Equal(now.Add(30*time.Second)) {
		t.Fatalf("delta reset: %+v %v", w, ok)
	}
	h.Del("X-RateLimit-Remaining")
	if _, ok := apiclient.ParseWindow(h, now); ok {
		t.Fatal("a window without Remaining was read")
	}
}

// TestWindowBeyondMaxRetryWaitFailsFast: a window spent for longer than max_retry_wait is
// not waited for, neither by the call that met the 429 nor by the next one: both fail at
// once as rate-limited, naming the wait, instead of parking for the window.
func TestWindowBeyondMaxRetryWaitFailsFast(t *testing.T) {
	srv := newServer(t)
	srv.faults.QuotaWindow(5, 5*time.Minute).Spend()
	store := statetest.Store(t)
	c, _, _ := newClient(t, srv, func(c *apiclient.Config) {
		c.Sleep = apiclient.SleepContext
		c.MaxRetryWait = time.Second
		c.RateLimit, c.Burst = 100, 10
		c.Budgets = store.Budgets()
	})
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
	defer cancel()
	for i := range 2 {
		start := time.Now()
		err := c.Do(ctx, apiclient.Request{Method: http.MethodGet, Path: "/x"}, nil)
		if !errors.Is(err, connectors.ErrRateLimited) {
			t.Fatalf("call %d: err = %v, want ErrRateLimited", i, err)
		}
		if d := time.Since(start); d > 5*time.Second {
			t.Fatalf("call %d took %s under a 5-minute window and max_retry_wait 1s", i, d)
		}
	}
}
