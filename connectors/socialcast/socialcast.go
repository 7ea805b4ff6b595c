// Package socialcast is the connector for Socialcast (VMware, retired): it lists groups,
// their memberships and users through the Rails `.json` REST routes, and creates, updates,
// archives and destroys groups. Socialcast documents no member writes, so the connector
// declares none and refuses them without sending anything.
//
// Paging is page/per_page with no total, cursor or next link: a listing ends on a short page.
// A listing whose last page is exactly full therefore costs one extra, empty request, which
// is the least this scheme allows. Groups carry no timestamps, so change detection relies
// on Group.Hash, computed without the fields that depend on who is asking (role_key, can_*,
// and member_count on private groups, which is null for a caller who has not joined).
//
// Facts and their sources: shared/reference/apis.md §2.
package socialcast

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"sort"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/groupsync/groupsync/connectors"
	"github.com/groupsync/groupsync/connectors/apiclient"
)

// Defaults. Socialcast publishes no rate limit, so the client-side rate is deliberately
// conservative; raise it with `rate_limit` once a live tenant shows it is safe.
const (
	// DefaultRateLimit is the client-side request rate (requests/second). Undocumented
	// upstream: a conservative guess.
	DefaultRateLimit = 5
	// DefaultBurst is the limiter's burst.
	DefaultBurst = 5
	// DefaultPageSize is per_page on every list: the documented maximum on memberships,
	// and what Socialcast's own clients use on the other lists.
	DefaultPageSize = 500
	// MaxPageSize is the largest per_page the connector asks for. A server that caps
	// per_page below what was asked would make a full page look short and end a listing
	// early, so the connector never asks above the documented cap.
	MaxPageSize = 500
	// DefaultConcurrency bounds parallel per-user fetches in ListAccounts(ids).
	DefaultConcurrency = 4
	// DefaultAccountsByIDLimit is how many ids ListAccounts(ids) fetches one by one before
	// it pages the users list instead, while the tenant's size is not yet known.
	DefaultAccountsByIDLimit = 1000
	// MaxPages caps one listing (500 per page: 50 million records), so a server that
	// never sends a short page cannot keep a listing going forever.
	MaxPages = 100_000
)

// OptionAccountsByIDLimit is the Options key overriding DefaultAccountsByIDLimit.
const OptionAccountsByIDLimit = "accounts_by_id_limit"

// Endpoint labels, the route templates (the simulator counts requests under the same names).
const (
	endpointGroupsList   = "GET /api/groups.json"
	endpointGroupsCreate = "POST /api/groups.json"
	endpointGroupShow    = "GET /api/groups/{id}.json"
	endpointGroupUpdate  = "PUT /api/groups/{id}.json"
	endpointGroupDestroy = "DELETE /api/groups/{id}.json"
	endpointGroupArchive = "DELETE /api/groups/{id}/archive.json"
	endpointMemberships  = "GET /api/groups/{id}/memberships.json"
	endpointUsersList    = "GET /api/users.json"
	endpointUserShow     = "GET /api/users/{id}.json"
	endpointUsersSearch  = "GET /api/users/search.json"
)

type conn struct {
	name        string
	api         *apiclient.Client
	log         *slog.Logger
	pageSize    int
	concurrency int
	byIDLimit   int
	// knownUsers is the user count seen by the last complete users listing (0: unknown).
	// ListAccounts(ids) uses it to choose between per-id fetches and paging the list.
	knownUsers atomic.Int64
}

var (
	_ connectors.Connector = (*conn)(nil)
	_ connectors.Writer    = (*conn)(nil)
)

// Open validates cfg and returns a Socialcast connector.
//
// BaseURL is the community root (`https://<community>.socialcast.com`); a trailing `/api`
// is accepted and dropped. Credentials are either Username and Password (HTTP Basic, the
// documented scheme) or Token (an OAuth2 bearer token), never both. The only option is
// accounts_by_id_limit (a positive integer, default DefaultAccountsByIDLimit).
func Open(cfg connectors.SystemConfig, deps connectors.Deps) (connectors.Connector, error) {
	c, err := open(cfg, deps, nil)
	if err != nil {
		return nil, err
	}
	return c, nil
}

// open is Open with the client's clock injectable (nil: the real clock). connectors.Deps
// carries a Sleep but no clock, and apiclient times a rate-limit lockout on its clock: a
// test whose fake Sleep returns at once needs a clock that Sleep moves on, or every later
// request waits out the same lockout again.
func open(cfg connectors.SystemConfig, deps connectors.Deps, now func() time.Time) (*conn, error) {
	set, err := validate(cfg)
	if err != nil {
		return nil, err
	}
	concurrency := cfg.Concurrency
	if concurrency == 0 {
		concurrency = DefaultConcurrency
	}
	logger := deps.Logger
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	api, err := newClient(cfg, deps, set.baseURL, logger, now)
	if err != nil {
		return nil, fmt.Errorf("socialcast system %q: %w", cfg.Name, err)
	}
	return &conn{name: cfg.Name, api: api, log: logger, pageSize: set.pageSize, concurrency: concurrency, byIDLimit: set.byIDLimit}, nil
}

// settings are what validate derives from a valid config.
type settings struct {
	baseURL   string // without a trailing / or /api
	pageSize  int
	byIDLimit int
}

// validate checks cfg and derives its settings. Every problem is reported, in one error,
// so a config is fixed in one pass.
func validate(cfg connectors.SystemConfig) (settings, error) {
	var problems []string
	if cfg.Name == "" {
		problems = append(problems, "name is required")
	}
	if cfg.Kind != "" && cfg.Kind != connectors.KindSocialcast {
		problems = append(problems, fmt.Sprintf("kind %q is not %q", cfg.Kind, connectors.KindSocialcast))
	}
	problems = append(problems, credentialProblems(cfg)...)
	byIDLimit, optionProblems := parseOptions(cfg.Options)
	problems = append(problems, optionProblems...)
	pageSize := cfg.PageSize
	switch {
	case pageSize == 0:
		pageSize = DefaultPageSize
	case pageSize < 0 || pageSize > MaxPageSize:
		problems = append(problems, fmt.Sprintf("page_size %d is outside 1..%d (Socialcast's per_page cap)", pageSize, MaxPageSize))
	}
	if cfg.RateLimit < 0 || cfg.Burst < 0 || cfg.Concurrency < 0 {
		problems = append(problems, "rate_limit, burst and concurrency must not be negative")
	}
	baseURL := strings.TrimSuffix(strings.TrimSuffix(cfg.BaseURL, "/"), "/api")
	if u, err := url.Parse(baseURL); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		problems = append(problems, fmt.Sprintf("base_url %q must be an absolute http(s) URL", cfg.BaseURL))
	}
	if len(problems) > 0 {
		return settings{}, fmt.Errorf("socialcast system %q: %s", cfg.Name, strings.Join(problems, "; "))
	}
	return settings{baseURL: baseURL, pageSize: pageSize, byIDLimit: byIDLimit}, nil
}

// credentialProblems checks that cfg has exactly one kind of credentials, HTTP Basic or a
// bearer token, and nothing Socialcast does not use.
func credentialProblems(cfg connectors.SystemConfig) []string {
	var problems []string
	basic := cfg.Username != "" || cfg.Password.IsSet()
	switch {
	case basic && cfg.Token.IsSet():
		problems = append(problems, "set either username and password (HTTP Basic) or token (bearer), not both")
	case !basic && !cfg.Token.IsSet():
		problems = append(problems, "credentials are required: username and password, or token")
	case basic && cfg.Username == "":
		problems = append(problems, "username is required with password")
	case basic && !cfg.Password.IsSet():
		problems = append(problems, "password is required with username")
	}
	if cfg.JWTSecret.IsSet() {
		problems = append(problems, "jwt_secret is not used by socialcast")
	}
	return problems
}

// parseOptions reads the options (only accounts_by_id_limit is known), returning the
// accounts-by-id limit, DefaultAccountsByIDLimit unless set, and a problem for each bad
// option.
func parseOptions(options map[string]string) (int, []string) {
	var problems []string
	byIDLimit := DefaultAccountsByIDLimit
	keys := make([]string, 0, len(options))
	for k := range options {
		keys = append(keys, k)
	}
	sort.Strings(keys) // every problem reported, in a stable order
	for _, k := range keys {
		v := options[k]
		switch k {
		case OptionAccountsByIDLimit:
			n, err := strconv.Atoi(v)
			if err != nil || n < 1 {
				problems = append(problems, fmt.Sprintf("options.%s must be a positive integer, got %q", k, v))
				continue
			}
			byIDLimit = n
		default:
			problems = append(problems, fmt.Sprintf("unknown option %q (known: %s)", k, OptionAccountsByIDLimit))
		}
	}
	return byIDLimit, problems
}

// newClient builds the API client for a validated cfg: the limits, retries and timeouts
// cfg sets (Socialcast's defaults for rate and burst), Socialcast's error decoding, and
// cfg's credentials on every request.
func newClient(cfg connectors.SystemConfig, deps connectors.Deps, baseURL string, logger *slog.Logger, now func() time.Time) (*apiclient.Client, error) {
	user, password, token := cfg.Username, cfg.Password, cfg.Token
	ac := apiclient.ForSystem(cfg, deps, apiclient.Limits{RateLimit: DefaultRateLimit, Burst: DefaultBurst})
	ac.BaseURL, ac.DecodeError, ac.Logger, ac.Now = baseURL, decodeError, logger, now
	ac.Auth = func(_ context.Context, r *http.Request) error {
		if token.IsSet() {
			r.Header.Set("Authorization", "Bearer "+token.Reveal())
			return nil
		}
		r.SetBasicAuth(user, password.Reveal())
		return nil
	}
	return apiclient.New(ac)
}

func (c *conn) Name() string          { return c.name }
func (c *conn) Kind() connectors.Kind { return connectors.KindSocialcast }

// Capabilities: group create, update, archive and destroy are documented; member writes
// are not (apis.md §2.8), so the planner skips them as unsupported. Visibility is written
// as permission_mode (hidden has no Socialcast equivalent and is written as private).
func (c *conn) Capabilities() connectors.Capabilities {
	return connectors.Capabilities{
		CreateGroup:  true,
		UpdateGroup:  true,
		ArchiveGroup: true,
		DeleteGroup:  true,
		Visibility:   true,
		Description:  true,
	}
}

// groupPath builds /api/groups/{id}{suffix}.json with the id escaped as one path segment.
func groupPath(id, suffix string) (string, error) {
	if err := checkID(id); err != nil {
		return "", err
	}
	return "/api/groups/" + url.PathEscape(id) + suffix + ".json", nil
}

// checkID refuses ids that cannot be one path segment: Socialcast ids are integers (or the
// id-slug and name forms), never paths.
func checkID(id string) error {
	if id == "" || id == "." || id == ".." || strings.Contains(id, "/") {
		return fmt.Errorf("invalid socialcast id %q", id)
	}
	return nil
}

func (c *conn) permanent(op string, err error) error {
	return &connectors.Error{System: c.name, Op: op, Class: connectors.ErrPermanent, Err: err}
}

// errStop ends a listing early from inside its callback (a lookup found what it wanted).
var errStop = errors.New("stop listing")
