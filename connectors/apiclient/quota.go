package apiclient

import (
	"github.com/groupsync/groupsync/connectors"

	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"
)

// resetGuard is added to a window's reset before the first request of the next window:
// X-RateLimit-Reset is in whole seconds, and a server that rounds it down would otherwise
// see the request a little before its window turns.
const resetGuard = time.Second

// Window is what a response said about the server's rate-limit window.
type Window = connectors.RateWindow

// ParseWindow reads the X-RateLimit headers. Reset is epoch seconds, or seconds from now
// when the value is too small to be an epoch (as some gateways send). ok is false when
// Remaining or Reset is missing or malformed.
func ParseWindow(h http.Header, now time.Time) (Window, bool) {
	remaining, err := strconv.Atoi(strings.TrimSpace(h.Get("X-Ratelimit-Remaining")))
	if err != nil || remaining < 0 {
		return Window{}, false
	}
	reset, err := strconv.ParseInt(strings.TrimSpace(h.Get("X-Ratelimit-Reset")), 10, 64)
	if err != nil || reset < 0 {
		return Window{}, false
	}
	w := Window{Remaining: remaining, Reset: time.Unix(reset, 0)}
	if reset < 1_000_000_000 {
		w.Reset = now.Add(time.Duration(reset) * time.Second)
	}
	if limit, err := strconv.Atoi(strings.TrimSpace(h.Get("X-Ratelimit-Limit"))); err == nil && limit > 0 {
		w.Limit = limit
	}
	return w, true
}

// pacer spaces requests so that a server's window budget lasts until its reset. The first
// half of a window's budget goes at the client's own rate (short syncs stay fast); below
// half, the requests left are spread evenly over the time left, so the window is never run
// dry and no 429 is provoked. Once the budget is spent, requests wait for the reset.
//
// Its view of the window comes from the last response; requests sent since count against
// it, so concurrent workers do not all spend the same remaining request.
type pacer struct {
	// maxWait is the client's MaxRetryWait: a window spent until further away than that
	// is not waited for here (the server's 429 then fails the call, naming the wait).
	maxWait time.Duration

	mu        sync.Mutex
	known     bool
	limit     int
	remaining int // what the server said, minus requests reserved since
	reset     time.Time
	next      time.Time // earliest send time of the next paced request
	inflight  int
}

// reserve books one request and returns how long to wait before sending it.
func (p *pacer) reserve(now time.Time) time.Duration {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.inflight++
	if !p.known {
		return 0
	}
	if !now.Before(p.reset) {
		// The window turned; the next response describes the new one.
		p.known = false
		return 0
	}
	if p.remaining <= 0 {
		// Spent: the first request of the next window goes after the reset; others are
		// booked after it, until a response describes the new window.
		at := later(p.next, p.reset.Add(resetGuard))
		if p.maxWait > 0 && at.Sub(now) > p.maxWait {
			return 0
		}
		p.next = at
		return at.Sub(now)
	}
	at := now
	if p.limit == 0 || p.remaining*2 <= p.limit {
		at = later(now, p.next)
		p.next = at.Add(p.reset.Sub(at) / time.Duration(p.remaining))
	}
	p.remaining--
	return min(at.Sub(now), max(p.maxWait, 0))
}

// done ends a reservation; w, when ok, is what the response said about the window.
func (p *pacer) done(w Window, ok bool, now time.Time) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.inflight--
	if !ok {
		return
	}
	// Requests still in flight may not be counted in w.Remaining yet: assume they will be.
	left := max(w.Remaining-p.inflight, 0)
	// Resets within a second of each other are one window: a reset sent as seconds from
	// now moves a little with every answer.
	switch {
	case !p.known || !now.Before(p.reset) || w.Reset.After(p.reset.Add(time.Second)):
		p.known, p.reset, p.remaining, p.limit = true, w.Reset, left, w.Limit
	case w.Reset.Before(p.reset.Add(-time.Second)):
		// A late answer from a window already over says nothing about this one.
	default:
		p.remaining = min(p.remaining, left)
		if w.Limit > 0 {
			p.limit = w.Limit
		}
	}
}

func later(a, b time.Time) time.Time {
	if b.After(a) {
		return b
	}
	return a
}
