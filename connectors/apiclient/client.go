// Package apiclient is the HTTP plumbing every connector shares: base URL and client
// injection, per-request timeouts, auth, a capped body reader, a client-side rate limiter,
// and retries with exponential backoff that honour (but cap) the server's requested wait.
// Connectors only describe requests and decode their API's error bodies; how a call is
// timed, limited, retried and classified is decided here, once.
package apiclient

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/cenkalti/backoff/v4"
	"golang.org/x/time/rate"

	"github.com/groupsync/groupsync/connectors"
)

// Defaults for Config fields left zero.
const (
	DefaultTimeout      = 30 * time.Second
	DefaultMaxBodyBytes = 8 << 20
	DefaultMaxAttempts  = 5
	DefaultMaxRetryWait = 2 * time.Minute
	DefaultMaxElapsed   = 10 * time.Minute
	DefaultUserAgent    = "groupsync"
)

// ErrorInfo is what a connector reads out of an API's error response.
type ErrorInfo struct {
	// Type and Message are the API's own error type and message.
	Type    string
	Message string
	// RetryAfter is a wait the body asked for (DevRev's retry_after); the Retry-After header
	// is read by the client itself.
	RetryAfter time.Duration
	// Class overrides the status-based classification (e.g. Airtable SCIM answers an unknown
	// group id with 400: the connector says ErrNotFound). Nil keeps the default.
	Class error
}

// Config configures a Client. Zero values take the defaults above.
type Config struct {
	// System is the configured system name, used in every error.
	System  string
	BaseURL string
	// HTTPClient is the client to use; nil means a new client without a global timeout
	// (each request gets Timeout through its context).
	HTTPClient *http.Client
	UserAgent  string
	Timeout    time.Duration
	// MaxBodyBytes caps one response body; a larger body fails the call with a clear error.
	MaxBodyBytes int64
	// RateLimit and Burst configure the client-side limiter; RateLimit 0 means unlimited.
	RateLimit rate.Limit
	Burst     int
	// MaxAttempts bounds the attempts per request, the first included.
	MaxAttempts int
	// MaxElapsed bounds the time spent retrying one request.
	MaxElapsed time.Duration
	// MaxRetryWait caps a server-requested wait; a longer one fails the call with
	// ErrRateLimited instead of parking the caller. A connector whose API announces a quota
	// window sets it to the window's length (ForSystem's Limits), so a spent window is
	// waited out rather than failed.
	MaxRetryWait time.Duration
	// RateLimitPenalty is the wait after a 429 that names none (Airtable: a fixed 30 s). Zero
	// means exponential backoff.
	RateLimitPenalty time.Duration
	// Auth adds credentials to a request. It must not log or return them in errors.
	Auth func(ctx context.Context, r *http.Request) error
	// DecodeError reads the API's error body. Nil means the status alone classifies.
	DecodeError func(status int, header http.Header, body []byte) ErrorInfo
	Logger      *slog.Logger
	Observer    connectors.RequestObserver
	// Sleep waits for d or until ctx ends; nil means a real timer.
	Sleep func(ctx context.Context, d time.Duration) error
	// Now is the clock used for lockouts; nil means time.Now.
	Now func() time.Time
	// SleepFrom waits d counted from the clock reading from, or until ctx ends; nil means
	// Sleep(ctx, d). Lockout and window waits use it: they are waits for a moment the caller
	// read off the clock, so a clock that an injected Sleep moves (airtable's) can end
	// concurrent waits for one lockout at its end, not once per waiter.
	SleepFrom func(ctx context.Context, from time.Time, d time.Duration) error
	// InitialBackoff is the first retry wait before jitter; 0 means 500ms.
	InitialBackoff time.Duration
	// Budget, when set, is a request budget shared with other clients of the same system
	// (other replicas, other flows): every request waits for it after the local limiter,
	// and rate-limit signals are fed back to it. Nil means the limit is this client's own.
	Budget connectors.Budget
	// Budgets opens Budget when Budget is nil, with this client's effective rate and burst
	// (ForSystem copies connectors.Deps.Budgets here). Nil means no shared budget.
	Budgets connectors.BudgetSource
	// AllowInsecureHTTP permits an http:// BaseURL on a host that is not loopback
	// (allow_insecure_http): credentials then cross the network in clear text.
	AllowInsecureHTTP bool
}

// Client performs requests against one system.
type Client struct {
	cfg     Config
	base    *url.URL
	http    *http.Client
	limiter *rate.Limiter
	// pacer spaces requests by the server's X-RateLimit window, when it announces one.
	pacer pacer

	mu sync.Mutex
	// lockedUntil holds every request of this client back after a rate-limit signal, so
	// concurrent workers do not keep knocking during a lockout.
	lockedUntil time.Time
	// lockouts counts the lockouts announced (lockUntil calls that extended lockedUntil).
	lockouts uint64
}

// New validates cfg and returns a Client.
func New(cfg Config) (*Client, error) {
	if cfg.System == "" {
		return nil, errors.New("apiclient: system name is required")
	}
	base, err := url.Parse(cfg.BaseURL)
	if err != nil || (base.Scheme != "http" && base.Scheme != "https") || base.Host == "" {
		return nil, fmt.Errorf("%s: base url %q must be an absolute http(s) URL", cfg.System, RedactURL(cfg.BaseURL))
	}
	if err := CheckScheme(base, cfg.AllowInsecureHTTP); err != nil {
		return nil, fmt.Errorf("%s: %w", cfg.System, err)
	}
	base.Path = strings.TrimSuffix(base.Path, "/")
	if cfg.HTTPClient == nil {
		cfg.HTTPClient = &http.Client{}
	}
	// A copy: the shared client's transport (and its fencing) is kept, with a redirect
	// policy bound to this system's host.
	hc := *cfg.HTTPClient
	hc.CheckRedirect = sameOrigin(base)
	cfg.HTTPClient = &hc
	if cfg.UserAgent == "" {
		cfg.UserAgent = DefaultUserAgent
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = DefaultTimeout
	}
	if cfg.MaxBodyBytes <= 0 {
		cfg.MaxBodyBytes = DefaultMaxBodyBytes
	}
	if cfg.MaxAttempts <= 0 {
		cfg.MaxAttempts = DefaultMaxAttempts
	}
	if cfg.MaxElapsed <= 0 {
		cfg.MaxElapsed = DefaultMaxElapsed
	}
	if cfg.MaxRetryWait <= 0 {
		cfg.MaxRetryWait = DefaultMaxRetryWait
	}
	if cfg.InitialBackoff <= 0 {
		cfg.InitialBackoff = 500 * time.Millisecond
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Sleep == nil {
		cfg.Sleep = SleepContext
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.SleepFrom == nil {
		sleep := cfg.Sleep
		cfg.SleepFrom = func(ctx context.Context, _ time.Time, d time.Duration) error { return sleep(ctx, d) }
	}
	limit, burst := cfg.RateLimit, cfg.Burst
	if limit <= 0 {
		limit = rate.Inf
	}
	if burst <= 0 {
		burst = 1
	}
	if cfg.Budget == nil && cfg.Budgets != nil && limit != rate.Inf {
		cfg.Budget = cfg.Budgets(cfg.System, float64(limit), burst)
	}
	return &Client{cfg: cfg, base: base, http: cfg.HTTPClient, limiter: rate.NewLimiter(limit, burst),
		pacer: pacer{maxWait: cfg.MaxRetryWait}}, nil
}

// System returns the configured system name.
func (c *Client) System() string { return c.cfg.System }

// BaseURL returns the base URL the client resolves paths against.
func (c *Client) BaseURL() string { return c.base.String() }

// Request describes one API call.
type Request struct {
	Method string
	// Path is relative to the base URL ("/groups.list"), or an absolute URL on the same
	// host (a DRF `next` link). Links to another host are refused: credentials must not
	// follow a server-provided URL elsewhere.
	Path  string
	Query url.Values
	// JSON, if non-nil, is sent as the JSON body; Form, if non-nil, as a form body.
	JSON any
	Form url.Values
	// ContentType overrides the JSON content type (SCIM wants application/scim+json).
	ContentType string
	// Header holds extra request headers (SCIM's If-Match, an Accept the API prefers). They
	// are set after the client's defaults, so an Accept here replaces the default; they must
	// not carry credentials (Auth adds those, and headers are never quoted in errors).
	Header http.Header
	// Endpoint is a route template for errors and metrics ("groups.list",
	// "GET /api/v2/group/{id}/subscribe/"); empty means "METHOD path".
	Endpoint string
	// Idempotent marks a request that may be repeated after a failure whose outcome is
	// unknown (5xx, timeout). GET, HEAD, PUT and DELETE are always treated as idempotent.
	// Other requests are only retried when the server surely did not act (429, connection
	// refused); otherwise the error is returned so the engine can reconcile first.
	Idempotent bool
}

func (r Request) label() string {
	if r.Endpoint != "" {
		return r.Endpoint
	}
	return r.Method + " " + r.Path
}

func (r Request) idempotent() bool {
	switch r.Method {
	case http.MethodGet, http.MethodHead, http.MethodPut, http.MethodDelete:
		return true
	}
	return r.Idempotent
}

// Do performs req with retries and decodes a 2xx JSON body into out (if out is non-nil and
// the body is not empty). Unknown fields are tolerated; fields out declares must have the
// declared types.
func (c *Client) Do(ctx context.Context, req Request, out any) error {
	body, _, err := c.DoRaw(ctx, req)
	if err != nil {
		return err
	}
	if out == nil || len(bytes.TrimSpace(body)) == 0 {
		return nil
	}
	return c.Decode(req, body, out)
}

// Decode decodes a successful body into out and classifies a failure: a body cut short is
// retryable (the next attempt may get it whole), anything else malformed is permanent.
func (c *Client) Decode(req Request, body []byte, out any) error {
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.UseNumber()
	if err := dec.Decode(out); err != nil {
		class := connectors.ErrPermanent
		if errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, io.EOF) {
			class = connectors.ErrRetryable
		}
		return &connectors.Error{System: c.cfg.System, Op: req.label(), Class: class,
			Message: "malformed response body", Err: err}
	}
	return nil
}

// DoRaw performs req with retries and returns the 2xx body and headers.
func (c *Client) DoRaw(ctx context.Context, req Request) ([]byte, http.Header, error) {
	u, err := c.resolve(req)
	if err != nil {
		return nil, nil, err
	}
	bo := backoff.NewExponentialBackOff()
	bo.InitialInterval = c.cfg.InitialBackoff
	bo.RandomizationFactor = 0.5
	bo.Multiplier = 2
	bo.MaxInterval = 30 * time.Second
	bo.MaxElapsedTime = 0 // elapsed is enforced below, against the injected clock
	bo.Reset()
	start := c.cfg.Now()

	for attempt := 1; ; attempt++ {
		var sentIn uint64
		body, hdr, err := c.attempt(ctx, req, u, &sentIn)
		if err == nil {
			return body, hdr, nil
		}
		if ctxErr := ctx.Err(); ctxErr != nil {
			return nil, nil, fmt.Errorf("%s: %s: %w", c.cfg.System, req.label(), ctxErr)
		}
		if errors.Is(err, connectors.ErrRateLimited) && c.lockoutsSince(sentIn) {
			// Another request of this client met a lockout while this one was out, so this
			// refusal is that lockout's, not a try of this request's own: concurrent workers
			// must not spend each other's attempts. The request that met it first counts it,
			// so a server that never stops refusing still ends each request.
			attempt--
		}
		wait, retry := c.retryWait(req, err, bo)
		if !retry || attempt >= c.cfg.MaxAttempts {
			return nil, nil, err
		}
		if c.cfg.Now().Add(wait).Sub(start) > c.cfg.MaxElapsed {
			return nil, nil, err
		}
		rateLimited := errors.Is(err, connectors.ErrRateLimited)
		if c.cfg.Observer != nil {
			c.cfg.Observer.ObserveRetry(c.cfg.System, req.label(), wait, rateLimited)
		}
		c.cfg.Logger.DebugContext(ctx, "retrying request", "endpoint", req.label(),
			"attempt", attempt, "wait", wait, "rate_limited", rateLimited, "error", err)
		if rateLimited {
			// The lockout applies to every request of this client, not only this one.
			c.lockUntil(c.cfg.Now().Add(wait))
			continue
		}
		if err := c.cfg.Sleep(ctx, wait); err != nil {
			return nil, nil, fmt.Errorf("%s: %s: %w", c.cfg.System, req.label(), err)
		}
	}
}

// retryWait decides whether err is worth another attempt and how long to wait first.
func (c *Client) retryWait(req Request, err error, bo *backoff.ExponentialBackOff) (time.Duration, bool) {
	var apiErr *connectors.Error
	if !errors.As(err, &apiErr) {
		return 0, false
	}
	next := bo.NextBackOff()
	switch {
	case errors.Is(err, connectors.ErrRateLimited):
		// The server did not act on a throttled request, so even a create may be repeated.
		wait := apiErr.RetryAfter
		if wait == 0 && c.cfg.RateLimitPenalty > 0 {
			wait = c.cfg.RateLimitPenalty
		}
		if wait == 0 {
			wait = next
		}
		if wait > c.cfg.MaxRetryWait {
			// Give the call up rather than park a worker for an absurd wait; the error
			// carries the wait so the engine can report it.
			apiErr.Message = strings.TrimSpace(apiErr.Message + fmt.Sprintf(" (server wait %s exceeds max_retry_wait %s)", wait, c.cfg.MaxRetryWait))
			return 0, false
		}
		return wait, true
	case errors.Is(err, connectors.ErrRetryable):
		if !req.idempotent() && !notSent(apiErr.Err) {
			return 0, false
		}
		if apiErr.RetryAfter > next {
			next = apiErr.RetryAfter
		}
		if next > c.cfg.MaxRetryWait {
			return 0, false
		}
		return next, true
	}
	return 0, false
}

// notSent reports whether a transport error proves the request never reached the server.
func notSent(err error) bool {
	return errors.Is(err, syscall.ECONNREFUSED)
}

func (c *Client) lockUntil(t time.Time) {
	c.mu.Lock()
	if t.After(c.lockedUntil) {
		c.lockedUntil = t
		c.lockouts++
	}
	c.mu.Unlock()
}

// lockoutCount is how many lockouts have been announced so far.
func (c *Client) lockoutCount() uint64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.lockouts
}

// lockoutsSince reports whether a lockout was announced after the count n was read.
func (c *Client) lockoutsSince(n uint64) bool { return c.lockoutCount() != n }

// waitTurn blocks until any rate-limit lockout has passed, the window pacer's turn has come
// and the limiter grants a token. On success the caller holds a pacer reservation it must
// end with pacer.done.
func (c *Client) waitTurn(ctx context.Context) error {
	var slept time.Time
	if err := c.waitLockout(ctx, &slept); err != nil {
		return err
	}
	// The window pacer books the request before the local limiter: its wait may be long
	// (the budget is spent until the reset), the limiter's is short.
	now := c.cfg.Now()
	if d := c.pacer.reserve(now); d > 0 {
		c.cfg.Logger.DebugContext(ctx, "pacing to the rate-limit window", "wait", d)
		err := c.cfg.SleepFrom(ctx, now, d)
		if err == nil {
			// A lockout announced while this request waited for its slot holds it too.
			err = c.waitLockout(ctx, &slept)
		}
		if err != nil {
			c.pacer.done(Window{}, false, time.Time{})
			return err
		}
	}
	if err := c.limiter.Wait(ctx); err != nil {
		c.pacer.done(Window{}, false, time.Time{})
		return err
	}
	if c.cfg.Budget != nil {
		// The shared budget comes last: a token taken from it is spent at once, not held
		// through a local wait while other replicas go short.
		if err := c.cfg.Budget.Wait(ctx); err != nil {
			c.pacer.done(Window{}, false, time.Time{})
			return err
		}
	}
	return nil
}

// waitLockout sleeps until the client's lockout has passed. It sleeps once per lockout value
// (slept is the last one slept) rather than polling the clock, so an injected Sleep that
// returns at once (tests) does not spin; a lockout extended meanwhile is slept again.
func (c *Client) waitLockout(ctx context.Context, slept *time.Time) error {
	for {
		c.mu.Lock()
		until := c.lockedUntil
		c.mu.Unlock()
		if !until.After(*slept) {
			return nil
		}
		now := c.cfg.Now()
		if d := until.Sub(now); d > 0 {
			// Round up so the wait is never shorter than the lockout the server asked for.
			d = d.Truncate(time.Millisecond) + time.Millisecond
			if err := c.cfg.SleepFrom(ctx, now, d); err != nil {
				return err
			}
		}
		*slept = until
	}
}

func (c *Client) resolve(req Request) (*url.URL, error) {
	var u *url.URL
	if strings.HasPrefix(req.Path, "http://") || strings.HasPrefix(req.Path, "https://") {
		abs, err := url.Parse(req.Path)
		if err != nil {
			return nil, c.permanent(req, fmt.Errorf("parse link: %w", err))
		}
		if abs.Scheme != c.base.Scheme || abs.Host != c.base.Host {
			return nil, c.permanent(req, fmt.Errorf("refusing link to %s://%s: not the configured host %s", abs.Scheme, abs.Host, c.base.Host))
		}
		u = abs
	} else {
		rel, err := url.Parse(req.Path)
		if err != nil {
			return nil, c.permanent(req, fmt.Errorf("parse path: %w", err))
		}
		cp := *c.base
		cp.Path = c.base.Path + "/" + strings.TrimPrefix(rel.Path, "/")
		cp.RawQuery = rel.RawQuery
		u = &cp
	}
	if len(req.Query) > 0 {
		q := u.Query()
		for k, vs := range req.Query {
			q[k] = vs
		}
		u.RawQuery = q.Encode()
	}
	return u, nil
}

func (c *Client) permanent(req Request, err error) error {
	return &connectors.Error{System: c.cfg.System, Op: req.label(), Class: connectors.ErrPermanent, Err: err}
}

// attempt performs one HTTP exchange and classifies its outcome; sentIn is set to the
// lockout count when the request goes out.
func (c *Client) attempt(ctx context.Context, req Request, u *url.URL, sentIn *uint64) ([]byte, http.Header, error) {
	if err := c.waitTurn(ctx); err != nil {
		return nil, nil, err
	}
	*sentIn = c.lockoutCount()
	var win Window
	var winOK bool
	defer func() { c.pacer.done(win, winOK, c.cfg.Now()) }()
	actx, cancel := context.WithTimeout(ctx, c.cfg.Timeout)
	defer cancel()
	hr, err := c.newRequest(ctx, actx, req, u)
	if err != nil {
		return nil, nil, err
	}

	started := c.cfg.Now()
	resp, err := c.http.Do(hr)
	if err != nil {
		c.observe(req, 0, started)
		if ctx.Err() != nil {
			return nil, nil, ctx.Err()
		}
		class := connectors.ErrRetryable
		if errors.Is(err, errRedirectRefused) {
			class = connectors.ErrPermanent // the same request would be redirected again
		}
		return nil, nil, &connectors.Error{System: c.cfg.System, Op: req.label(), Class: class,
			Err: transportError(err, actx, c.cfg.Timeout)}
	}
	defer resp.Body.Close()
	// Every answer, a 429 included, says where the window stands.
	win, winOK = ParseWindow(resp.Header, c.cfg.Now())
	data, readErr := io.ReadAll(io.LimitReader(resp.Body, c.cfg.MaxBodyBytes+1))
	c.observe(req, resp.StatusCode, started)
	if readErr != nil {
		if ctx.Err() != nil {
			return nil, nil, ctx.Err()
		}
		return nil, nil, &connectors.Error{System: c.cfg.System, Op: req.label(), Class: connectors.ErrRetryable,
			Status: resp.StatusCode, Message: "reading response body", Err: transportError(readErr, actx, c.cfg.Timeout)}
	}
	if int64(len(data)) > c.cfg.MaxBodyBytes {
		return nil, nil, &connectors.Error{System: c.cfg.System, Op: req.label(), Class: connectors.ErrPermanent,
			Status: resp.StatusCode, Message: fmt.Sprintf("response body exceeds max_body_bytes (%d bytes)", c.cfg.MaxBodyBytes)}
	}
	if resp.StatusCode >= 200 && resp.StatusCode < 300 {
		c.feedBudget(ctx, win, winOK, 0)
		return data, resp.Header, nil
	}
	err = c.statusError(req, resp, data)
	var wait time.Duration
	if resp.StatusCode == http.StatusTooManyRequests {
		wait = connectors.RetryAfterOf(err)
		if wait == 0 {
			wait = c.cfg.RateLimitPenalty
		}
	}
	c.feedBudget(ctx, win, winOK, wait)
	return nil, nil, err
}

// feedBudget tells the shared budget what the server said about its limit, once the
// response has been read (the budget may write to Postgres: no HTTP exchange is waiting).
func (c *Client) feedBudget(ctx context.Context, win Window, winOK bool, retryAfter time.Duration) {
	if c.cfg.Budget == nil {
		return
	}
	// A pause longer than this client would wait is not one to impose on every replica:
	// the call that met it fails as rate-limited, and the next ones ask again.
	retryAfter = min(retryAfter, c.cfg.MaxRetryWait)
	if winOK && win.Reset.Sub(c.cfg.Now()) > c.cfg.MaxRetryWait {
		winOK = false
	}
	if !winOK && retryAfter == 0 {
		return
	}
	c.cfg.Budget.Feedback(ctx, connectors.BudgetFeedback{Window: win, HasWindow: winOK, RetryAfter: retryAfter})
}

// newRequest builds the HTTP request of one attempt: body, headers and credentials.
func (c *Client) newRequest(ctx, actx context.Context, req Request, u *url.URL) (*http.Request, error) {
	var body io.Reader
	contentType := ""
	switch {
	case req.JSON != nil:
		b, err := json.Marshal(req.JSON)
		if err != nil {
			return nil, c.permanent(req, fmt.Errorf("encode request: %w", err))
		}
		body = bytes.NewReader(b)
		contentType = "application/json"
		if req.ContentType != "" {
			contentType = req.ContentType
		}
	case req.Form != nil:
		body = strings.NewReader(req.Form.Encode())
		contentType = "application/x-www-form-urlencoded"
	}
	hr, err := http.NewRequestWithContext(actx, req.Method, u.String(), body)
	if err != nil {
		return nil, c.permanent(req, err)
	}
	hr.Header.Set("User-Agent", c.cfg.UserAgent)
	hr.Header.Set("Accept", "application/json")
	if contentType != "" {
		hr.Header.Set("Content-Type", contentType)
	}
	for k, vs := range req.Header {
		hr.Header[http.CanonicalHeaderKey(k)] = append([]string(nil), vs...)
	}
	if c.cfg.Auth != nil {
		if err := c.cfg.Auth(ctx, hr); err != nil {
			return nil, &connectors.Error{System: c.cfg.System, Op: req.label(), Class: connectors.ErrUnauthorized,
				Message: "preparing credentials", Err: err}
		}
	}
	return hr, nil
}

func (c *Client) observe(req Request, status int, started time.Time) {
	if c.cfg.Observer != nil {
		c.cfg.Observer.ObserveRequest(c.cfg.System, req.label(), status, c.cfg.Now().Sub(started))
	}
}

// statusError classifies a non-2xx response.
func (c *Client) statusError(req Request, resp *http.Response, body []byte) error {
	e := &connectors.Error{System: c.cfg.System, Op: req.label(), Status: resp.StatusCode}
	switch s := resp.StatusCode; {
	case s == http.StatusUnauthorized || s == http.StatusForbidden:
		e.Class = connectors.ErrUnauthorized
	case s == http.StatusNotFound || s == http.StatusGone:
		e.Class = connectors.ErrNotFound
	case s == http.StatusTooManyRequests:
		e.Class = connectors.ErrRateLimited
	case s == http.StatusRequestTimeout || s >= 500:
		e.Class = connectors.ErrRetryable
	default:
		e.Class = connectors.ErrPermanent
	}
	if c.cfg.DecodeError != nil {
		info := c.cfg.DecodeError(resp.StatusCode, resp.Header, body)
		e.Type, e.Message, e.RetryAfter = info.Type, truncate(info.Message, 300), info.RetryAfter
		if info.Class != nil {
			e.Class = info.Class
		}
	}
	if ra, ok := ParseRetryAfter(resp.Header.Get("Retry-After"), c.cfg.Now()); ok && ra > e.RetryAfter {
		e.RetryAfter = ra
	}
	return e
}

// ParseRetryAfter reads a Retry-After header: delay seconds or an HTTP date.
func ParseRetryAfter(v string, now time.Time) (time.Duration, bool) {
	v = strings.TrimSpace(v)
	if v == "" {
		return 0, false
	}
	if secs, err := strconv.ParseInt(v, 10, 64); err == nil {
		if secs < 0 {
			return 0, false
		}
		if secs > int64((365*24*time.Hour)/time.Second) {
			secs = int64((365 * 24 * time.Hour) / time.Second)
		}
		return time.Duration(secs) * time.Second, true
	}
	if t, err := http.ParseTime(v); err == nil {
		d := t.Sub(now)
		if d < 0 {
			d = 0
		}
		return d, true
	}
	return 0, false
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}

// transportError names a timeout as such, so a hung request reads as one in the logs, and
// takes the query string out of the URL net/http quotes (emails, tokens: see RedactURL).
func transportError(err error, actx context.Context, timeout time.Duration) error {
	var ue *url.Error
	if errors.As(err, &ue) {
		redacted := *ue
		redacted.URL = RedactURL(ue.URL)
		err = &redacted
	}
	if errors.Is(actx.Err(), context.DeadlineExceeded) {
		return fmt.Errorf("request timed out after %s: %w", timeout, err)
	}
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return fmt.Errorf("request timed out: %w", err)
	}
	return err
}

// SleepContext waits for d, or until ctx ends (its error then): the real Sleep of a Config.
func SleepContext(ctx context.Context, d time.Duration) error {
	if d <= 0 {
		return ctx.Err()
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}
