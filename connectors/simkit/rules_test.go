package simkit_test

import (
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/groupsync/groupsync/connectors/simkit"
)

// TestRuleAnswersOnlyTheMatchingWriteNTimes proves a rule fails exactly the request it
// names (method, path, body) for its count, and that the handler still reads the body.
func TestRuleAnswersOnlyTheMatchingWriteNTimes(t *testing.T) {
	f := simkit.NewFaults(1)
	var mu sync.Mutex
	var bodies []string
	h := f.Middleware(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		mu.Lock()
		bodies = append(bodies, string(b))
		mu.Unlock()
		w.WriteHeader(http.StatusCreated)
	}), func(r *http.Request) string { return r.Method + " " + r.URL.Path },
		func(w http.ResponseWriter, status int, _ time.Duration) { w.WriteHeader(status) }, simkit.NewCounter())
	srv := httptest.NewServer(h)
	defer srv.Close()
	seen := 0
	f.Observe(func(method, path string, status int) {
		mu.Lock()
		seen++
		mu.Unlock()
	})
	f.Inject(simkit.Rule{Method: "POST", Path: "/groups/7/members", Body: `"bob"`, Status: http.StatusBadGateway, Times: 2})
	f.Inject(simkit.Rule{Method: "DELETE", Drop: true, Times: 1})

	post := func(path, body string) int {
		t.Helper()
		resp, err := srv.Client().Post(srv.URL+path, "application/json", strings.NewReader(body))
		if err != nil {
			t.Fatalf("POST %s: %v", path, err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	for i, c := range []struct {
		path, body string
		want       int
	}{
		{"/groups/7/members", `{"id":"alice"}`, http.StatusCreated},
		{"/groups/7/members", `{"id":"bob"}`, http.StatusBadGateway},
		{"/groups/8/members", `{"id":"bob"}`, http.StatusCreated},
		{"/groups/7/members", `{"id":"bob"}`, http.StatusBadGateway},
		{"/groups/7/members", `{"id":"bob"}`, http.StatusCreated},
	} {
		if got := post(c.path, c.body); got != c.want {
			t.Fatalf("request %d (%s %s) = %d, want %d", i, c.path, c.body, got, c.want)
		}
	}
	mu.Lock()
	got := strings.Join(bodies, "|")
	mu.Unlock()
	if want := `{"id":"alice"}|{"id":"bob"}|{"id":"bob"}`; got != want {
		t.Fatalf("handler read bodies %q, want %q", got, want)
	}
	req, _ := http.NewRequest(http.MethodDelete, srv.URL+"/groups/7", nil)
	if resp, err := srv.Client().Do(req); err == nil {
		resp.Body.Close()
		t.Fatalf("DELETE answered %d, want a dropped connection", resp.StatusCode)
	}
	// The observer is told after the answer went out: poll for the last one.
	for deadline := time.Now().Add(5 * time.Second); ; {
		mu.Lock()
		n := seen
		mu.Unlock()
		if n == 6 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("observer saw %d requests, want 6", n)
		}
		time.Sleep(5 * time.Millisecond)
	}
}
