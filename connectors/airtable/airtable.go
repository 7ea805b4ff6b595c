// Package airtable is the connector for Airtable Enterprise user groups.
//
// Airtable splits groups across two APIs. The Web API's meta endpoints read them: one call
// for the enterprise account's groupIds, then one per group with its members inline (user
// id, email, name, role). They cannot write. SCIM 2.0 writes: create, rename and delete
// groups, and add or remove members by user id in PatchOp requests. SCIM cannot see or set
// the manager/member role, so roles are read-only here (Capabilities.WriteRoles false).
//
// Both APIs share one token and one published limit (50 requests/s per token across all
// traffic); a request over it locks the token out for 30 s. The connector therefore keeps
// meta and SCIM traffic behind one limiter and one lockout whenever both live on the same
// host (the default), and splits the budget in two when they do not.
package airtable

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"
	"time"

	"golang.org/x/time/rate"

	"github.com/groupsync/groupsync/connectors"
	"github.com/groupsync/groupsync/connectors/apiclient"
	"github.com/groupsync/groupsync/connectors/scim/scimclient"
)

// Defaults, from Airtable's published limits (reference/apis.md §4).
const (
	// DefaultBaseURL is the Web API host the meta endpoints live under.
	DefaultBaseURL = "https://api.airtable.com"
	// DefaultSCIMURL is the SCIM base. Older renderings of the docs show
	// https://airtable.com/scim/v2; the scim_url option covers that.
	DefaultSCIMURL = "https://api.airtable.com/scim/v2"

	// PublishedRateLimit is Airtable's limit per token, across meta and SCIM traffic.
	PublishedRateLimit = 50
	// DefaultRateLimit and DefaultBurst keep rate+burst at 50: the token bucket can then
	// never put more than 50 requests into any one-second window, whatever Airtable's
	// window alignment is (it documents none), and going over costs a 30 s lockout of the
	// whole token (about 1,400 requests at this rate). Within that sum the rate is the
	// ceiling on throughput and the burst what absorbs a stall: 45 + 5 could never reach
	// more than 0.90 of the limit, so any gap at all put a push below the 0.9 target
	// (issue 13). 48 + 2 leaves a ceiling of 0.96 and still 2 requests/s of margin in a
	// steady second for answers that arrive bunched. The price is a small burst: a caller
	// (or a shared-budget take, state.Budget, whose bucket and batch are this burst)
	// delayed past 2/48 s ≈ 40 ms loses the tokens meanwhile, so a starved machine gets
	// less than 48/s, never more than 50.
	DefaultRateLimit = 48
	DefaultBurst     = 2
	// RateLimitPenalty is Airtable's documented wait after a 429. No Retry-After header is
	// documented, so the client waits this long unless the server names a wait.
	RateLimitPenalty = 30 * time.Second

	// DefaultConcurrency is how many group fetches run at once. Each takes a round trip
	// (100–300 ms on the real API) and its merge into the mirror: at 150 ms, 5 in flight
	// listed at 30 req/s, 0.6 of the limit. 16 reach the 48 req/s limiter up to ~300 ms a
	// call; more would only queue at the limiter while holding memory for their responses.
	DefaultConcurrency = 16
	// MaxConcurrency bounds the concurrency option.
	MaxConcurrency = 32

	// DefaultPageSize is how many user ids one users-by-id request carries, and how many
	// groups one ListGroups callback receives. Airtable documents no cap on id[]; 100 ids
	// make a query of about 2.6 KB, far below the 16,000-character URL limit of the Web API
	// (support.airtable.com, "URL length limitations for web API requests"), and a
	// 100-user response stays well under the body cap.
	DefaultPageSize = 100
	// MaxPageSize bounds the page_size setting for the same reason.
	MaxPageSize = 100

	// MaxMembersPerWrite is how many members one SCIM PatchOp carries. Airtable documents
	// no cap on Operations; 100 is the cap other SCIM providers document (e.g. AWS IAM
	// Identity Center), keeps a remove request (one filtered op per member) near 6 KB, and
	// bounds what a refused all-or-nothing PatchOp puts back on the engine.
	MaxMembersPerWrite = 100
)

// Option keys accepted in SystemConfig.Options.
const (
	OptionEnterpriseAccountID = "enterprise_account_id"
	OptionSCIMURL             = "scim_url"
)

// Endpoint labels: route templates, used in errors and metrics (never an id).
const (
	epEnterprise = "GET /v0/meta/enterpriseAccounts/{enterpriseAccountId}"
	epUsers      = "GET /v0/meta/enterpriseAccounts/{enterpriseAccountId}/users"
	epGroup      = "GET /v0/meta/groups/{groupId}"
	epSCIMList   = "GET /scim/v2/Groups"
	epSCIMCreate = "POST /scim/v2/Groups"
	epSCIMGet    = "GET /scim/v2/Groups/{groupId}"
	epSCIMPatch  = "PATCH /scim/v2/Groups/{groupId}"
	epSCIMPut    = "PUT /scim/v2/Groups/{groupId}" // never sent: Airtable takes PATCH
	epSCIMDelete = "DELETE /scim/v2/Groups/{groupId}"
)

var (
	_ connectors.Connector          = (*conn)(nil)
	_ connectors.Writer             = (*conn)(nil)
	_ connectors.InlineMemberLister = (*conn)(nil)
	_ connectors.Opener             = Open
)

// conn is one configured Airtable enterprise.
type conn struct {
	name       string
	enterprise string
	meta       *apiclient.Client
	// scim is meta itself when both APIs share a host, so they share limiter and lockout.
	scim *apiclient.Client
	// scimBase is prefixed to SCIM paths: the absolute SCIM URL when scim == meta, else "".
	scimBase    string
	concurrency int
	pageSize    int
	log         *slog.Logger
	// groups is the SCIM write client every group write goes through (push.go).
	groups *scimclient.Client
}

// Open validates cfg and returns the connector. Options: enterprise_account_id (required),
// scim_url (default DefaultSCIMURL). Credentials: Token only.
func Open(cfg connectors.SystemConfig, deps connectors.Deps) (connectors.Connector, error) {
	if cfg.Name == "" {
		return nil, errors.New("airtable: system name is required")
	}
	fail := func(format string, args ...any) error {
		return fmt.Errorf("airtable system %q: %s", cfg.Name, fmt.Sprintf(format, args...))
	}
	if cfg.Kind != "" && cfg.Kind != connectors.KindAirtable {
		return nil, fail("kind %q is not %q", cfg.Kind, connectors.KindAirtable)
	}
	var unknown []string
	for k := range cfg.Options {
		if k != OptionEnterpriseAccountID && k != OptionSCIMURL {
			unknown = append(unknown, k)
		}
	}
	if len(unknown) > 0 {
		slices.Sort(unknown)
		return nil, fail("unknown option(s) %s (known: %s, %s)", strings.Join(unknown, ", "), OptionEnterpriseAccountID, OptionSCIMURL)
	}
	ent := strings.TrimSpace(cfg.Options[OptionEnterpriseAccountID])
	if ent == "" {
		return nil, fail("option %s is required", OptionEnterpriseAccountID)
	}
	if !isAlnum(ent) {
		return nil, fail("option %s %q must be letters and digits (an id like entXXXXXXXXXXXXXX)", OptionEnterpriseAccountID, ent)
	}
	if !cfg.Token.IsSet() {
		return nil, fail("token is required (a personal access token or service-account token with enterprise scopes)")
	}
	if cfg.Username != "" || cfg.Password.IsSet() || cfg.JWTSecret.IsSet() {
		return nil, fail("only token is used; username, password and jwt_secret must be empty")
	}
	baseURL := cfg.BaseURL
	if baseURL == "" {
		baseURL = DefaultBaseURL
	}
	metaURL, err := parseBase(baseURL)
	if err != nil {
		return nil, fail("base_url: %v", err)
	}
	scimRaw := cfg.Options[OptionSCIMURL]
	if scimRaw == "" {
		scimRaw = DefaultSCIMURL
	}
	scimURL, err := parseBase(scimRaw)
	if err != nil {
		return nil, fail("option %s: %v", OptionSCIMURL, err)
	}
	sz, problem := readSizes(cfg)
	if problem != "" {
		return nil, fail("%s", problem)
	}
	limit, burst, concurrency, pageSize := sz.limit, sz.burst, sz.concurrency, sz.pageSize
	logger := deps.Logger
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	if limit > PublishedRateLimit {
		// Allowed for simulators and special arrangements, but against the real API every
		// request over the limit costs a 30 s lockout of the whole token.
		logger.Warn("rate_limit exceeds Airtable's published limit per token", "rate_limit", limit, "published", PublishedRateLimit)
	}

	c := &conn{name: cfg.Name, enterprise: ent, concurrency: concurrency, pageSize: pageSize, log: logger}
	if err := c.openClients(cfg, deps, metaURL, scimURL, limit, burst); err != nil {
		return nil, err
	}
	return c, nil
}

// openClients opens the meta and SCIM clients and the SCIM write client over them: one
// client, so one limiter and one lockout, when both APIs live on one host; otherwise two,
// each with half of the token's budget.
func (c *conn) openClients(cfg connectors.SystemConfig, deps connectors.Deps, metaURL, scimURL *url.URL, limit float64, burst int) error {
	sameHost := metaURL.Scheme == scimURL.Scheme && metaURL.Host == scimURL.Host
	if !sameHost {
		// Two clients would each run their own limiter against one token's budget: give
		// each half so that together they stay within it.
		limit /= 2
		burst = max(1, burst/2)
	}
	token := cfg.Token
	clock := newClock(deps.Sleep)
	mk := func(base string) (*apiclient.Client, error) {
		ac := apiclient.ForSystem(cfg, deps, apiclient.Limits{})
		ac.BaseURL, ac.RateLimit, ac.Burst = base, rate.Limit(limit), burst
		ac.RateLimitPenalty, ac.DecodeError, ac.Logger = RateLimitPenalty, decodeError, c.log
		ac.Auth = func(_ context.Context, r *http.Request) error {
			r.Header.Set("Authorization", "Bearer "+token.Reveal())
			return nil
		}
		if clock != nil {
			ac.Sleep, ac.Now, ac.SleepFrom = clock.sleep, clock.now, clock.sleepFrom
		}
		return apiclient.New(ac)
	}
	var err error
	if c.meta, err = mk(metaURL.String()); err != nil {
		return err
	}
	if sameHost {
		c.scim, c.scimBase = c.meta, scimURL.String()
	} else if c.scim, err = mk(scimURL.String()); err != nil {
		return err
	}
	c.groups, err = c.newGroupsClient()
	return err
}

// newGroupsClient configures the shared SCIM write client for Airtable: its SCIM base
// (through c.scim, so writes share the token's limiter and lockout with everything else),
// its route labels, and the members value form of its example (one object per add),
// negotiated down to the RFC's array for a server that takes only that. Airtable offers
// PATCH and documents no ETags, so the target is fixed; requests are plain
// application/json, as its documentation sends them.
func (c *conn) newGroupsClient() (*scimclient.Client, error) {
	return scimclient.New(scimclient.Config{
		HTTP:   c.scim,
		Target: scimclient.Static(scimclient.Target{GroupsPath: c.scimPath("/Groups")}),
		Endpoints: scimclient.Endpoints{Create: epSCIMCreate, Get: epSCIMGet, Patch: epSCIMPatch,
			Put: epSCIMPut, Delete: epSCIMDelete},
		AddForm: scimclient.FormObject, NegotiateAddForm: true,
		MaxMembersPerWrite: MaxMembersPerWrite, Logger: c.log,
	})
}

// sizes are the numeric settings, defaults applied.
type sizes struct {
	limit                        float64
	burst, concurrency, pageSize int
}

// readSizes applies the defaults to rate_limit, burst, concurrency and page_size and
// checks their bounds; problem says what is wrong, "" when nothing is.
func readSizes(cfg connectors.SystemConfig) (sz sizes, problem string) {
	if cfg.RateLimit < 0 || cfg.Burst < 0 || cfg.Concurrency < 0 || cfg.PageSize < 0 {
		return sizes{}, "rate_limit, burst, concurrency and page_size must not be negative"
	}
	sz = sizes{limit: cfg.RateLimit, burst: cfg.Burst, concurrency: cfg.Concurrency, pageSize: cfg.PageSize}
	if sz.limit == 0 {
		sz.limit = DefaultRateLimit
	}
	if sz.burst == 0 {
		sz.burst = DefaultBurst
	}
	if sz.concurrency == 0 {
		sz.concurrency = DefaultConcurrency
	}
	if sz.concurrency > MaxConcurrency {
		return sizes{}, fmt.Sprintf("concurrency %d exceeds %d", sz.concurrency, MaxConcurrency)
	}
	if sz.pageSize == 0 {
		sz.pageSize = DefaultPageSize
	}
	if sz.pageSize > MaxPageSize {
		return sizes{}, fmt.Sprintf("page_size %d exceeds %d (user ids per lookup request)", sz.pageSize, MaxPageSize)
	}
	return sz, ""
}

func parseBase(s string) (*url.URL, error) {
	u, err := url.Parse(strings.TrimSpace(s))
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("%q must be an absolute http(s) URL", s)
	}
	if u.RawQuery != "" || u.Fragment != "" {
		return nil, fmt.Errorf("%q must not carry a query or fragment", s)
	}
	u.Path = strings.TrimSuffix(u.Path, "/")
	return u, nil
}

func isAlnum(s string) bool {
	for _, r := range s {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9') {
			return false
		}
	}
	return true
}

func (c *conn) Name() string          { return c.name }
func (c *conn) Kind() connectors.Kind { return connectors.KindAirtable }

// Capabilities: SCIM creates, renames, deletes and changes members. Airtable groups have
// no description, no visibility and no archive state, and SCIM has no role attribute.
func (c *conn) Capabilities() connectors.Capabilities {
	return connectors.Capabilities{
		CreateGroup:        true,
		UpdateGroup:        true,
		DeleteGroup:        true,
		AddMember:          true,
		RemoveMember:       true,
		MaxMembersPerWrite: MaxMembersPerWrite,
	}
}

// scimPath turns a path under the SCIM base ("/Groups/ugp…") into what the SCIM client
// resolves.
func (c *conn) scimPath(p string) string { return c.scimBase + p }

// clock keeps the client's lockout clock in step with an injected Sleep. apiclient waits
// out a lockout by comparing Now against the lockout's end; with a Sleep that returns at
// once (tests, simulations) a wall clock would never get there. Time a Sleep claimed but
// did not really spend is added to the clock, so a real Sleep leaves it at wall time.
type clock struct {
	mu    sync.Mutex
	skew  time.Duration
	inner func(ctx context.Context, d time.Duration) error
}

func newClock(sleep func(ctx context.Context, d time.Duration) error) *clock {
	if sleep == nil {
		return nil
	}
	return &clock{inner: sleep}
}

func (k *clock) now() time.Time {
	k.mu.Lock()
	defer k.mu.Unlock()
	return time.Now().Add(k.skew)
}

// sleepFrom waits d through the injected Sleep and then makes sure the clock reads at
// least from+d, from being the caller's reading. Concurrent waits for one lockout all count
// from their own reading to its end, so together they move the clock to it once. Counting
// from the clock at the call instead moved it twice when a waiter read the clock, another
// waited the lockout out, and the first then slept its span.
func (k *clock) sleepFrom(ctx context.Context, from time.Time, d time.Duration) error {
	if err := k.inner(ctx, d); err != nil {
		return err
	}
	k.advanceTo(from.Add(d))
	return nil
}

// advanceTo makes the clock read at least t.
func (k *clock) advanceTo(t time.Time) {
	k.mu.Lock()
	defer k.mu.Unlock()
	if behind := t.Sub(time.Now().Add(k.skew)); behind > 0 {
		k.skew += behind
	}
}

// sleep serves retry backoffs: spans counted from their own start.
func (k *clock) sleep(ctx context.Context, d time.Duration) error {
	return k.sleepFrom(ctx, k.now(), d)
}

// badBody classifies a 2xx body the connector could not use, like apiclient.Decode does:
// a body cut short may come whole on the next call, anything else will not.
func (c *conn) badBody(op string, err error) error {
	class := connectors.ErrPermanent
	if errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, io.EOF) {
		class = connectors.ErrRetryable
	}
	return &connectors.Error{System: c.name, Op: op, Class: class, Message: "malformed response body", Err: err}
}
