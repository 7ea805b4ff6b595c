package selfcommunity

import (
	"bytes"
	"context"
	"log/slog"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/groupsync/groupsync/connectors"
	"github.com/groupsync/groupsync/connectors/conformance"
	"github.com/groupsync/groupsync/connectors/selfcommunity/selfcommunitysim"
	"github.com/groupsync/groupsync/secret"
)

// canaryToken must never show up in an error or a log line.
const canaryToken = "CANARY-sc-token-7c2f9a1e"

// sleeps records the waits the client asked for and returns at once.
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

func (s *sleeps) waits() []time.Duration {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]time.Duration(nil), s.ds...)
}

// env is a connector opened against a fresh simulator.
type env struct {
	conn  *conn
	sim   *selfcommunitysim.Server
	srv   *httptest.Server
	sl    *sleeps
	logs  *bytes.Buffer
	logMu *sync.Mutex
}

type envOptions struct {
	sim  selfcommunitysim.Options
	cfg  func(*connectors.SystemConfig)
	now  func() time.Time
	page int
}

// lockedWriter lets the debug log be captured from concurrent requests.
type lockedWriter struct {
	mu *sync.Mutex
	b  *bytes.Buffer
}

func (w lockedWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.b.Write(p)
}

func newEnv(t *testing.T, eo envOptions) *env {
	t.Helper()
	if eo.sim.Token == "" && eo.sim.JWTSecret == "" {
		eo.sim.Token = canaryToken
	}
	if eo.sim.MaxPageSize == 0 {
		eo.sim.MaxPageSize = 1000
	}
	sim := selfcommunitysim.New(eo.sim)
	srv := httptest.NewServer(sim)
	t.Cleanup(srv.Close)
	sl := &sleeps{}
	logs, mu := &bytes.Buffer{}, &sync.Mutex{}
	cfg := connectors.SystemConfig{
		Name: "sc-test", Kind: connectors.KindSelfCommunity, BaseURL: srv.URL,
		Token: secret.New(canaryToken), MaxAttempts: 3, MaxRetryWait: time.Minute,
		Timeout: 5 * time.Second, PageSize: eo.page,
		// Tests must not wait on the real-time limiter; the default is tested on its own.
		RateLimit: 1e6, Burst: 1000,
	}
	if eo.cfg != nil {
		eo.cfg(&cfg)
	}
	now := eo.now
	if now == nil {
		now = time.Now
	}
	c, err := open(cfg, connectors.Deps{
		HTTPClient: srv.Client(),
		Logger:     slog.New(slog.NewJSONHandler(lockedWriter{mu, logs}, &slog.HandlerOptions{Level: slog.LevelDebug})),
		Sleep:      sl.sleep,
	}, now)
	if err != nil {
		t.Fatalf("open: %v", err)
	}
	return &env{conn: c, sim: sim, srv: srv, sl: sl, logs: logs, logMu: mu}
}

func (e *env) logText() string {
	e.logMu.Lock()
	defer e.logMu.Unlock()
	return e.logs.String()
}

func newFixture(t *testing.T, o conformance.Options) *conformance.Fixture {
	e := newEnv(t, envOptions{page: o.PageSize, cfg: func(c *connectors.SystemConfig) {
		c.MaxAttempts, c.MaxRetryWait, c.MaxBodyBytes, c.Timeout = o.MaxAttempts, o.MaxRetryWait, o.MaxBodyBytes, o.Timeout
	}})
	pages := func(n int) int { return max(1, (n+o.PageSize-1)/o.PageSize) }
	return &conformance.Fixture{
		Conn:              e.conn,
		Sim:               e.sim,
		GroupsEndpoint:    selfcommunitysim.RouteGroupsSearch,
		MembersEndpoint:   selfcommunitysim.RouteMembersList,
		MinGroupRequests:  pages,
		MinMemberRequests: pages,
		Waits:             e.sl.waits,
	}
}

func TestConformance(t *testing.T) { conformance.Run(t, newFixture) }
