package apiclient_test

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/groupsync/groupsync/connectors"
	"github.com/groupsync/groupsync/connectors/apiclient"
	"github.com/groupsync/groupsync/connectors/simkit"
)

const canary = "CANARY-TOKEN-5f1e0c"

// testServer is the plumbing's own fake: a JSON echo behind simkit's fault middleware, so
// faults behave exactly as in the connectors' simulators.
type testServer struct {
	*httptest.Server
	faults  *simkit.Faults
	counter *simkit.Counter
}

func newServer(t *testing.T) *testServer {
	t.Helper()
	faults, counter := simkit.NewFaults(1), simkit.NewCounter()
	api := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Authorization") != "Bearer "+canary {
			w.WriteHeader(http.StatusUnauthorized)
			_, _ = w.Write([]byte(`{"type":"unauthenticated","message":"bad token"}`))
			return
		}
		if r.URL.Path == "/big" {
			_, _ = w.Write([]byte(`{"data":"` + strings.Repeat("x", 4096) + `"}`))
			return
		}
		_, _ = w.Write([]byte(`{"id": 9007199254740993, "path": "` + r.URL.Path + `"}`))
	})
	writeErr := func(w http.ResponseWriter, status int, retryAfter time.Duration) {
		if retryAfter > 0 {
			w.Header().Set("Retry-After", simkit.RetryAfterSeconds(retryAfter))
		}
		w.WriteHeader(status)
		_, _ = w.Write([]byte(`{"type":"too_many_requests","message":"slow down"}`))
	}
	srv := httptest.NewServer(faults.Middleware(api, func(r *http.Request) string { return r.URL.Path }, writeErr, counter))
	t.Cleanup(srv.Close)
	return &testServer{Server: srv, faults: faults, counter: counter}
}

type sleeps struct {
	mu sync.Mutex
	ds []time.Duration
}

func (s *sleeps) sleep(ctx context.Context, d time.Duration) error {
	s.mu.Lock()
	s.ds = append(s.ds, d)
	s.mu.Unlock()
	return ctx.Err()
}

func (s *sleeps) max() time.Duration {
	s.mu.Lock()
	defer s.mu.Unlock()
	var m time.Duration
	for _, d := range s.ds {
		m = max(m, d)
	}
	return m
}

func newClient(t *testing.T, srv *testServer, mod func(*apiclient.Config)) (*apiclient.Client, *sleeps, *bytes.Buffer) {
	t.Helper()
	sl := &sleeps{}
	logs := &bytes.Buffer{}
	cfg := apiclient.Config{
		System: "test-system", BaseURL: srv.URL, HTTPClient: srv.Client(),
		MaxAttempts: 3, MaxRetryWait: time.Minute, Sleep: sl.sleep,
		Logger: slog.New(slog.NewJSONHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug})),
		Auth: func(_ context.Context, r *http.Request) error {
			r.Header.Set("Authorization", "Bearer "+canary)
			return nil
		},
		DecodeError: func(_ int, _ http.Header, body []byte) apiclient.ErrorInfo {
			return apiclient.ErrorInfo{Message: string(body)}
		},
	}
	if mod != nil {
		mod(&cfg)
	}
	c, err := apiclient.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return c, sl, logs
}

func TestBigNumericIDSurvives(t *testing.T) {
	srv := newServer(t)
	c, _, _ := newClient(t, srv, nil)
	var out struct {
		ID apiclient.ID `json:"id"`
	}
	if err := c.Do(t.Context(), apiclient.Request{Method: "GET", Path: "/x"}, &out); err != nil {
		t.Fatal(err)
	}
	if out.ID != "9007199254740993" {
		t.Fatalf("id = %s, want 9007199254740993 byte-exact", out.ID)
	}
}

func TestRetryAfterHonoured(t *testing.T) {
	srv := newServer(t)
	c, sl, _ := newClient(t, srv, nil)
	srv.faults.RateLimitNext("", 1, 12*time.Second)
	if err := c.Do(t.Context(), apiclient.Request{Method: "GET", Path: "/x"}, nil); err != nil {
		t.Fatal(err)
	}
	if sl.max() < 12*time.Second {
		t.Fatalf("slept at most %s after Retry-After: 12", sl.max())
	}
	if n := srv.counter.Count("/x"); n != 2 {
		t.Fatalf("%d requests, want 2", n)
	}
}

func TestFixedPenaltyWithoutHeader(t *testing.T) {
	srv := newServer(t)
	c, sl, _ := newClient(t, srv, func(c *apiclient.Config) { c.RateLimitPenalty = 30 * time.Second })
	srv.faults.RateLimitNext("", 1, 0)
	if err := c.Do(t.Context(), apiclient.Request{Method: "GET", Path: "/x"}, nil); err != nil {
		t.Fatal(err)
	}
	if sl.max() < 30*time.Second {
		t.Fatalf("slept %s after a bare 429, want the 30s penalty", sl.max())
	}
}

// TestLockoutWaitsCountFromTheirOwnReading: a lockout wait hands SleepFrom the very clock
// reading its span was computed from, so from + d is the lockout's end whatever the clock
// read in between. A clock moved by injected sleeps (Airtable's) relies on it to end
// concurrent waits for one lockout together.
func TestLockoutWaitsCountFromTheirOwnReading(t *testing.T) {
	srv := newServer(t)
	var mu sync.Mutex
	clock := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	type wait struct {
		from time.Time
		d    time.Duration
	}
	var waits []wait
	var readings []time.Time
	c, _, _ := newClient(t, srv, func(cfg *apiclient.Config) {
		cfg.RateLimitPenalty = 30 * time.Second
		// Every reading moves the clock on, as other waiters would, each time by a different
		// amount (1 s + k² ms), so a span counted from one reading and a wait handed another
		// cannot end at the lockout's end by chance.
		cfg.Now = func() time.Time {
			mu.Lock()
			defer mu.Unlock()
			k := time.Duration(len(readings) + 1)
			clock = clock.Add(time.Second + k*k*time.Millisecond)
			readings = append(readings, clock)
			return clock
		}
		cfg.SleepFrom = func(ctx context.Context, from time.Time, d time.Duration) error {
			mu.Lock()
			defer mu.Unlock()
			waits = append(waits, wait{from, d})
			clock = clock.Add(30 * time.Second) // the lockout is over when it returns
			return ctx.Err()
		}
	})
	srv.faults.RateLimitNext("", 1, 0)
	if err := c.Do(t.Context(), apiclient.Request{Method: "GET", Path: "/x"}, nil); err != nil {
		t.Fatal(err)
	}
	if len(waits) != 1 {
		t.Fatalf("waits %v, want one lockout wait", waits)
	}
	// The lockout ends 30 s after the reading at the 429 (rounded up to the millisecond).
	end := waits[0].from.Add(waits[0].d)
	if !slices.ContainsFunc(readings, func(r time.Time) bool {
		over := end.Sub(r.Add(30 * time.Second))
		return over >= 0 && over <= time.Millisecond
	}) {
		t.Fatalf("the wait from %s for %s ends at %s, not 30 s after any reading of the clock (%v)",
			waits[0].from.Format(time.StampMilli), waits[0].d, end.Format(time.StampMilli), readings)
	}
}

func TestAbsurdRetryAfterGivesUp(t *testing.T) {
	srv := newServer(t)
	c, sl, _ := newClient(t, srv, nil)
	srv.faults.RateLimitNext("", 1, 86400*time.Second)
	err := c.Do(t.Context(), apiclient.Request{Method: "GET", Path: "/x"}, nil)
	if !errors.Is(err, connectors.ErrRateLimited) {
		t.Fatalf("err = %v, want ErrRateLimited", err)
	}
	if connectors.RetryAfterOf(err) != 86400*time.Second {
		t.Fatalf("error lost the server's wait: %v", err)
	}
	if sl.max() > time.Minute || srv.counter.Count("/x") != 1 {
		t.Fatalf("slept %s over %d requests; want no wait beyond the cap and one request", sl.max(), srv.counter.Count("/x"))
	}
}

func TestServerErrorsRetriedThenGivenUp(t *testing.T) {
	srv := newServer(t)
	c, _, _ := newClient(t, srv, nil)
	srv.faults.StatusNext("", -1, 502)
	err := c.Do(t.Context(), apiclient.Request{Method: "GET", Path: "/x"}, nil)
	if !errors.Is(err, connectors.ErrRetryable) || srv.counter.Count("/x") != 3 {
		t.Fatalf("err = %v after %d requests; want ErrRetryable after 3", err, srv.counter.Count("/x"))
	}
}

func TestNonIdempotentWriteNotRetriedOn5xx(t *testing.T) {
	srv := newServer(t)
	c, _, _ := newClient(t, srv, nil)
	srv.faults.StatusNext("", 1, 500)
	err := c.Do(t.Context(), apiclient.Request{Method: "POST", Path: "/create", JSON: map[string]string{"name": "x"}}, nil)
	if !errors.Is(err, connectors.ErrRetryable) || srv.counter.Count("/create") != 1 {
		t.Fatalf("err = %v after %d requests; a create with unknown outcome must not be repeated", err, srv.counter.Count("/create"))
	}
	// A 429 proves the server did not act, so the same create is repeated.
	srv.faults.RateLimitNext("", 1, time.Second)
	if err := c.Do(t.Context(), apiclient.Request{Method: "POST", Path: "/create2", JSON: map[string]string{}}, nil); err != nil {
		t.Fatalf("create after a 429: %v", err)
	}
}

func TestClientErrorNotRetried(t *testing.T) {
	srv := newServer(t)
	c, _, _ := newClient(t, srv, nil)
	srv.faults.StatusNext("", 1, 422)
	err := c.Do(t.Context(), apiclient.Request{Method: "GET", Path: "/x"}, nil)
	if !errors.Is(err, connectors.ErrPermanent) || srv.counter.Count("/x") != 1 {
		t.Fatalf("err = %v after %d requests; want ErrPermanent after 1", err, srv.counter.Count("/x"))
	}
}

func TestBodyCap(t *testing.T) {
	srv := newServer(t)
	c, _, _ := newClient(t, srv, func(c *apiclient.Config) { c.MaxBodyBytes = 1024 })
	err := c.Do(t.Context(), apiclient.Request{Method: "GET", Path: "/big"}, nil)
	if err == nil || !strings.Contains(err.Error(), "max_body_bytes") {
		t.Fatalf("err = %v, want a body cap error", err)
	}
}

func TestTruncatedBodyIsRetryable(t *testing.T) {
	srv := newServer(t)
	c, _, _ := newClient(t, srv, func(c *apiclient.Config) { c.MaxAttempts = 1 })
	srv.faults.TruncateNext("", 1)
	err := c.Do(t.Context(), apiclient.Request{Method: "GET", Path: "/x"}, &map[string]any{})
	if !errors.Is(err, connectors.ErrRetryable) {
		t.Fatalf("err = %v, want ErrRetryable for a cut body", err)
	}
}

func TestCanaryTokenNeverLeaks(t *testing.T) {
	srv := newServer(t)
	c, _, logs := newClient(t, srv, nil)
	var errs []error
	srv.faults.StatusNext("", -1, 503)
	errs = append(errs, c.Do(t.Context(), apiclient.Request{Method: "GET", Path: "/x"}, nil))
	srv.faults.Clear()
	srv.faults.HangNext("", 1)
	ct, _, _ := newClient(t, srv, func(c *apiclient.Config) { c.Timeout = 50 * time.Millisecond; c.MaxAttempts = 1 })
	errs = append(errs, ct.Do(t.Context(), apiclient.Request{Method: "GET", Path: "/x"}, nil))
	bad, _, _ := newClient(t, srv, func(c *apiclient.Config) {
		c.Auth = func(_ context.Context, r *http.Request) error {
			r.Header.Set("Authorization", "Bearer wrong-"+canary)
			return nil
		}
	})
	errs = append(errs, bad.Do(t.Context(), apiclient.Request{Method: "GET", Path: "/x"}, nil))
	for _, err := range errs {
		if err == nil {
			t.Fatal("expected an error")
		}
		if strings.Contains(err.Error(), canary) {
			t.Fatalf("error leaks the token: %v", err)
		}
	}
	if !errors.Is(errs[2], connectors.ErrUnauthorized) {
		t.Fatalf("401 = %v, want ErrUnauthorized", errs[2])
	}
	if strings.Contains(logs.String(), canary) {
		t.Fatalf("debug logs leak the token: %s", logs.String())
	}
	if !strings.Contains(logs.String(), "retrying request") {
		t.Fatalf("debug logs do not show the retries: %s", logs.String())
	}
}

func TestRefusesLinksToOtherHosts(t *testing.T) {
	srv := newServer(t)
	c, _, _ := newClient(t, srv, nil)
	err := c.Do(t.Context(), apiclient.Request{Method: "GET", Path: "https://evil.example/steal"}, nil)
	if !errors.Is(err, connectors.ErrPermanent) || srv.counter.Total() != 0 {
		t.Fatalf("err = %v; a next link to another host must be refused before any request", err)
	}
	if err := c.Do(t.Context(), apiclient.Request{Method: "GET", Path: srv.URL + "/next?offset=5"}, nil); err != nil {
		t.Fatalf("same-host absolute link: %v", err)
	}
}

func TestCancellationStopsRetries(t *testing.T) {
	srv := newServer(t)
	ctx, cancel := context.WithCancel(t.Context())
	c, _, _ := newClient(t, srv, func(c *apiclient.Config) {
		c.MaxAttempts = 100
		c.Sleep = func(ctx context.Context, d time.Duration) error {
			cancel()
			return ctx.Err()
		}
	})
	srv.faults.StatusNext("", -1, 503)
	err := c.Do(ctx, apiclient.Request{Method: "GET", Path: "/x"}, nil)
	if !errors.Is(err, context.Canceled) || srv.counter.Count("/x") != 1 {
		t.Fatalf("err = %v after %d requests; want context.Canceled after 1", err, srv.counter.Count("/x"))
	}
}

func TestParseRetryAfter(t *testing.T) {
	now := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	for _, tc := range []struct {
		in   string
		want time.Duration
		ok   bool
	}{
		{"30", 30 * time.Second, true},
		{" 0 ", 0, true},
		{"-1", 0, false},
		{"", 0, false},
		{"soon", 0, false},
		{now.Add(90 * time.Second).Format(http.TimeFormat), 90 * time.Second, true},
		{now.Add(-time.Hour).Format(http.TimeFormat), 0, true},
	} {
		got, ok := apiclient.ParseRetryAfter(tc.in, now)
		if got != tc.want || ok != tc.ok {
			t.Errorf("ParseRetryAfter(%q) = %s, %v; want %s, %v", tc.in, got, ok, tc.want, tc.ok)
		}
	}
}

func TestIDDecoding(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want string
		ok   bool
	}{
		{`"ugp1mKGb3KXUyQfOZ"`, "ugp1mKGb3KXUyQfOZ", true},
		{`123456789012345678901234567890`, "123456789012345678901234567890", true},
		{`null`, "", false},
		{`""`, "", false},
		{`1.5`, "", false},
		{`1e3`, "", false},
		{`{"x":1}`, "", false},
		{`true`, "", false},
	} {
		var id apiclient.ID
		err := id.UnmarshalJSON([]byte(tc.in))
		if (err == nil) != tc.ok || string(id) != tc.want {
			t.Errorf("ID(%s) = %q, %v; want %q ok=%v", tc.in, id, err, tc.want, tc.ok)
		}
	}
}

// TestCredentialsStayOnTheConfiguredHost: a redirect to another host, a subdomain or down
// to http is not followed (the Authorization header would go with it) and fails the call
// without a retry; a redirect on the same host is followed. An http:// base URL is refused
// unless loopback or allowed; an error quoting the URL never shows its query string.
func TestCredentialsStayOnTheConfiguredHost(t *testing.T) {
	var leaked atomic.Int32
	other := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Authorization") != "" {
			leaked.Add(1)
		}
		_, _ = w.Write([]byte(`{}`))
	}))
	defer other.Close()
	var calls atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		calls.Add(1)
		switch r.URL.Path {
		case "/away":
			http.Redirect(w, r, other.URL+"/x", http.StatusFound)
		case "/moved":
			http.Redirect(w, r, "/here", http.StatusMovedPermanently)
		default:
			_, _ = w.Write([]byte(`{"ok": true}`))
		}
	}))
	defer srv.Close()
	// The other server is also loopback: "another host" here is another port.
	c, err := apiclient.New(apiclient.Config{System: "sys", BaseURL: srv.URL, MaxAttempts: 3, Sleep: func(context.Context, time.Duration) error { return nil },
		Auth: func(_ context.Context, r *http.Request) error {
			r.Header.Set("Authorization", "Bearer s3cret")
			return nil
		}})
	if err != nil {
		t.Fatal(err)
	}
	var out map[string]any
	err = c.Do(t.Context(), apiclient.Request{Method: "GET", Path: "/away", Query: url.Values{"email": {"ann@example.com"}}}, &out)
	if err == nil || !errors.Is(err, connectors.ErrPermanent) || leaked.Load() != 0 || calls.Load() != 1 {
		t.Fatalf("redirect to another host: err %v, leaked %d, calls %d; want a permanent error, no leak, no retry", err, leaked.Load(), calls.Load())
	}
	if strings.Contains(err.Error(), "ann@example.com") || strings.Contains(err.Error(), "s3cret") {
		t.Fatalf("the error shows the query or the token: %v", err)
	}
	if err := c.Do(t.Context(), apiclient.Request{Method: "GET", Path: "/moved"}, &out); err != nil || out["ok"] != true {
		t.Fatalf("same-host redirect: %v %v", err, out)
	}
	for _, tc := range []struct {
		base     string
		insecure bool
		ok       bool
	}{{"http://api.example.com", false, false}, {"http://api.example.com", true, true}, {"http://127.0.0.1:9", false, true},
		{"http://localhost:9", false, true}, {"https://api.example.com", false, true}} {
		_, err := apiclient.New(apiclient.Config{System: "sys", BaseURL: tc.base, AllowInsecureHTTP: tc.insecure})
		if (err == nil) != tc.ok {
			t.Errorf("New(%s, insecure %v): %v, want ok %v", tc.base, tc.insecure, err, tc.ok)
		}
	}
	if got := apiclient.RedactURL("https://u:p@x.io/a?email=ann%40example.com#f"); got != "https://REDACTED@x.io/a?REDACTED" {
		t.Errorf("RedactURL = %s", got)
	}
}
