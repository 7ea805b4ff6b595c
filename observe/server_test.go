package observe_test

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/groupsync/groupsync/observe"
)

type fakeDB struct {
	pingErr         error
	current, latest int
}

func (f fakeDB) Ping(context.Context) error { return f.pingErr }
func (f fakeDB) MigrationStatus(context.Context) (int, int, error) {
	return f.current, f.latest, nil
}

func get(t *testing.T, h http.Handler, path string) (int, string) {
	t.Helper()
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, path, nil))
	return rec.Code, rec.Body.String()
}

func TestReadyzReasons(t *testing.T) {
	var running atomic.Bool
	running.Store(true)
	tests := []struct {
		name   string
		db     observe.Database
		run    bool
		code   int
		reason string
	}{
		{"ready", fakeDB{current: 3, latest: 3}, true, 200, ""},
		{"database down", fakeDB{pingErr: errors.New("connection refused"), current: 3, latest: 3}, true, 503, "database unreachable: connection refused"},
		{"schema behind", fakeDB{current: 2, latest: 3}, true, 503, "schema at version 2, this build needs 3 (run groupsync migrate)"},
		{"schema ahead", fakeDB{current: 4, latest: 3}, true, 503, "schema at version 4 is newer than this build (3)"},
		{"scheduler stopped", fakeDB{current: 3, latest: 3}, false, 503, "scheduler not running"},
		{"no database", nil, true, 503, "no database configured"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			h := observe.Handler(prometheus.NewRegistry(), observe.Checks{DB: tc.db, SchedulerRunning: func() bool { return tc.run }}, nil)
			code, body := get(t, h, observe.PathReady)
			if code != tc.code {
				t.Fatalf("/readyz = %d %s, want %d", code, body, tc.code)
			}
			var r struct {
				Ready  bool   `json:"ready"`
				Reason string `json:"reason"`
			}
			if err := json.Unmarshal([]byte(body), &r); err != nil {
				t.Fatalf("/readyz body %q: %v", body, err)
			}
			if r.Ready != (tc.code == 200) || r.Reason != tc.reason {
				t.Errorf("/readyz body = %+v, want ready=%v reason %q", r, tc.code == 200, tc.reason)
			}
			// Liveness never depends on the checks.
			if code, _ := get(t, h, observe.PathHealth); code != 200 {
				t.Errorf("/healthz = %d, want 200", code)
			}
		})
	}
}

func TestMetricsKeepServingWhenTheMirrorFails(t *testing.T) {
	reg := prometheus.NewRegistry()
	m := observe.NewMetrics(reg, "test")
	m.WatchMirror(failingMirror{}, time.Second, nil)
	m.RunFinished("f", "succeeded", time.Second)
	code, body := get(t, observe.Handler(reg, observe.Checks{}, nil), observe.PathMetrics)
	if code != 200 || !strings.Contains(body, `groupsync_runs_total{flow="f",status="succeeded"} 1`) {
		t.Fatalf("/metrics = %d, want 200 with the run counter:\n%s", code, body)
	}
}

func TestServeAndShutdown(t *testing.T) {
	srv, err := observe.Serve("127.0.0.1:0", observe.Handler(prometheus.NewRegistry(), observe.Checks{}, nil), nil)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.Get("http://" + srv.Addr() + observe.PathHealth)
	if err != nil {
		t.Fatal(err)
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	_ = resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("/healthz = %d", resp.StatusCode)
	}
	// A second server on the same address fails at start, naming the setting.
	if _, err := observe.Serve(srv.Addr(), http.NotFoundHandler(), nil); err == nil || !strings.Contains(err.Error(), "http.listen") {
		t.Errorf("second listener on %s: err = %v, want a listen error naming http.listen", srv.Addr(), err)
	}
	if err := srv.Shutdown(t.Context()); err != nil {
		t.Fatal(err)
	}
	if _, err := http.Get("http://" + srv.Addr() + observe.PathHealth); err == nil {
		t.Error("server still answers after Shutdown")
	}
}
