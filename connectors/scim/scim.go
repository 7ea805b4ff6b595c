// Package scim is the connector for any SCIM 2.0 service provider (RFC 7643, RFC 7644): its
// Groups are groups, its Users are accounts, and a group's members carry the users' ids.
//
// SCIM leaves much optional, so the connector asks before it acts: on first use it reads
// /ServiceProviderConfig (PATCH, filtering, maxResults, ETags), /ResourceTypes (where Users
// and Groups live) and /Schemas (whether members can be written), and picks its requests by
// what the provider says it supports: PATCH operations where PATCH is supported, else a
// read-modify-write PUT guarded by If-Match where ETags are offered; filtered look-ups where
// filtering is supported, else a scan of the listing. Listings page with startIndex/count
// to the end and are complete only when they reached totalResults.
//
// Every request goes through the shared apiclient (bearer token, client-side limit,
// retries honouring Retry-After, capped bodies, no query strings in errors), and SCIM error
// details have email addresses taken out before they reach an error or a log.
package scim

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"

	"github.com/groupsync/groupsync/connectors"
	"github.com/groupsync/groupsync/connectors/apiclient"
	"github.com/groupsync/groupsync/connectors/scim/scimclient"
)

// Defaults. SCIM publishes no rate limit of its own; providers each have theirs.
const (
	// DefaultRateLimit and DefaultBurst are conservative for an unknown provider (Okta's
	// SCIM apps and Entra ID's provisioning run at a few requests per second); rate_limit
	// raises them for a provider known to take more.
	DefaultRateLimit = 10
	DefaultBurst     = 5
	// DefaultPageSize is the count asked per listing page: RFC 7643 §5's example maxResults
	// and the cap most providers apply. A provider announcing a lower filter.maxResults, or
	// answering shorter pages, is followed.
	DefaultPageSize = 100
	// MaxPageSize bounds page_size: one page of users with their emails stays far under
	// the body cap.
	MaxPageSize = 1000
	// MaxMembersPerWrite is how many members one PATCH carries: the cap providers document
	// (AWS IAM Identity Center 100, Entra ID's provisioning sends at most 100 members per
	// request), and what a refused all-or-nothing PatchOp puts back on the engine.
	MaxMembersPerWrite = 100
)

// Option keys accepted in SystemConfig.Options.
const (
	// OptionWriteMode is auto (default: PATCH when ServiceProviderConfig says it is
	// supported, else PUT), patch or put: for a provider whose ServiceProviderConfig is
	// wrong about PATCH.
	OptionWriteMode = "write_mode"
	// OptionFilter is auto (default: filter when ServiceProviderConfig says filtering is
	// supported) or off (scan listings instead): for a provider that claims filtering and
	// then answers filters wrongly.
	OptionFilter = "filter"
)

// Write modes (OptionWriteMode).
const (
	WriteModeAuto  = "auto"
	WriteModePatch = "patch"
	WriteModePut   = "put"
)

// Content types. RFC 7644 §3.1 names application/scim+json; application/json is accepted
// by every provider met so far and is offered second.
const (
	contentSCIM = "application/scim+json"
	acceptSCIM  = "application/scim+json, application/json;q=0.9"
)

// Endpoint labels: route templates for errors and metrics (never an id or a filter).
const (
	epSPC           = "GET /ServiceProviderConfig"
	epResourceTypes = "GET /ResourceTypes"
	epSchemas       = "GET /Schemas"
	epGroupsList    = "GET /Groups"
	epGroupsCreate  = "POST /Groups"
	epGroupGet      = "GET /Groups/{id}"
	epGroupPatch    = "PATCH /Groups/{id}"
	epGroupPut      = "PUT /Groups/{id}"
	epGroupDelete   = "DELETE /Groups/{id}"
	epUsersList     = "GET /Users"
	epUserGet       = "GET /Users/{id}"
)

var (
	_ connectors.Connector   = (*conn)(nil)
	_ connectors.Writer      = (*conn)(nil)
	_ connectors.WriteProber = (*conn)(nil)
	_ connectors.Opener      = Open
)

// conn is one configured SCIM service provider.
type conn struct {
	name   string
	client *apiclient.Client
	// groups writes (and reads back) groups, the way discovery says the provider takes
	// them (target).
	groups    *scimclient.Client
	pageSize  int
	writeMode string
	noFilter  bool
	log       *slog.Logger

	// mu guards feat: discovery runs on first use and again after it failed.
	mu   sync.Mutex
	feat *features
}

// Open validates cfg and returns the connector; it sends no request (discovery happens on
// first use, so a provider that is down does not stop the daemon from starting). base_url
// is the SCIM base (the URL that /Users and /Groups hang off, e.g.
// https://example.com/scim/v2). Credentials: token (a bearer token).
func Open(cfg connectors.SystemConfig, deps connectors.Deps) (connectors.Connector, error) {
	if cfg.Name == "" {
		return nil, errors.New("scim: system name is required")
	}
	fail := func(format string, args ...any) error {
		return fmt.Errorf("scim system %q: %s", cfg.Name, fmt.Sprintf(format, args...))
	}
	if cfg.Kind != "" && cfg.Kind != connectors.KindSCIM {
		return nil, fail("kind %q is not %q", cfg.Kind, connectors.KindSCIM)
	}
	writeMode, noFilter, err := parseOptions(cfg.Options)
	if err != nil {
		return nil, fail("%v", err)
	}
	if strings.TrimSpace(cfg.BaseURL) == "" {
		return nil, fail("base_url is required (the provider's SCIM base, e.g. https://example.com/scim/v2)")
	}
	if u, err := url.Parse(cfg.BaseURL); err != nil || u.RawQuery != "" || u.Fragment != "" {
		return nil, fail("base_url %q must be an absolute URL without query or fragment", apiclient.RedactURL(cfg.BaseURL))
	}
	if !cfg.Token.IsSet() {
		return nil, fail("token is required (the bearer token the provider issued for groupsync)")
	}
	if cfg.Username != "" || cfg.Password.IsSet() || cfg.JWTSecret.IsSet() {
		return nil, fail("only token is used; username, password and jwt_secret must be empty")
	}
	if cfg.PageSize < 0 || cfg.PageSize > MaxPageSize {
		return nil, fail("page_size %d must be between 0 (default %d) and %d", cfg.PageSize, DefaultPageSize, MaxPageSize)
	}
	logger := deps.Logger
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	ac := apiclient.ForSystem(cfg, deps, apiclient.Limits{RateLimit: DefaultRateLimit, Burst: DefaultBurst})
	ac.Logger, ac.DecodeError = logger, decodeError
	token := cfg.Token
	ac.Auth = func(_ context.Context, r *http.Request) error {
		r.Header.Set("Authorization", "Bearer "+token.Reveal())
		return nil
	}
	client, err := apiclient.New(ac)
	if err != nil {
		return nil, err
	}
	pageSize := cfg.PageSize
	if pageSize == 0 {
		pageSize = DefaultPageSize
	}
	c := &conn{name: cfg.Name, client: client, pageSize: pageSize, writeMode: writeMode, noFilter: noFilter, log: logger}
	c.groups, err = scimclient.New(scimclient.Config{
		HTTP: client, Target: c.target, ContentType: contentSCIM, Accept: acceptSCIM,
		Endpoints: scimclient.Endpoints{Create: epGroupsCreate, Get: epGroupGet, Patch: epGroupPatch,
			Put: epGroupPut, Delete: epGroupDelete},
		MaxMembersPerWrite: MaxMembersPerWrite, Logger: logger,
	})
	if err != nil {
		return nil, err
	}
	return c, nil
}

// parseOptions checks the kind's options: unknown keys and unknown values are refused, each
// named by its key.
func parseOptions(opts map[string]string) (writeMode string, noFilter bool, err error) {
	var unknown []string
	for k := range opts {
		if k != OptionWriteMode && k != OptionFilter {
			unknown = append(unknown, k)
		}
	}
	if len(unknown) > 0 {
		slices.Sort(unknown)
		return "", false, fmt.Errorf("unknown option(s) %s (known: %s, %s)", strings.Join(unknown, ", "), OptionWriteMode, OptionFilter)
	}
	writeMode = strings.ToLower(strings.TrimSpace(opts[OptionWriteMode]))
	switch writeMode {
	case "":
		writeMode = WriteModeAuto
	case WriteModeAuto, WriteModePatch, WriteModePut:
	default:
		return "", false, fmt.Errorf("option %s %q must be auto, patch or put", OptionWriteMode, opts[OptionWriteMode])
	}
	switch f := strings.ToLower(strings.TrimSpace(opts[OptionFilter])); f {
	case "", "auto":
	case "off":
		noFilter = true
	default:
		return "", false, fmt.Errorf("option %s %q must be auto or off", OptionFilter, opts[OptionFilter])
	}
	return writeMode, noFilter, nil
}

func (c *conn) Name() string          { return c.name }
func (c *conn) Kind() connectors.Kind { return connectors.KindSCIM }

// Capabilities: SCIM's core Group has a displayName and members and nothing else the mirror
// models (no description, visibility, archive or roles). Every write is possible with
// PATCH or, where PATCH is not supported, PUT, so the capabilities do not wait for
// discovery; a provider whose schema makes members read-only refuses member writes with
// ErrUnsupported when they are attempted.
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

// get sends a GET that SCIM answers with a resource or a ListResponse.
func (c *conn) get(ctx context.Context, path, endpoint string, q url.Values) ([]byte, http.Header, error) {
	return c.client.DoRaw(ctx, apiclient.Request{Method: http.MethodGet, Path: path, Query: q, Endpoint: endpoint,
		Header: http.Header{"Accept": {acceptSCIM}}})
}

func (c *conn) errorf(op string, class error, format string, args ...any) error {
	return &connectors.Error{System: c.name, Op: op, Class: class, Message: fmt.Sprintf(format, args...)}
}

// badBody classifies a 2xx body the connector could not use: one cut short may come whole
// next time, anything else will not.
func (c *conn) badBody(op string, err error) error {
	class := connectors.ErrPermanent
	if isTruncated(err) {
		class = connectors.ErrRetryable
	}
	return &connectors.Error{System: c.name, Op: op, Class: class, Message: "malformed response body", Err: err}
}
