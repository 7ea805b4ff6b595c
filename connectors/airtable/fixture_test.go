package airtable_test

import (
	"context"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/groupsync/groupsync/logctx/logtest"

	"github.com/groupsync/groupsync/connectors"
	"github.com/groupsync/groupsync/connectors/airtable"
	"github.com/groupsync/groupsync/connectors/airtable/airtablesim"
	"github.com/groupsync/groupsync/connectors/conformance"
	"github.com/groupsync/groupsync/secret"
)

func TestConformance(t *testing.T) { conformance.Run(t, newFixture) }

// newFixture opens the connector against a fresh simulator, both APIs on one server.
func newFixture(t *testing.T, o conformance.Options) *conformance.Fixture {
	h := newHarness(t, o)
	return &conformance.Fixture{
		Conn:            h.conn,
		Sim:             h.sim,
		GroupsEndpoint:  airtablesim.RouteGroup,
		MembersEndpoint: airtablesim.RouteGroup,
		// The meta API lists group ids in one call and then needs one call per group; a
		// group's members come whole with it.
		MinGroupRequests:  func(n int) int { return n },
		MinMemberRequests: func(int) int { return 1 },
		Waits:             h.Waits,
		RateLimitWait:     airtable.RateLimitPenalty,
	}
}

// harness is a connector opened against a simulator, with its waits and logs recorded.
type harness struct {
	sim  *airtablesim.Server
	srv  *httptest.Server
	conn connectors.Connector
	cfg  connectors.SystemConfig

	mu    sync.Mutex
	waits []time.Duration
	logs  logtest.Buffer
}

// Waits returns the waits the client asked its Sleep for.
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

type harnessOption func(*connectors.SystemConfig)

func newHarness(t *testing.T, o conformance.Options, opts ...harnessOption) *harness {
	t.Helper()
	h := &harness{sim: airtablesim.New(airtablesim.Options{Token: "tok-" + t.Name()})}
	h.srv = httptest.NewServer(h.sim)
	t.Cleanup(h.srv.Close)
	h.cfg = connectors.SystemConfig{
		Name:    "airtable-test",
		Kind:    connectors.KindAirtable,
		BaseURL: h.srv.URL,
		Token:   secret.New(h.sim.Token()),
		Options: map[string]string{
			airtable.OptionEnterpriseAccountID: h.sim.EnterpriseID(),
			airtable.OptionSCIMURL:             h.srv.URL + airtablesim.SCIMPrefix,
		},
		MaxAttempts:  o.MaxAttempts,
		MaxRetryWait: o.MaxRetryWait,
		MaxBodyBytes: o.MaxBodyBytes,
		Timeout:      o.Timeout,
		PageSize:     o.PageSize,
	}
	for _, opt := range opts {
		opt(&h.cfg)
	}
	h.conn = h.open(t, h.srv.Client())
	return h
}

func (h *harness) open(t *testing.T, client *http.Client) connectors.Connector {
	t.Helper()
	logger := slog.New(slog.NewTextHandler(&h.logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	c, err := airtable.Open(h.cfg, connectors.Deps{HTTPClient: client, Logger: logger, Sleep: h.sleep})
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	return c
}

func (h *harness) writer(t *testing.T) connectors.Writer {
	t.Helper()
	w, ok := h.conn.(connectors.Writer)
	if !ok {
		t.Fatal("connector does not implement Writer")
	}
	return w
}

func defaultOptions() conformance.Options { return conformance.DefaultOptions() }
