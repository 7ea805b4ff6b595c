package simkit

import (
	"bytes"
	"io"
	"net/http"
	"strings"
)

// Rule is a per-request fault: requests that match every non-empty field are answered with
// Status (and Body, or the API's own error body when Body is empty), or have their
// connection dropped, Times times. It lets a test fail one exact write ("the add of this
// member to that group") rather than every request on an endpoint.
type Rule struct {
	// Method matches the HTTP method exactly ("" matches any).
	Method string
	// Path matches when the request path contains it ("" matches any).
	Path string
	// Body matches when the request body contains it ("" matches any, and the body is not read).
	Body string
	// Status is the status to answer with; ignored when Drop is set.
	Status int
	// ResponseBody, when set, is sent as is (JSON content type) instead of the API's error body.
	ResponseBody string
	// Drop closes the connection without an answer, as a crashed proxy would.
	Drop bool
	// Times is how many matching requests the rule answers (< 0: all).
	Times int
}

// Inject arms a per-request rule. Rules are checked in the order armed, after the
// endpoint faults, and a rule spent is forgotten.
func (f *Faults) Inject(r Rule) {
	f.mu.Lock()
	f.rules = append(f.rules, &r)
	f.mu.Unlock()
}

// Observe sets (nil clears) a function told of every request the simulator answered:
// method, path and status. Tests use it to count writes ("the second run sent none").
func (f *Faults) Observe(fn func(method, path string, status int)) {
	f.mu.Lock()
	f.observe = fn
	f.mu.Unlock()
}

func (f *Faults) observer() func(method, path string, status int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.observe
}

// needsBody reports whether some armed rule matches on the body, so bodies are read only
// when a test asked for it.
func (f *Faults) needsBody() bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, r := range f.rules {
		if r.Body != "" {
			return true
		}
	}
	return false
}

// takeRule returns the first armed rule the request matches, consuming one use of it.
func (f *Faults) takeRule(method, path string, body []byte) (Rule, bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for i, r := range f.rules {
		if (r.Method != "" && r.Method != method) || !strings.Contains(path, r.Path) ||
			(r.Body != "" && !bytes.Contains(body, []byte(r.Body))) {
			continue
		}
		cp := *r
		if r.Times > 0 {
			r.Times--
			if r.Times == 0 {
				f.rules = append(f.rules[:i], f.rules[i+1:]...)
			}
		}
		return cp, true
	}
	return Rule{}, false
}

// applyRule answers a request by the first matching rule and reports whether it did. The
// body, when read for matching, is put back for the handler.
func (f *Faults) applyRule(w http.ResponseWriter, r *http.Request, writeErr ErrorWriter) (int, bool) {
	f.mu.Lock()
	armed := len(f.rules) > 0
	f.mu.Unlock()
	if !armed {
		return 0, false
	}
	var body []byte
	if f.needsBody() && r.Body != nil {
		body, _ = io.ReadAll(r.Body)
		r.Body = io.NopCloser(bytes.NewReader(body))
	}
	rule, ok := f.takeRule(r.Method, r.URL.Path, body)
	if !ok {
		return 0, false
	}
	if rule.Drop {
		if hj, ok := w.(http.Hijacker); ok {
			if conn, _, err := hj.Hijack(); err == nil {
				conn.Close()
				return 0, true
			}
		}
		// Without a raw connection, a panic with ErrAbortHandler is how net/http is told
		// to cut the connection.
		panic(http.ErrAbortHandler)
	}
	if rule.ResponseBody != "" {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(rule.Status)
		_, _ = io.WriteString(w, rule.ResponseBody)
		return rule.Status, true
	}
	writeErr(w, rule.Status, 0)
	return rule.Status, true
}
