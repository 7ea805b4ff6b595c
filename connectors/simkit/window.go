package simkit

import (
	"net/http"
	"strconv"
	"sync"
	"time"
)

// Window is a fixed request budget per window, as DevRev enforces its 5-minute quota: the
// first request of a window opens it, every response says what is left in
// X-RateLimit-Limit / X-RateLimit-Remaining / X-RateLimit-Reset (epoch seconds), and a
// request over the budget is refused until the window resets. Safe for concurrent use.
type Window struct {
	limit  int
	length time.Duration
	now    func() time.Time

	mu   sync.Mutex
	left int
	end  time.Time
}

// NewWindow returns a budget of limit requests per window of length; now nil means
// time.Now.
func NewWindow(limit int, length time.Duration, now func() time.Time) *Window {
	if now == nil {
		now = time.Now
	}
	return &Window{limit: limit, length: length, now: now}
}

// Take spends one request, writes the X-RateLimit headers, and reports whether the request
// may proceed; when it may not, wait is the time until the window resets.
func (q *Window) Take(h http.Header) (ok bool, wait time.Duration) {
	now := q.now()
	q.mu.Lock()
	if !now.Before(q.end) {
		// Windows end on a whole second so X-RateLimit-Reset (epoch seconds) is exact;
		// never shorter than a second, or a sub-second window would reset at once.
		q.end = now.Add(q.length).Truncate(time.Second)
		if !q.end.After(now) {
			q.end = q.end.Add(time.Second)
		}
		q.left = q.limit
	}
	q.left--
	left, end := q.left, q.end
	q.mu.Unlock()
	h.Set("X-Ratelimit-Limit", strconv.Itoa(q.limit))
	h.Set("X-Ratelimit-Remaining", strconv.Itoa(max(left, 0)))
	h.Set("X-Ratelimit-Reset", strconv.FormatInt(end.Unix(), 10))
	if left < 0 {
		return false, end.Sub(now)
	}
	return true, 0
}

// Spend uses up what is left of the current window (opening one if none is open), as
// another client of the same token would.
func (q *Window) Spend() {
	q.Take(http.Header{})
	q.mu.Lock()
	q.left = 0
	q.mu.Unlock()
}

// QuotaWindow enforces a budget of limit requests per window of length on every endpoint
// (limit <= 0 turns it off), with the X-RateLimit headers on every answer. It returns the
// window so a test can spend it.
func (f *Faults) QuotaWindow(limit int, length time.Duration) *Window {
	f.mu.Lock()
	defer f.mu.Unlock()
	if limit <= 0 {
		f.window = nil
		return nil
	}
	f.window = NewWindow(limit, length, f.now)
	return f.window
}
