package scim_test

import (
	"context"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/groupsync/groupsync/connectors"
	"github.com/groupsync/groupsync/connectors/conformance"
	"github.com/groupsync/groupsync/connectors/scim"
	"github.com/groupsync/groupsync/connectors/scim/scimsim"
	"github.com/groupsync/groupsync/logctx/logtest"
	"github.com/groupsync/groupsync/secret"
)

func TestConformance(t *testing.T) { conformance.Run(t, newFixture) }

// TestConformanceWithoutPatchFilterOrETag runs the suite against a provider that offers
// only what RFC 7644 requires: writes go by PUT, look-ups scan the listings.
func TestConformanceWithoutPatchFilterOrETag(t *testing.T) {
	conformance.Run(t, func(t *testing.T, o conformance.Options) *conformance.Fixture {
		f := newFixture(t, o)
		sim := f.Sim.(*scimsim.Server)
		sim.SetPatch(false)
		sim.SetFilter(false)
		sim.SetETag(false)
		return f
	})
}

func newFixture(t *testing.T, o conformance.Options) *conformance.Fixture {
	h := newHarness(t, o)
	return &conformance.Fixture{
		Conn:            h.conn,
		Sim:             h.sim,
		GroupsEndpoint:  scimsim.RouteGroups,
		MembersEndpoint: scimsim.RouteGroup,
		MinGroupRequests: func(n int) int {
			return max(1, (n+o.PageSize-1)/o.PageSize)
		},
		// A group's members come whole with the group.
		MinMemberRequests: func(int) int { return 1 },
		Waits:             h.Waits,
	}
}

// harness is a connector opened against a simulator, with its waits and logs recorded.
type harness struct {
	sim  *scimsim.Server
	srv  *httptest.Server
	conn connectors.Connector
	cfg  connectors.SystemConfig

	mu    sync.Mutex
	waits []time.Duration
	logs  logtest.Buffer
}

func (h *harness) Waits() []time.Duration {
	h.mu.Lock()
	defer h.mu.Unlock()
	return append([]time.Duration(nil), h.waits...)
}

func (h *harness) sleep(ctx context.Context, d time.Duration) error {
	h.mu.Lock()
	h.waits = append(h.waits, d)
	h.mu.Unlock()
	return ctx.Err()
}

func newHarness(t *testing.T, o conformance.Options, opts ...func(*connectors.SystemConfig)) *harness {
	t.Helper()
	return harnessOn(t, scimsim.New(scimsim.Options{Token: "tok-" + t.Name()}), o, opts...)
}

// harnessOn opens the connector against sim.
func harnessOn(t *testing.T, sim *scimsim.Server, o conformance.Options, opts ...func(*connectors.SystemConfig)) *harness {
	t.Helper()
	return harnessVia(t, sim, sim, o, opts...)
}

// harnessVia is harnessOn with the simulator served through handler (a test's wrapper
// that records or alters requests and answers).
func harnessVia(t *testing.T, sim *scimsim.Server, handler http.Handler, o conformance.Options, opts ...func(*connectors.SystemConfig)) *harness {
	t.Helper()
	h := &harness{sim: sim}
	h.srv = httptest.NewServer(handler)
	t.Cleanup(h.srv.Close)
	h.cfg = connectors.SystemConfig{
		Name:         "scim-test",
		Kind:         connectors.KindSCIM,
		BaseURL:      h.srv.URL + scimsim.Prefix,
		Token:        secret.New(h.sim.Token()),
		MaxAttempts:  o.MaxAttempts,
		MaxRetryWait: o.MaxRetryWait,
		MaxBodyBytes: o.MaxBodyBytes,
		Timeout:      o.Timeout,
		PageSize:     o.PageSize,
		// The default (10/s, for an unknown provider) would make the suite wait on its own
		// limiter; the simulator has none.
		RateLimit: 1000,
		Burst:     50,
	}
	for _, opt := range opts {
		opt(&h.cfg)
	}
	logger := slog.New(slog.NewTextHandler(&h.logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	c, err := scim.Open(h.cfg, connectors.Deps{HTTPClient: h.srv.Client(), Logger: logger, Sleep: h.sleep})
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	h.conn = c
	return h
}

func (h *harness) writer(t *testing.T) connectors.Writer {
	t.Helper()
	w, ok := h.conn.(connectors.Writer)
	if !ok {
		t.Fatal("connector does not implement Writer")
	}
	return w
}
