package observe

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Paths served by the HTTP server.
const (
	PathHealth  = "/healthz"
	PathReady   = "/readyz"
	PathMetrics = "/metrics"
)

// Database is what /readyz asks of the mirror; *state.Store implements it.
type Database interface {
	Ping(ctx context.Context) error
	MigrationStatus(ctx context.Context) (current, latest int, err error)
}

// Checks are what /readyz checks, in order.
type Checks struct {
	DB Database
	// SchedulerRunning reports whether the scheduler loop is active
	// (syncengine.Scheduler.Running).
	SchedulerRunning func() bool
	// Timeout bounds the database checks of one probe; default 2s, below the usual
	// Kubernetes probe timeout so a hung database answers 503 rather than no answer.
	Timeout time.Duration
}

// readiness is the /readyz body.
type readiness struct {
	Ready  bool   `json:"ready"`
	Reason string `json:"reason,omitempty"`
}

// check returns "" when ready, else why not.
func (c Checks) check(ctx context.Context) string {
	timeout := c.Timeout
	if timeout <= 0 {
		timeout = 2 * time.Second
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	if c.DB == nil {
		return "no database configured"
	}
	if err := c.DB.Ping(ctx); err != nil {
		return fmt.Sprintf("database unreachable: %v", err)
	}
	cur, latest, err := c.DB.MigrationStatus(ctx)
	if err != nil {
		return fmt.Sprintf("reading the schema version: %v", err)
	}
	switch {
	case cur < latest:
		return fmt.Sprintf("schema at version %d, this build needs %d (run groupsync migrate)", cur, latest)
	case cur > latest:
		// A newer replica migrated ahead of this one (a rolling upgrade): this build does not
		// know the schema and should not take traffic.
		return fmt.Sprintf("schema at version %d is newer than this build (%d)", cur, latest)
	}
	if c.SchedulerRunning == nil || !c.SchedulerRunning() {
		return "scheduler not running"
	}
	return ""
}

// Handler serves /healthz, /readyz and /metrics (from gatherer).
func Handler(gatherer prometheus.Gatherer, checks Checks, logger *slog.Logger) http.Handler {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET "+PathHealth, func(w http.ResponseWriter, _ *http.Request) {
		// Alive means the process answers; nothing else is checked, so a database outage
		// does not get the container restarted (readiness covers it).
		writeJSON(w, http.StatusOK, map[string]bool{"alive": true})
	})
	mux.HandleFunc("GET "+PathReady, func(w http.ResponseWriter, r *http.Request) {
		if reason := checks.check(r.Context()); reason != "" {
			logger.Debug("not ready", "reason", reason)
			writeJSON(w, http.StatusServiceUnavailable, readiness{Reason: reason})
			return
		}
		writeJSON(w, http.StatusOK, readiness{Ready: true})
	})
	mux.Handle("GET "+PathMetrics, promhttp.HandlerFor(gatherer, promhttp.HandlerOpts{
		// A mirror gauge that cannot be read must not hide the in-process metrics.
		ErrorHandling: promhttp.ContinueOnError,
		ErrorLog:      slog.NewLogLogger(logger.Handler(), slog.LevelWarn),
	}))
	return mux
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(v)
}

// Server is the running HTTP listener.
type Server struct {
	srv    *http.Server
	ln     net.Listener
	done   chan error
	logger *slog.Logger
}

// Serve listens on addr (host:port; port 0 picks a free one) and serves h in the
// background. Listening happens before it returns, so a taken port is an error here, at
// start, and not a log line later.
func Serve(addr string, h http.Handler, logger *slog.Logger) (*Server, error) {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("observe: listen on %s (http.listen): %w", addr, err)
	}
	s := &Server{
		srv: &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second,
			ErrorLog: slog.NewLogLogger(logger.Handler(), slog.LevelWarn)},
		ln: ln, done: make(chan error, 1), logger: logger,
	}
	go func() {
		err := s.srv.Serve(ln)
		if errors.Is(err, http.ErrServerClosed) {
			err = nil
		}
		s.done <- err
	}()
	logger.Info("http listening", "addr", ln.Addr().String(), "paths", []string{PathHealth, PathReady, PathMetrics})
	return s, nil
}

// Addr is the address actually listened on.
func (s *Server) Addr() string { return s.ln.Addr().String() }

// Shutdown stops accepting connections and waits for open requests until ctx ends.
func (s *Server) Shutdown(ctx context.Context) error {
	err := s.srv.Shutdown(ctx)
	if serveErr := <-s.done; err == nil && serveErr != nil {
		err = serveErr
	}
	if err != nil {
		return fmt.Errorf("observe: http shutdown: %w", err)
	}
	return nil
}
