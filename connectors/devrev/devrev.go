// Package devrev is the connector for DevRev (https://api.devrev.ai): groups, their members
// and dev users, through DevRev's RPC-style REST API (`POST /groups.list`,
// `POST /groups.members.add`, ...). The facts it relies on are in
// shared/reference/apis.md §3 and DevRev's beta OpenAPI description.
//
// DevRev has no group delete and takes one member per add/remove call. Its `group` object
// does not say whether a group is static or dynamic, so the connector learns the dynamic
// ones from a `group_type: [dynamic]` listing (see dynamicGroups).
package devrev

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"sort"
	"strings"
	"time"

	"github.com/groupsync/groupsync/connectors"
	"github.com/groupsync/groupsync/connectors/apiclient"
)

// Defaults taken from DevRev's published behaviour.
const (
	// DefaultBaseURL is the spec's default host.
	DefaultBaseURL = "https://api.devrev.ai"
	// DefaultPageSize is the documented default `limit` of every DevRev list call. No
	// maximum is documented, so the connector does not ask for more unless configured to.
	DefaultPageSize = 50
	// DefaultRateLimit is requests per second. DevRev documents a per-user budget over a
	// 5-minute window without publishing the number (1000 in its example); every response
	// announces it in X-Ratelimit-Limit/Remaining/Reset, and the client paces by those
	// headers (apiclient's window pacer), so 10 req/s is only the ceiling within a window.
	DefaultRateLimit = 10
	// DefaultBurst is the limiter's burst.
	DefaultBurst = 10
	// QuotaWindow is DevRev's documented rate-limit window.
	QuotaWindow = 5 * time.Minute
	// DefaultMaxRetryWait lets a spent window be waited out: a 429 asks for up to the
	// window's length (plus a margin for the reset's whole seconds).
	DefaultMaxRetryWait = QuotaWindow + 30*time.Second
	// DefaultDescription is sent on create when the source group has no description:
	// DevRev requires one.
	DefaultDescription = "Managed by groupsync"
	// MaxPages caps one listing, so a server that never stops paging cannot hold a sync
	// forever (100k pages of 50 is five million records).
	MaxPages = 100_000
	// MaxDynamicGroups caps the dynamic-group id set held in memory during ListGroups.
	MaxDynamicGroups = 100_000
	// byIDLookupMax is the number of account ids up to which ListAccounts fetches each dev
	// user by id; above it, listing every dev user once and filtering is cheaper.
	byIDLookupMax = 25
)

// Option keys accepted in SystemConfig.Options.
const (
	// OptionAPIScope is "beta" (default: send `X-Devrev-Scope: beta`, which the full
	// `group` schema with name, description and is_default belongs to) or "public" (send
	// no scope header).
	OptionAPIScope = "api_scope"
	// OptionDefaultDescription overrides DefaultDescription.
	OptionDefaultDescription = "default_description"
)

// Endpoint labels (DevRev's own operation paths without the slash).
const (
	epGroupsList    = "groups.list"
	epGroupsGet     = "groups.get"
	epGroupsCreate  = "groups.create"
	epGroupsUpdate  = "groups.update"
	epMembersList   = "groups.members.list"
	epMembersAdd    = "groups.members.add"
	epMembersRemove = "groups.members.remove"
	epDevUsersList  = "dev-users.list"
	epDevUsersGet   = "dev-users.get"
	epRevUsersGet   = "rev-users.get"
)

type conn struct {
	name        string
	api         *apiclient.Client
	pageSize    int
	description string
	log         *slog.Logger
}

var (
	_ connectors.Connector = (*conn)(nil)
	_ connectors.Writer    = (*conn)(nil)
)

// Open validates cfg and returns a DevRev connector. It needs cfg.Token (a PAT or service
// account token); BaseURL defaults to DefaultBaseURL.
func Open(cfg connectors.SystemConfig, deps connectors.Deps) (connectors.Connector, error) {
	return open(cfg, deps)
}

func open(cfg connectors.SystemConfig, deps connectors.Deps) (*conn, error) {
	if cfg.Name == "" {
		return nil, errors.New("devrev: system name is required")
	}
	if cfg.Kind != "" && cfg.Kind != connectors.KindDevRev {
		return nil, fmt.Errorf("%s: kind %q is not devrev", cfg.Name, cfg.Kind)
	}
	if !cfg.Token.IsSet() {
		return nil, fmt.Errorf("%s: token is required (a DevRev personal access or service account token)", cfg.Name)
	}
	scope, description := "beta", DefaultDescription
	keys := make([]string, 0, len(cfg.Options))
	for k := range cfg.Options {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		v := cfg.Options[k]
		switch k {
		case OptionAPIScope:
			if v != "beta" && v != "public" {
				return nil, fmt.Errorf("%s: option %s must be beta or public, got %q", cfg.Name, k, v)
			}
			scope = v
		case OptionDefaultDescription:
			if strings.TrimSpace(v) == "" {
				return nil, fmt.Errorf("%s: option %s must not be empty (DevRev requires a description)", cfg.Name, k)
			}
			description = v
		default:
			return nil, fmt.Errorf("%s: unknown option %q for kind devrev (known: %s, %s)", cfg.Name, k, OptionAPIScope, OptionDefaultDescription)
		}
	}
	if cfg.PageSize < 0 || cfg.RateLimit < 0 || cfg.Burst < 0 {
		return nil, fmt.Errorf("%s: page_size, rate_limit and burst must not be negative", cfg.Name)
	}
	base := cfg.BaseURL
	if base == "" {
		base = DefaultBaseURL
	}
	pageSize := cfg.PageSize
	if pageSize == 0 {
		pageSize = DefaultPageSize
	}
	token := cfg.Token
	ac := apiclient.ForSystem(cfg, deps, apiclient.Limits{RateLimit: DefaultRateLimit, Burst: DefaultBurst,
		MaxRetryWait: DefaultMaxRetryWait})
	ac.BaseURL = base
	ac.Auth = func(_ context.Context, r *http.Request) error {
		r.Header.Set("Authorization", "Bearer "+token.Reveal())
		if scope == "beta" {
			r.Header.Set("X-Devrev-Scope", "beta")
		}
		return nil
	}
	ac.DecodeError = decodeError
	api, err := apiclient.New(ac)
	if err != nil {
		return nil, fmt.Errorf("devrev: %w", err)
	}
	logger := deps.Logger
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	return &conn{name: cfg.Name, api: api, pageSize: pageSize, description: description, log: logger}, nil
}

func (c *conn) Name() string          { return c.name }
func (c *conn) Kind() connectors.Kind { return connectors.KindDevRev }

// Capabilities: DevRev creates and updates groups and adds/removes one member per call; it
// has no group delete or archive, no member roles and no visibility.
func (c *conn) Capabilities() connectors.Capabilities {
	return connectors.Capabilities{
		CreateGroup:        true,
		UpdateGroup:        true,
		AddMember:          true,
		RemoveMember:       true,
		MaxMembersPerWrite: 1,
		Description:        true,
	}
}

// errorBody is DevRev's error shape (error-base plus the type discriminator; 429 adds
// retry_after).
type errorBody struct {
	Type       string          `json:"type"`
	Message    string          `json:"message"`
	Detail     string          `json:"detail"`
	RetryAfter json.RawMessage `json:"retry_after"`
}

// decodeError reads DevRev's error body. It never sees request headers, so the token
// cannot end up in an error.
func decodeError(_ int, _ http.Header, body []byte) apiclient.ErrorInfo {
	var e errorBody
	if err := json.Unmarshal(body, &e); err != nil {
		return apiclient.ErrorInfo{Message: strings.TrimSpace(firstLine(body, 200))}
	}
	info := apiclient.ErrorInfo{Type: e.Type, Message: e.Message}
	if e.Detail != "" && e.Detail != e.Message {
		info.Message = strings.TrimSpace(info.Message + " (" + e.Detail + ")")
	}
	var secs json.Number
	if len(e.RetryAfter) > 0 && json.Unmarshal(e.RetryAfter, &secs) == nil {
		if f, err := secs.Float64(); err == nil && f > 0 && f < 366*24*3600 {
			info.RetryAfter = time.Duration(f * float64(time.Second))
		}
	}
	return info
}

func firstLine(b []byte, n int) string {
	s := string(b)
	if i := strings.IndexByte(s, '\n'); i >= 0 {
		s = s[:i]
	}
	if len(s) > n {
		s = s[:n]
	}
	return s
}

// malformed wraps a decode failure of a 2xx body as a permanent error naming the endpoint.
func (c *conn) malformed(endpoint string, err error) error {
	return &connectors.Error{System: c.name, Op: endpoint, Class: connectors.ErrPermanent,
		Message: "malformed response body", Err: err}
}

// post sends one DevRev call with a JSON body and returns the 2xx body.
func (c *conn) post(ctx context.Context, endpoint string, body any, idempotent bool) ([]byte, error) {
	data, _, err := c.api.DoRaw(ctx, apiclient.Request{
		Method:     http.MethodPost,
		Path:       "/" + endpoint,
		JSON:       body,
		Endpoint:   endpoint,
		Idempotent: idempotent,
	})
	return data, err
}
