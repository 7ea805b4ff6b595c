package simkit

import (
	"bufio"
	"errors"
	"net"
	"net/http"
	"sort"
	"sync"
)

// Counter counts requests by endpoint label and by (endpoint, status), so tests can assert
// "one request per page" and "no write request was sent".
type Counter struct {
	mu       sync.Mutex
	requests map[string]int
	statuses map[string]map[int]int
}

// NewCounter returns an empty counter.
func NewCounter() *Counter {
	return &Counter{requests: map[string]int{}, statuses: map[string]map[int]int{}}
}

func (c *Counter) add(endpoint string) {
	c.mu.Lock()
	c.requests[endpoint]++
	c.mu.Unlock()
}

func (c *Counter) addStatus(endpoint string, status int) {
	c.mu.Lock()
	m := c.statuses[endpoint]
	if m == nil {
		m = map[int]int{}
		c.statuses[endpoint] = m
	}
	m[status]++
	c.mu.Unlock()
}

// Count returns the requests seen on endpoint.
func (c *Counter) Count(endpoint string) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.requests[endpoint]
}

// CountStatus returns the requests on endpoint answered with status.
func (c *Counter) CountStatus(endpoint string, status int) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.statuses[endpoint][status]
}

// Total returns all requests seen.
func (c *Counter) Total() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	n := 0
	for _, v := range c.requests {
		n += v
	}
	return n
}

// Snapshot returns a copy of the per-endpoint counts.
func (c *Counter) Snapshot() map[string]int {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := make(map[string]int, len(c.requests))
	for k, v := range c.requests {
		out[k] = v
	}
	return out
}

// Endpoints lists the endpoints seen, sorted.
func (c *Counter) Endpoints() []string {
	snap := c.Snapshot()
	out := make([]string, 0, len(snap))
	for k := range snap {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// Reset zeroes the counts.
func (c *Counter) Reset() {
	c.mu.Lock()
	c.requests = map[string]int{}
	c.statuses = map[string]map[int]int{}
	c.mu.Unlock()
}

type statusWriter struct {
	http.ResponseWriter
	status int
}

func (w *statusWriter) WriteHeader(s int) {
	w.status = s
	w.ResponseWriter.WriteHeader(s)
}

// Flush keeps streaming responses streaming through the wrapper.
func (w *statusWriter) Flush() {
	if f, ok := w.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
}

// Hijack lets faults cut connections through the wrapper.
func (w *statusWriter) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	hj, ok := w.ResponseWriter.(http.Hijacker)
	if !ok {
		return nil, nil, errors.New("simkit: response writer cannot hijack")
	}
	return hj.Hijack()
}
