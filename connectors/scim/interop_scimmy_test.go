package scim_test

// Interop against SCIMMY (npm scimmy + scimmy-routers), a SCIM 2.0 server library nobody
// here wrote: the Express app in testdata/scimmy declares Users and Groups with in-memory
// storage behind SCIMMY's ingress/egress/degress handlers; SCIMMY routes, parses filters
// and PatchOps, pages and renders. The test starts it with node on a loopback port and
// runs the shared scenario (interop_test.go) against it. Versions are pinned in
// testdata/scimmy/package-lock.json; `make test` installs them (npm ci) when missing.

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
	"testing"
	"time"
)

const scimmyFix = "run npm ci --prefix connectors/scim/testdata/scimmy (make test does it when node_modules is missing)"

// scimmyPeer starts the SCIMMY app announcing filter.maxResults as given; cleanup kills it.
// It fails, never skips, when node or the packages are missing: the interop is part of
// the suite.
func scimmyPeer(t *testing.T, maxResults int) peer {
	t.Helper()
	dir := filepath.Join("testdata", "scimmy")
	node, err := exec.LookPath("node")
	if err != nil {
		t.Fatalf("SCIMMY interop needs node (Node.js 18 or later) on PATH: %v; install it (Debian: apt-get install nodejs npm), then %s", err, scimmyFix)
	}
	if _, err := os.Stat(filepath.Join(dir, "node_modules", "scimmy-routers", "package.json")); err != nil {
		t.Fatalf("SCIMMY interop needs its packages: %v; %s", err, scimmyFix)
	}
	const token = "scimmy-peer-token"
	cmd := exec.Command(node, "index.js")
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "SCIMMY_TOKEN="+token, "SCIMMY_MAX_RESULTS="+strconv.Itoa(maxResults))
	stdout := &firstLine{line: make(chan string, 1)}
	var stderr lockedBuffer
	cmd.Stdout, cmd.Stderr = stdout, &stderr
	// The app exits when its stdin closes: a test binary that dies without running its
	// cleanups does not leave node behind.
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatalf("stdin pipe: %v", err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatalf("start node: %v", err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	t.Cleanup(func() {
		stdin.Close()
		_ = cmd.Process.Kill()
		<-exited
	})
	port := scimmyPort(t, stdout.line, exited, &stderr)
	return peer{name: "scimmy", base: fmt.Sprintf("http://127.0.0.1:%d/scim/v2", port), token: token,
		client: &http.Client{Timeout: 10 * time.Second}, quirks: scimmyQuirks}
}

// scimmyQuirks are SCIMMY 1.3.5's departures from RFC 7644 that the connector observes.
var scimmyQuirks = quirks{
	// SCIMMY's Filter.match compares `eq` with ===, whatever the attribute's caseExact, so
	// `userName eq "ada@example.com"` misses "Ada@Example.com" (RFC 7643 §4.1.1 makes
	// userName caseExact false; RFC 7644 §3.4.2.2 compares by caseExact).
	eqCaseExact: true,
	// SCIMMY's filter tokenizer does not read a compValue as a JSON string: `\"` ends it,
	// so `displayName eq "a \"b\""` (a valid RFC 7644 filter) is 400 invalidFilter, and
	// `\\` stays two backslashes (a name with one matches nothing).
	escapes: escapesRefused,
}

// scimmyPort waits for the app's {"port":N} line, or its exit.
func scimmyPort(t *testing.T, line <-chan string, exited <-chan error, stderr *lockedBuffer) int {
	t.Helper()
	select {
	case l := <-line:
		var ready struct{ Port int }
		if err := json.Unmarshal([]byte(l), &ready); err != nil || ready.Port == 0 {
			t.Fatalf("SCIMMY app printed %q, want {\"port\":N}; stderr:\n%s", l, stderr.String())
		}
		return ready.Port
	case err := <-exited:
		t.Fatalf("SCIMMY app exited before listening (%v); stderr:\n%s\n%s", err, stderr.String(), scimmyFix)
	case <-time.After(30 * time.Second):
		t.Fatalf("SCIMMY app did not print its port within 30s; stderr:\n%s", stderr.String())
	}
	return 0
}

// firstLine hands the first line written to it to line and discards the rest.
type firstLine struct {
	mu   sync.Mutex
	buf  []byte
	sent bool
	line chan string
}

func (w *firstLine) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if !w.sent {
		w.buf = append(w.buf, p...)
		if i := bytes.IndexByte(w.buf, '\n'); i >= 0 {
			w.line <- string(w.buf[:i])
			w.sent = true
		}
	}
	return len(p), nil
}

// lockedBuffer is the app's stderr, written by exec's copier and read by the test.
type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// TestInteropSCIMMYReads: the shared read scenario (interop_test.go).
func TestInteropSCIMMYReads(t *testing.T) { interopReads(t, scimmyPeer(t, 2)) }

// TestInteropSCIMMYWrites: the shared write scenario (SCIMMY's answer to removing an
// absent member is in TestInteropSCIMMYDeviations).
func TestInteropSCIMMYWrites(t *testing.T) { interopWrites(t, scimmyPeer(t, 100)) }

// TestInteropSCIMMYDeviations records where SCIMMY departs from RFC 7644 beyond what the
// connector observes, with what it does instead, so a change in SCIMMY shows here first.
func TestInteropSCIMMYDeviations(t *testing.T) {
	p := scimmyPeer(t, 2)
	p.seed(t)
	// RFC 7644 §3.4.2.4: startIndex is the 1-based index of the first result. Past the end
	// SCIMMY pages from the first result instead (it slices only when startIndex is within
	// the results), so a client advancing by count alone would loop. The connector stops at
	// totalResults, and a page of nothing new ends a listing as incomplete.
	past := p.get(t, "/Groups?startIndex=7&count=2")
	if rs := past["Resources"].([]any); len(rs) == 0 || rs[0].(map[string]any)["displayName"] != "Team 0" {
		t.Fatalf("page past the end = %v; SCIMMY now answers it empty: update this test", past)
	}
	// RFC 7644 §3.4.2: itemsPerPage is the number of resources in the page. SCIMMY echoes
	// the count asked (20 when none): 5 groups without count say itemsPerPage 20. The
	// connector never reads itemsPerPage.
	if all := p.get(t, "/Groups"); len(all["Resources"].([]any)) != 5 || all["itemsPerPage"] != float64(20) {
		t.Fatalf("unpaged listing = %v; SCIMMY now follows the RFC: update this test", all)
	}
	// The ServiceProviderConfig says etag.supported false, yet Express adds a weak ETag
	// header (a hash of the body) to every answer. The connector sends If-Match only where
	// the ServiceProviderConfig announces ETags, so it never sends this one back.
	spc := p.get(t, "/ServiceProviderConfig")
	if spc["etag"].(map[string]any)["supported"] != false {
		t.Fatalf("SCIMMY now announces ETags: update this test (and check If-Match interop)")
	}
	// RFC 7644 §3.12: a PATCH path whose filter yields no match is noTarget (400). SCIMMY
	// applies `remove members[value eq "…"]` for an absent member as a no-op and answers
	// 204. The connector treats both as done (an absent member is the outcome asked for).
	team := p.get(t, "/Groups?count=1")["Resources"].([]any)[0].(map[string]any)
	status, body := p.do(t, http.MethodPatch, "/Groups/"+team["id"].(string), map[string]any{
		"schemas":    []string{"urn:ietf:params:scim:api:messages:2.0:PatchOp"},
		"Operations": []any{map[string]any{"op": "remove", "path": `members[value eq "nobody"]`}}})
	if status != http.StatusNoContent {
		t.Fatalf("PATCH remove of an absent member = %d %v; SCIMMY now answers noTarget: update this test", status, body)
	}
	// RFC 6750 §3: a 401 for a bearer-token resource carries WWW-Authenticate. SCIMMY's
	// 401 does not; the connector reads the status alone.
	resp, err := p.client.Get(p.base + "/Groups")
	if err != nil {
		t.Fatalf("GET without token: %v", err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusUnauthorized || resp.Header.Get("WWW-Authenticate") != "" {
		t.Fatalf("GET without token = %d, WWW-Authenticate %q; update this test", resp.StatusCode, resp.Header.Get("WWW-Authenticate"))
	}
}
