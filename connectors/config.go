package connectors

import (
	"context"
	"log/slog"
	"net/http"
	"time"

	"github.com/groupsync/groupsync/secret"
)

// SystemConfig is one configured system as a connector opener receives it: the common keys
// of `systems.<name>` in the configuration file, already defaulted and validated by the
// config package, plus the kind-specific Options (validated by the connector's opener).
type SystemConfig struct {
	Name    string
	Kind    Kind
	BaseURL string

	// Credentials. Which are used depends on the kind (see each connector's README entry).
	Token     secret.Value // bearer token / PAT
	Username  string       // HTTP Basic user (Socialcast)
	Password  secret.Value // HTTP Basic password (Socialcast)
	JWTSecret secret.Value // shared secret for self-minted JWTs (SelfCommunity)

	// MatchBy is which identity keys this system's accounts across systems (see "Identity
	// keys" in normalize.go): MatchByEmail ("" means it too) or MatchByExtID, which only
	// connectors whose accounts carry an SSO external id accept (selfcommunity).
	MatchBy MatchBy

	// AllowInsecureHTTP permits an http:// base URL on a host that is not loopback.
	AllowInsecureHTTP bool

	// Options are kind-specific settings (e.g. airtable enterprise_account_id, scim_url;
	// selfcommunity jwt_user_id). Unknown options are refused by the opener.
	Options map[string]string

	// RateLimit is the client-side request rate in requests/second; 0 means the connector's
	// default (from the API's published limit).
	RateLimit float64
	// Burst is the limiter's burst; 0 means the connector's default.
	Burst int
	// Timeout bounds each HTTP request; 0 means the default (30s).
	Timeout time.Duration
	// MaxAttempts bounds retries per request (including the first); 0 means the default (5).
	MaxAttempts int
	// MaxRetryWait caps a server-requested wait (Retry-After); a longer wait fails the call
	// with ErrRateLimited instead of parking a worker. 0 means the connector's default: its
	// API's quota window where it has one (DevRev: 5 minutes and a margin), else 2 minutes.
	MaxRetryWait time.Duration
	// MaxBodyBytes caps one response body; 0 means the default (8 MiB).
	MaxBodyBytes int64
	// PageSize is the list page size; 0 means the connector's default.
	PageSize int
	// Concurrency bounds parallel requests one connector makes (e.g. per-group fetches);
	// 0 means the connector's default.
	Concurrency int
}

// Deps are the process-wide things a connector is given rather than builds itself.
type Deps struct {
	// HTTPClient is the client to use; nil means a default client. Tests pass the
	// simulator's httptest client.
	HTTPClient *http.Client
	// Logger is already scoped to the system (logger.With("system", name)).
	Logger *slog.Logger
	// Observer receives per-request events for metrics; nil means none.
	Observer RequestObserver
	// Sleep waits for d or until ctx ends; nil means a real timer. Tests inject a fake to
	// check waits without sleeping.
	Sleep func(ctx context.Context, d time.Duration) error
	// Now is the clock the HTTP client paces rate-limit windows and lockouts by; nil means
	// time.Now. Tests pass the simulator's clock.
	Now func() time.Time
	// Budgets, when set, gives each client a budget shared with every other replica and
	// flow on the same system (state.Store.Budgets); nil keeps the limit per client.
	Budgets BudgetSource
	// Inbound reads what identity providers pushed to scim_inbound systems (state.Store.Inbound);
	// only that kind uses it.
	Inbound InboundSource
}

// RequestObserver is told about each HTTP attempt, for metrics. Implementations must be
// safe for concurrent use.
type RequestObserver interface {
	// ObserveRequest is called after each attempt with the endpoint label (a route template,
	// never an id), the HTTP status (0 when no response arrived) and the duration.
	ObserveRequest(system, endpoint string, status int, d time.Duration)
	// ObserveRetry is called before a retry; rateLimited is true when the wait came from a
	// rate-limit signal.
	ObserveRetry(system, endpoint string, wait time.Duration, rateLimited bool)
}

// Opener validates a system's configuration and opens a connector for it.
type Opener func(cfg SystemConfig, deps Deps) (Connector, error)
