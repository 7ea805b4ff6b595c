// Package selfcommunity is the connector for SelfCommunity communities (REST API v2,
// https://developers.selfcommunity.com/docs/apireference/v2/). It lists groups through
// `GET /api/v2/group/search/` (reading by id the groups it leaves out, hidden.go), members
// through `GET /api/v2/group/{id}/subscribe/`, accounts through `GET /api/v2/user/{id}/` and
// the admin account search, the only route that returns emails (identity.go), and writes
// groups and memberships. Its simulator is selfcommunitysim.
//
// Credentials: exactly one of a static bearer token (SystemConfig.Token, e.g. an OAuth2
// access token) or the community's JWT shared secret (SystemConfig.JWTSecret). With the
// secret the connector mints short-lived HS256 tokens itself for the user named by the
// jwt_user_id option, which must be a community admin: the account search is admin-only and
// every write is manager-or-admin only.
package selfcommunity

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/groupsync/groupsync/connectors"
	"github.com/groupsync/groupsync/connectors/apiclient"
)

// Defaults. SelfCommunity documents no rate limit, no page size bounds and no Retry-After
// (apis.md §1.3, §1.5), so these are deliberately conservative choices, not published limits.
const (
	// DefaultRateLimit is 5 requests/second: the API documents 429 but no quota, and a
	// community is a single tenant whose users share the server with us.
	DefaultRateLimit = 5.0
	// DefaultBurst lets a short run of requests (a page and its follow-up) go out at once.
	DefaultBurst = 5
	// DefaultPageSize is the `limit` sent to list endpoints. DRF's default and maximum are
	// undocumented; the connector follows `next` links, so a server that caps the limit
	// lower only costs more pages, never missing items.
	DefaultPageSize = 100
	// AddMembersBatchSize is how many user ids one `POST /group/{id}/subscribe/` carries. The
	// API takes a list with no documented bound; 100 keeps a request small enough that a
	// failure is cheap to repeat.
	AddMembersBatchSize = 100
	// DefaultConcurrency bounds parallel account resolutions (user reads, account searches)
	// in ListAccounts(ids).
	DefaultConcurrency = 4
	// MaxPages caps one listing so a server that never ends a listing cannot hold a worker
	// forever (10 million items at the default page size).
	MaxPages = 100_000
	// DefaultJWTTTL is the lifetime of a self-minted JWT (option jwt_ttl).
	DefaultJWTTTL = 10 * time.Minute
	// JWTRefreshMargin: a minted token with less than this left is replaced before use, so a
	// request never leaves with a token that expires in flight.
	JWTRefreshMargin = time.Minute
	// DefaultVisibility is what a group is created with when the source does not model
	// visibility: private but listed, so a synced team's content and member list are not
	// opened to the whole community by default.
	DefaultVisibility = connectors.VisibilityPrivate
)

// Options keys accepted in SystemConfig.Options.
const (
	// OptionJWTUserID is the SelfCommunity user id (an admin) the minted JWTs act as.
	OptionJWTUserID = "jwt_user_id"
	// OptionJWTTTL is the lifetime of a minted JWT, a Go duration (default 10m, 1m to 24h).
	OptionJWTTTL = "jwt_ttl"
	// OptionExtIDProvider is the `provider` the account search is asked with when matching
	// by ext_id (default DefaultExtIDProvider); only with match_by: ext_id.
	OptionExtIDProvider = "ext_id_provider"
)

// DefaultExtIDProvider is the provider the docs name for a community's custom SSO.
const DefaultExtIDProvider = "external"

// Route templates, used as endpoint labels in errors and metrics.
const (
	epGroupsSearch  = "GET /api/v2/group/search/"
	epGroupGet      = "GET /api/v2/group/{id}/"
	epGroupCreate   = "POST /api/v2/group/"
	epGroupPatch    = "PATCH /api/v2/group/{id}/"
	epGroupDelete   = "DELETE /api/v2/group/{id}/"
	epMembersList   = "GET /api/v2/group/{id}/subscribe/"
	epMembersAdd    = "POST /api/v2/group/{id}/subscribe/"
	epMemberRemove  = "DELETE /api/v2/group/{id}/subscribe/"
	epUsersList     = "GET /api/v2/user/"
	epUserGet       = "GET /api/v2/user/{id}/"
	epAccountSearch = "GET /api/v2/account/search/"
	epInvitesList   = "GET /api/v2/group/{id}/invite/"
)

var (
	_ connectors.Connector = (*conn)(nil)
	_ connectors.Writer    = (*conn)(nil)
)

type conn struct {
	name        string
	api         *apiclient.Client
	log         *slog.Logger
	pageSize    int
	concurrency int
	maxPages    int

	// managers remembers each group's managed_by user id from the last time the group was
	// read, so ListMembers can report the manager's role without re-reading the group (the
	// member list itself carries no role).
	mu       sync.Mutex
	managers map[string]string

	// actor is the user id the JWTs are minted for (options.jwt_user_id); "" with a static
	// token, whose user the connector does not know.
	actor string

	// matchBy and provider say how accounts are keyed (identity.go).
	matchBy   connectors.MatchBy
	provider  string
	usernames usernameHints
}

// Open validates cfg and opens a SelfCommunity connector.
func Open(cfg connectors.SystemConfig, deps connectors.Deps) (connectors.Connector, error) {
	return open(cfg, deps, time.Now)
}

func open(cfg connectors.SystemConfig, deps connectors.Deps, now func() time.Time) (*conn, error) {
	if cfg.Name == "" {
		return nil, errors.New("selfcommunity: system name is required")
	}
	problems := optionProblems(cfg)
	var auth func(ctx context.Context, r *http.Request) error
	switch {
	case cfg.Token.IsSet() && cfg.JWTSecret.IsSet():
		problems = append(problems, "set exactly one of token and jwt_secret, not both")
	case !cfg.Token.IsSet() && !cfg.JWTSecret.IsSet():
		problems = append(problems, "a credential is required: token or jwt_secret")
	case cfg.Token.IsSet():
		for _, k := range []string{OptionJWTUserID, OptionJWTTTL} {
			if _, ok := cfg.Options[k]; ok {
				problems = append(problems, fmt.Sprintf("option %q only applies with jwt_secret", k))
			}
		}
		tok := cfg.Token
		auth = func(_ context.Context, r *http.Request) error {
			r.Header.Set("Authorization", "Bearer "+tok.Reveal())
			return nil
		}
	default:
		src, errs := newJWTSource(cfg, now)
		problems = append(problems, errs...)
		if src != nil {
			auth = src.authorize
		}
	}
	if cfg.PageSize < 0 {
		problems = append(problems, fmt.Sprintf("page_size %d must not be negative", cfg.PageSize))
	}
	if len(problems) > 0 {
		return nil, fmt.Errorf("selfcommunity %s: %s", cfg.Name, strings.Join(problems, "; "))
	}

	logger := deps.Logger
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	ac := apiclient.ForSystem(cfg, deps, apiclient.Limits{RateLimit: DefaultRateLimit, Burst: DefaultBurst})
	ac.Auth, ac.DecodeError, ac.Logger = auth, decodeError, logger
	api, err := apiclient.New(ac)
	if err != nil {
		return nil, fmt.Errorf("selfcommunity: %w", err)
	}
	c := &conn{
		name:        cfg.Name,
		api:         api,
		log:         logger,
		pageSize:    cfg.PageSize,
		concurrency: cfg.Concurrency,
		maxPages:    MaxPages,
		managers:    map[string]string{},
	}
	if cfg.JWTSecret.IsSet() {
		c.actor = cfg.Options[OptionJWTUserID]
	}
	c.matchBy, c.provider = connectors.MatchByEmail, DefaultExtIDProvider
	if cfg.MatchBy == connectors.MatchByExtID {
		c.matchBy = connectors.MatchByExtID
	}
	if p := strings.TrimSpace(cfg.Options[OptionExtIDProvider]); p != "" {
		c.provider = p
	}
	if c.pageSize == 0 {
		c.pageSize = DefaultPageSize
	}
	if c.concurrency <= 0 {
		c.concurrency = DefaultConcurrency
	}
	return c, nil
}

// optionProblems checks the options and match_by that are not about credentials.
func optionProblems(cfg connectors.SystemConfig) []string {
	var problems []string
	unknown := make([]string, 0)
	for k := range cfg.Options {
		if k != OptionJWTUserID && k != OptionJWTTTL && k != OptionExtIDProvider {
			unknown = append(unknown, k)
		}
	}
	sort.Strings(unknown)
	for _, k := range unknown {
		problems = append(problems, fmt.Sprintf("unknown option %q (known: %s, %s, %s)", k, OptionJWTUserID, OptionJWTTTL, OptionExtIDProvider))
	}
	switch cfg.MatchBy {
	case "", connectors.MatchByEmail:
		if _, ok := cfg.Options[OptionExtIDProvider]; ok {
			problems = append(problems, fmt.Sprintf("option %q only applies with match_by: ext_id", OptionExtIDProvider))
		}
	case connectors.MatchByExtID:
		if p, ok := cfg.Options[OptionExtIDProvider]; ok && strings.TrimSpace(p) == "" {
			problems = append(problems, fmt.Sprintf("option %q is empty (default %q)", OptionExtIDProvider, DefaultExtIDProvider))
		}
	default:
		problems = append(problems, fmt.Sprintf("match_by %q is not email or ext_id", cfg.MatchBy))
	}
	return problems
}

func (c *conn) Name() string          { return c.name }
func (c *conn) Kind() connectors.Kind { return connectors.KindSelfCommunity }

// Capabilities: SelfCommunity creates, patches and hard-deletes groups, adds members in
// batches and removes them one per call (apis.md §1.1). There is no archive call (a group's
// `active` flag is read-only in the docs) and no role write (the manager is `managed_by`,
// not a membership role).
func (c *conn) Capabilities() connectors.Capabilities {
	return connectors.Capabilities{
		CreateGroup:        true,
		UpdateGroup:        true,
		DeleteGroup:        true,
		AddMember:          true,
		RemoveMember:       true,
		Visibility:         true,
		HiddenVisibility:   true,
		Description:        true,
		MaxMembersPerWrite: AddMembersBatchSize,
	}
}

func (c *conn) rememberManager(groupID, managerID string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if managerID == "" {
		delete(c.managers, groupID)
		return
	}
	c.managers[groupID] = managerID
}

func (c *conn) managerOf(groupID string) string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.managers[groupID]
}

// checkID refuses ids that are not SelfCommunity integer ids before they reach a URL path
// or a request body.
func (c *conn) checkID(op, what, id string) error {
	if id == "" || len(id) > 20 {
		return &connectors.Error{System: c.name, Op: op, Class: connectors.ErrPermanent,
			Message: fmt.Sprintf("%s id %q is not a SelfCommunity id", what, id)}
	}
	if _, err := strconv.ParseUint(id, 10, 64); err != nil {
		return &connectors.Error{System: c.name, Op: op, Class: connectors.ErrPermanent,
			Message: fmt.Sprintf("%s id %q is not a SelfCommunity id", what, id)}
	}
	return nil
}
