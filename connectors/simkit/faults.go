// Package simkit is what the four API simulators share: fault injection (429 bursts in each
// API's own style, 5xx, slow and hung requests, truncated and malformed bodies, an auth
// outage), request counters by endpoint, an optional server-side rate limit, and a
// deterministic tenant generator. Each simulator keeps its own paths, envelopes and error
// bodies; simkit only decides when a request misbehaves.
package simkit

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"net/http"
	"strconv"
	"sync"
	"time"
)

// ErrorWriter writes one API's error response (status and body shape are the API's own).
type ErrorWriter func(w http.ResponseWriter, status int, retryAfter time.Duration)

// Faults are the misbehaviours a simulator can be told to show. All methods are safe for
// concurrent use. Each fault applies to requests whose endpoint label matches the filter
// given when armed ("" matches every endpoint).
type Faults struct {
	mu      sync.Mutex
	rng     *rand.Rand
	armed   []*fault
	latency time.Duration
	// limit, when set, is a server-side token bucket; a request over it gets a 429.
	limit   *bucket
	lockout time.Duration
	lockedT time.Time
	// window, when set, is a fixed budget per window announced in X-RateLimit headers.
	window *Window
	now    func() time.Time
	// rules are the per-request faults (Inject); observe is told of every answer (Observe).
	rules   []*Rule
	observe func(method, path string, status int)
}

type faultKind int

const (
	fault429 faultKind = iota
	faultStatus
	faultHang
	faultTruncate
	faultMalformed
	faultSlow
)

type fault struct {
	kind       faultKind
	endpoint   string
	remaining  int     // -1 = unlimited
	share      float64 // 0 = every matching request
	status     int
	retryAfter time.Duration
	delay      time.Duration
}

// NewFaults returns a fault set with a deterministic random source.
func NewFaults(seed uint64) *Faults {
	return &Faults{rng: rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15)), now: time.Now}
}

func (f *Faults) arm(ft *fault) {
	f.mu.Lock()
	f.armed = append(f.armed, ft)
	f.mu.Unlock()
}

// RateLimitNext answers the next n matching requests with the API's 429 signal, telling the
// client to wait retryAfter (0: the API's own default or none).
func (f *Faults) RateLimitNext(endpoint string, n int, retryAfter time.Duration) {
	f.arm(&fault{kind: fault429, endpoint: endpoint, remaining: n, retryAfter: retryAfter})
}

// StatusNext answers the next n matching requests (n < 0: all) with status.
func (f *Faults) StatusNext(endpoint string, n, status int) {
	f.arm(&fault{kind: faultStatus, endpoint: endpoint, remaining: n, status: status})
}

// StatusShare answers a share (0..1) of matching requests with status, for n of them at
// most (n < 0: no cap).
func (f *Faults) StatusShare(endpoint string, share float64, status, n int) {
	f.arm(&fault{kind: faultStatus, endpoint: endpoint, remaining: n, share: share, status: status})
}

// HangNext holds the next n matching requests open until the client gives up.
func (f *Faults) HangNext(endpoint string, n int) {
	f.arm(&fault{kind: faultHang, endpoint: endpoint, remaining: n})
}

// SlowNext delays the next n matching requests by d before answering normally.
func (f *Faults) SlowNext(endpoint string, n int, d time.Duration) {
	f.arm(&fault{kind: faultSlow, endpoint: endpoint, remaining: n, delay: d})
}

// TruncateNext cuts the next n matching successful bodies in half (the declared
// Content-Length stays whole, so the client sees an unexpected EOF).
func (f *Faults) TruncateNext(endpoint string, n int) {
	f.arm(&fault{kind: faultTruncate, endpoint: endpoint, remaining: n})
}

// MalformedNext replaces the next n matching successful bodies with invalid JSON.
func (f *Faults) MalformedNext(endpoint string, n int) {
	f.arm(&fault{kind: faultMalformed, endpoint: endpoint, remaining: n})
}

// Latency adds d to every request (0 turns it off).
func (f *Faults) Latency(d time.Duration) {
	f.mu.Lock()
	f.latency = d
	f.mu.Unlock()
}

// Limit enforces a server-side rate of perSecond with the given burst. After a rejected
// request, lockout (if > 0) rejects everything for that long (Airtable's 30 s penalty).
func (f *Faults) Limit(perSecond float64, burst int, lockout time.Duration) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if perSecond <= 0 {
		f.limit = nil
		return
	}
	f.limit = &bucket{rate: perSecond, burst: float64(burst), tokens: float64(burst), last: f.now()}
	f.lockout = lockout
}

// Clear disarms every fault, rule and limit (an observer stays).
func (f *Faults) Clear() {
	f.mu.Lock()
	f.armed, f.latency, f.limit, f.lockedT, f.rules, f.window = nil, 0, nil, time.Time{}, nil, nil
	f.mu.Unlock()
}

// take returns the fault to apply to a request on endpoint, consuming one use of it.
func (f *Faults) take(endpoint string) (*fault, time.Duration, bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	latency := f.latency
	if f.limit != nil {
		now := f.now()
		if now.Before(f.lockedT) {
			return &fault{kind: fault429, retryAfter: f.lockedT.Sub(now)}, latency, true
		}
		if !f.limit.allow(now) {
			if f.lockout > 0 {
				f.lockedT = now.Add(f.lockout)
			}
			wait := f.lockout
			if wait == 0 {
				wait = time.Duration(float64(time.Second) / f.limit.rate)
			}
			return &fault{kind: fault429, retryAfter: wait}, latency, true
		}
	}
	for i, ft := range f.armed {
		if ft.endpoint != "" && ft.endpoint != endpoint {
			continue
		}
		if ft.share > 0 && f.rng.Float64() >= ft.share {
			continue
		}
		cp := *ft
		if ft.remaining > 0 {
			ft.remaining--
			if ft.remaining == 0 {
				f.armed = append(f.armed[:i], f.armed[i+1:]...)
			}
		}
		return &cp, latency, true
	}
	return nil, latency, false
}

// takeWindow spends one request of the quota window, if one is set, and returns a 429
// fault when the window is spent.
func (f *Faults) takeWindow(h http.Header) (*fault, bool) {
	f.mu.Lock()
	q := f.window
	f.mu.Unlock()
	if q == nil {
		return nil, false
	}
	if ok, wait := q.Take(h); !ok {
		return &fault{kind: fault429, retryAfter: wait}, true
	}
	return nil, false
}

type bucket struct {
	rate, burst, tokens float64
	last                time.Time
}

func (b *bucket) allow(now time.Time) bool {
	b.tokens += now.Sub(b.last).Seconds() * b.rate
	if b.tokens > b.burst {
		b.tokens = b.burst
	}
	b.last = now
	if b.tokens < 1 {
		return false
	}
	b.tokens--
	return true
}

// Middleware wraps a simulator's handler. route maps a request to its endpoint label (the
// simulator's route template); writeErr writes the API's own error bodies.
func (f *Faults) Middleware(next http.Handler, route func(*http.Request) string, writeErr ErrorWriter, counter *Counter) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		sw := &statusWriter{ResponseWriter: w, status: http.StatusOK}
		if obs := f.observer(); obs != nil {
			defer func() { obs(r.Method, r.URL.Path, sw.status) }()
		}
		f.serve(sw, r, next, route, writeErr, counter)
	})
}

// serve answers one request: a matching rule first, then the endpoint faults, else next.
func (f *Faults) serve(w *statusWriter, r *http.Request, next http.Handler, route func(*http.Request) string, writeErr ErrorWriter, counter *Counter) {
	endpoint := route(r)
	counter.add(endpoint)
	if status, ok := f.applyRule(w, r, writeErr); ok {
		counter.addStatus(endpoint, status)
		return
	}
	ft, latency, ok := f.take(endpoint)
	if latency > 0 && !sleepCtx(r, latency) {
		return
	}
	if !ok {
		ft, ok = f.takeWindow(w.Header())
	}
	if !ok {
		sw := &statusWriter{ResponseWriter: w, status: http.StatusOK}
		next.ServeHTTP(sw, r)
		counter.addStatus(endpoint, sw.status)
		return
	}
	switch ft.kind {
	case fault429:
		counter.addStatus(endpoint, http.StatusTooManyRequests)
		writeErr(w, http.StatusTooManyRequests, ft.retryAfter)
	case faultStatus:
		counter.addStatus(endpoint, ft.status)
		writeErr(w, ft.status, 0)
	case faultHang:
		<-r.Context().Done()
	case faultSlow:
		if sleepCtx(r, ft.delay) {
			sw := &statusWriter{ResponseWriter: w, status: http.StatusOK}
			next.ServeHTTP(sw, r)
			counter.addStatus(endpoint, sw.status)
		}
	case faultTruncate, faultMalformed:
		rec := &recorder{header: http.Header{}, status: http.StatusOK}
		next.ServeHTTP(rec, r)
		counter.addStatus(endpoint, rec.status)
		body := rec.body.Bytes()
		if ft.kind == faultMalformed {
			body = []byte(`{"oops": [1, 2,, "not json`)
			rec.header.Set("Content-Length", strconv.Itoa(len(body)))
			for k, v := range rec.header {
				w.Header()[k] = v
			}
			w.WriteHeader(rec.status)
			_, _ = w.Write(body)
			return
		}
		writeTruncated(w, rec, body)
	}
}

// writeTruncated sends a response whose Content-Length promises the whole body but whose
// connection closes after half of it, as a proxy or server crash mid-body would.
func writeTruncated(w http.ResponseWriter, rec *recorder, body []byte) {
	var conn net.Conn
	var buf *bufio.ReadWriter
	err := errors.New("no hijacker")
	if hj, ok := w.(http.Hijacker); ok {
		conn, buf, err = hj.Hijack()
	}
	if err != nil {
		// Without a raw connection, an under-filled Content-Length makes net/http close
		// the connection itself after the handler returns.
		rec.header.Set("Content-Length", strconv.Itoa(len(body)))
		for k, v := range rec.header {
			w.Header()[k] = v
		}
		w.WriteHeader(rec.status)
		_, _ = w.Write(body[:len(body)/2])
		return
	}
	defer conn.Close()
	fmt.Fprintf(buf, "HTTP/1.1 %d %s\r\n", rec.status, http.StatusText(rec.status))
	rec.header.Set("Content-Length", strconv.Itoa(len(body)))
	rec.header.Set("Connection", "close")
	_ = rec.header.Write(buf)
	_, _ = buf.WriteString("\r\n")
	_, _ = buf.Write(body[:len(body)/2])
	_ = buf.Flush()
}

func sleepCtx(r *http.Request, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-r.Context().Done():
		return false
	case <-t.C:
		return true
	}
}

type recorder struct {
	header http.Header
	status int
	body   bytes.Buffer
}

func (r *recorder) Header() http.Header         { return r.header }
func (r *recorder) WriteHeader(s int)           { r.status = s }
func (r *recorder) Write(b []byte) (int, error) { return r.body.Write(b) }

// RetryAfterSeconds renders a wait as a Retry-After header value, rounding up.
func RetryAfterSeconds(d time.Duration) string {
	secs := int64((d + time.Second - 1) / time.Second)
	if secs < 1 {
		secs = 1
	}
	return strconv.FormatInt(secs, 10)
}
