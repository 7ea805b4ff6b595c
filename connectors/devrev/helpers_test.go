package devrev

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/groupsync/groupsync/logctx/logtest"

	"github.com/groupsync/groupsync/connectors"
	"github.com/groupsync/groupsync/connectors/devrev/devrevsim"
	"github.com/groupsync/groupsync/secret"
)

const testToken = "devrev-canary-token-5f1e"

// sentRequest is one request as the simulator received it, with the simulator's answer,
// for the spec checks.
type sentRequest struct {
	Method, Path string
	Query        string
	Body         []byte
	Header       http.Header
	// The response: status, headers and body.
	Status     int
	RespHeader http.Header
	RespBody   []byte
}

type harness struct {
	sim  *devrevsim.Server
	srv  *httptest.Server
	conn *conn
	logs *logtest.Buffer

	mu    sync.Mutex
	waits []time.Duration
	sent  []sentRequest
}

func (h *harness) Waits() []time.Duration {
	h.mu.Lock()
	defer h.mu.Unlock()
	return append([]time.Duration(nil), h.waits...)
}

func (h *harness) Sent() []sentRequest {
	h.mu.Lock()
	defer h.mu.Unlock()
	return append([]sentRequest(nil), h.sent...)
}

// newHarness opens a connector against a fresh simulator. edit may change the system
// configuration before Open.
func newHarness(t testing.TB, so devrevsim.Options, edit func(*connectors.SystemConfig)) *harness {
	t.Helper()
	if so.Token == "" {
		so.Token = testToken
	}
	h := &harness{sim: devrevsim.New(so), logs: &logtest.Buffer{}}
	h.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		r.Body = io.NopCloser(bytes.NewReader(body))
		rec := httptest.NewRecorder()
		h.sim.ServeHTTP(rec, r)
		h.mu.Lock()
		h.sent = append(h.sent, sentRequest{Method: r.Method, Path: r.URL.Path, Query: r.URL.RawQuery, Body: body,
			Header: r.Header.Clone(), Status: rec.Code, RespHeader: rec.Header().Clone(), RespBody: rec.Body.Bytes()})
		h.mu.Unlock()
		for k, v := range rec.Header() {
			w.Header()[k] = v
		}
		w.WriteHeader(rec.Code)
		_, _ = w.Write(rec.Body.Bytes())
	}))
	t.Cleanup(h.srv.Close)
	cfg := connectors.SystemConfig{
		Name: "devrev-test", Kind: connectors.KindDevRev, BaseURL: h.srv.URL, Token: secret.New(testToken),
		MaxAttempts: 3, PageSize: 10, RateLimit: 1e6, Burst: 1000, Timeout: 5 * time.Second,
	}
	if edit != nil {
		edit(&cfg)
	}
	c, err := open(cfg, connectors.Deps{
		HTTPClient: h.srv.Client(),
		Logger:     slog.New(slog.NewTextHandler(h.logs, &slog.HandlerOptions{Level: slog.LevelDebug})),
		Sleep: func(ctx context.Context, d time.Duration) error {
			h.mu.Lock()
			h.waits = append(h.waits, d)
			h.mu.Unlock()
			return ctx.Err()
		},
	})
	if err != nil {
		t.Fatalf("open: %v", err)
	}
	h.conn = c
	return h
}

func collectGroups(t *testing.T, c connectors.Connector) ([]connectors.Group, connectors.Listing) {
	t.Helper()
	var out []connectors.Group
	l, err := c.ListGroups(t.Context(), func(gs []connectors.Group) error {
		out = append(out, gs...)
		return nil
	})
	if err != nil {
		t.Fatalf("list groups: %v", err)
	}
	return out, l
}

func collectMembers(t *testing.T, c connectors.Connector, groupID string) ([]connectors.Member, connectors.Listing) {
	t.Helper()
	var out []connectors.Member
	l, err := c.ListMembers(t.Context(), groupID, func(ms []connectors.Member) error {
		out = append(out, ms...)
		return nil
	})
	if err != nil {
		t.Fatalf("list members of %s: %v", groupID, err)
	}
	return out, l
}

func collectAccounts(t *testing.T, c connectors.Connector, ids []string) ([]connectors.Account, connectors.Listing) {
	t.Helper()
	var out []connectors.Account
	l, err := c.ListAccounts(t.Context(), ids, func(as []connectors.Account) error {
		out = append(out, as...)
		return nil
	})
	if err != nil {
		t.Fatalf("list accounts: %v", err)
	}
	return out, l
}
