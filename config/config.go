// Package config reads groupsync's configuration: a YAML file decoded strictly (unknown keys
// are refused with their line), then GROUPSYNC_* environment overrides, then defaults, then
// one validation pass that reports every problem with its key path, so an operator fixes a
// broken file in one round instead of one error at a time.
//
// Secrets (tokens, passwords, the database URL) are secret.Value: they come from the file,
// from the environment or from a *_file path, and print as [REDACTED] everywhere, including
// `groupsync config show` (Redacted).
package config

import (
	"maps"
	"time"

	"github.com/groupsync/groupsync/connectors"
	"github.com/groupsync/groupsync/secret"
)

// Defaults. They are applied by Load to keys absent from the file and the environment.
const (
	DefaultPath     = "groupsync.yaml"
	DefaultSchema   = "groupsync"
	DefaultMaxConns = 8
	// DefaultAcquireTimeout bounds the wait for a pooled database connection.
	DefaultAcquireTimeout = 30 * time.Second
	DefaultLogLevel       = "info"
	DefaultLogFormat      = "auto"
	DefaultHTTPListen     = ":8080"
	// DefaultSCIMListen is where the SCIM face listens when a scim_inbound system is configured.
	DefaultSCIMListen = ":8081"
	// DefaultSCIMMaxBodyBytes caps one request to the SCIM face: a PATCH of a few thousand
	// members fits; a larger body is answered 413.
	DefaultSCIMMaxBodyBytes = 1 << 20
	// DefaultInboundRateLimit and DefaultInboundBurst bound the requests one identity
	// provider may send the SCIM face (a scim_inbound system's rate_limit and burst): far
	// above what Okta or Entra ID send in a provisioning cycle, low enough that a runaway
	// client cannot swamp the mirror.
	DefaultInboundRateLimit = 50
	DefaultInboundBurst     = 100
	DefaultTimeout          = 30 * time.Second
	DefaultMaxAttempts      = 5
	DefaultMaxBodyBytes     = 8 << 20

	DefaultMaxMemberRemovals        = 50
	DefaultMaxMemberRemovalsPercent = 10
	DefaultMaxGroupDeletions        = 5
	DefaultMinSourceRatio           = 0.8
	DefaultMaxChangeAttempts        = 5

	// DefaultAccountMaxAge is how old the mirror's copy of an account a plan relies on may
	// be before the engine reads it again (Trust I, fresh accounts).
	DefaultAccountMaxAge = 24 * time.Hour

	// DefaultLookupMissTTL is how long an email a target said it has no account for goes
	// unasked: one lookup an hour per person without an account, not one per run.
	DefaultLookupMissTTL = time.Hour

	// DefaultHistoryRetention keeps a year of history and a month to spare, so "who was in
	// this group a year ago" can be answered.
	DefaultHistoryRetention = 400 * 24 * time.Hour
	// MinHistoryRetention is the shortest history.retention accepted: shorter would prune
	// what the day after a bad run needs to look at.
	MinHistoryRetention = 24 * time.Hour
	// DefaultLeaseTTL is how long a flow's lease lasts unless renewed.
	DefaultLeaseTTL = 2 * time.Minute
	// MinLeaseTTL is the shortest lease.ttl accepted. A run renews its lease every TTL/6,
	// each renewal bounded by TTL/6, and stops writing when none got through for 3/4 of the
	// TTL: below a second a renewal would have less than 170 ms to reach the database, and
	// one slow round trip would fence a healthy run out.
	MinLeaseTTL = time.Second
)

// EnvPrefix starts every environment variable the configuration reads.
const EnvPrefix = "GROUPSYNC_"

// DefaultBaseURLs are the API roots of the kinds that have one public host. The other kinds
// (selfcommunity, socialcast) live on a per-customer host, so base_url is required for them.
var DefaultBaseURLs = map[connectors.Kind]string{
	connectors.KindAirtable: "https://api.airtable.com",
	connectors.KindDevRev:   "https://api.devrev.ai",
}

// Config is the whole configuration file (`groupsync.yaml`).
type Config struct {
	Database Database `yaml:"database"`
	Log      Log      `yaml:"log"`
	HTTP     HTTP     `yaml:"http"`
	Accounts Accounts `yaml:"accounts"`
	Lease    Lease    `yaml:"lease"`
	History  History  `yaml:"history"`
	SCIM     SCIM     `yaml:"scim"`
	// Systems are the configured connector instances by name ([a-z0-9][a-z0-9-]*).
	// At least one is required.
	Systems map[string]System `yaml:"systems"`
	// Flows are the configured syncs by name ([a-z0-9][a-z0-9-]*). At least one is required.
	Flows map[string]Flow `yaml:"flows"`

	// Path is the file the configuration was read from (not a YAML key).
	Path string `yaml:"-"`
}

// Database is where the mirror lives.
type Database struct {
	// URL is the Postgres connection string (URL or key=value form). It may hold a password,
	// so it is a secret. Required: set url, url_file, GROUPSYNC_DATABASE_URL or
	// GROUPSYNC_DATABASE_URL_FILE.
	URL secret.Value `yaml:"url"`
	// URLFile is a file holding URL (a trailing newline is trimmed).
	URLFile string `yaml:"url_file,omitempty"`
	// Schema holds groupsync's tables. Default "groupsync"; env GROUPSYNC_DATABASE_SCHEMA.
	Schema string `yaml:"schema"`
	// MaxConns bounds the connection pool. Default 8; env GROUPSYNC_DATABASE_MAX_CONNS.
	// Any value from 1 works: no transaction or pooled connection is held across an API
	// call, so more connections only let more statements run at once.
	MaxConns int `yaml:"max_conns"`
	// AcquireTimeout bounds the wait for a free pooled connection; past it the statement
	// fails, naming this setting, instead of hanging. Default 30s.
	AcquireTimeout time.Duration `yaml:"acquire_timeout"`
}

// Accounts configures how fresh the mirror's accounts must be for planning.
type Accounts struct {
	// MaxAge: an account a plan relies on (a member of a synced group, or the target account
	// an email matches) is re-read by id when the mirror read it longer ago than this, so
	// email changes and deactivations on either side are followed. Default (and 0) 24h; a
	// few seconds re-reads them every run (costly on large tenants: one lookup per account
	// or a full user listing, whichever the connector finds cheaper).
	MaxAge time.Duration `yaml:"max_age"`
	// LookupMissTTL: a source member's email that a target was asked for and did not have
	// is not asked for again until this has passed (their adds stay skipped no_account
	// meanwhile), so people without an account in a target do not cost a lookup each on
	// every run. Default (and 0) 1h; a few seconds asks every run. A run of chosen groups
	// (sync --once --group) always asks; deleting rows of account_misses makes the next
	// run ask.
	LookupMissTTL time.Duration `yaml:"lookup_miss_ttl"`
}

// Log configures the process logger.
type Log struct {
	// Level is debug, info, warn or error. Default info; env GROUPSYNC_LOG_LEVEL.
	Level string `yaml:"level"`
	// Format is auto (colored text on a terminal, JSON otherwise), json or text.
	// Default auto; env GROUPSYNC_LOG_FORMAT.
	Format string `yaml:"format"`
}

// HTTP configures the health and metrics listener.
type HTTP struct {
	// Listen is the address of /healthz, /readyz and /metrics. Default ":8080"; an explicit
	// "" disables the listener. Env GROUPSYNC_HTTP_LISTEN.
	Listen string `yaml:"listen"`
}

// SCIM configures groupsync's own SCIM 2.0 face (/scim/v2), which `groupsync sync` serves when
// a system of kind scim_inbound is configured: identity providers push users and groups to it.
// It speaks plain HTTP; put TLS in front of it (a reverse proxy or the platform's ingress).
type SCIM struct {
	// Listen is the face's address. Default ":8081"; an explicit "" disables it. Env
	// GROUPSYNC_SCIM_LISTEN.
	Listen string `yaml:"listen"`
	// MaxBodyBytes caps one request body; a larger one is answered 413. Default 1 MiB.
	MaxBodyBytes int64 `yaml:"max_body_bytes"`
}

// Lease configures the per-flow leases through which replicas sharing one database run each
// flow once.
type Lease struct {
	// TTL is how long a flow's lease lasts unless renewed. A replica that dies mid-run hands
	// its flows over within it; a run that could not renew for three quarters of it (database
	// unreachable, process paused) stops writing. Shorter hands flows over sooner but fences
	// runs out after a shorter database outage. Default 2m, at least 1s; every replica of one
	// database should use the same. Env GROUPSYNC_LEASE_TTL.
	TTL time.Duration `yaml:"ttl"`
}

// History configures the membership and group history (membership_history, group_history).
type History struct {
	// Retention is how long a closed history interval is kept after it ended: the daemon
	// prunes older ones every HistoryPruneEvery, in batches. Open intervals (who is in a
	// group now) are never pruned. Default 400 days (9600h), at least 24h. Env
	// GROUPSYNC_HISTORY_RETENTION.
	Retention time.Duration `yaml:"retention"`
}

// System is one configured system (`systems.<name>`). Every credential can also be given as
// GROUPSYNC_SYSTEMS_<NAME>_<KEY> (name upper-cased, every non-alphanumeric as "_"), e.g.
// GROUPSYNC_SYSTEMS_DEVREV_PROD_TOKEN or ..._TOKEN_FILE; the environment replaces both the
// value and the *_file of the file.
type System struct {
	// Kind is airtable, devrev, selfcommunity or socialcast. Required.
	Kind connectors.Kind `yaml:"kind"`
	// BaseURL is the API root (http or https). Default per kind (DefaultBaseURLs); required
	// for selfcommunity and socialcast.
	BaseURL string `yaml:"base_url"`

	// Token is the bearer token / PAT. Required for devrev and airtable.
	Token secret.Value `yaml:"token"`
	// TokenFile is a file holding Token (trailing newline trimmed). No default.
	TokenFile string `yaml:"token_file,omitempty"`
	// Username is the HTTP Basic user (socialcast). No default.
	Username string `yaml:"username,omitempty"`
	// Password is the HTTP Basic password (socialcast). No default.
	Password secret.Value `yaml:"password"`
	// PasswordFile is a file holding Password. No default.
	PasswordFile string `yaml:"password_file,omitempty"`
	// JWTSecret signs self-minted JWTs (selfcommunity, with options.jwt_user_id). No default.
	JWTSecret secret.Value `yaml:"jwt_secret"`
	// JWTSecretFile is a file holding JWTSecret. No default.
	JWTSecretFile string `yaml:"jwt_secret_file,omitempty"`

	// MatchBy is what identifies this system's accounts across systems: email (the
	// default) or ext_id, the external id SelfCommunity keeps for users who signed up
	// through single sign-on (selfcommunity only). Every system of a flow must match the
	// same way: an email and an ext_id never identify the same person to groupsync.
	MatchBy connectors.MatchBy `yaml:"match_by,omitempty"`

	// AllowInsecureHTTP permits an http:// base_url on a host that is not loopback:
	// credentials then cross the network in clear text. Default false.
	AllowInsecureHTTP bool `yaml:"allow_insecure_http,omitempty"`

	// Options are kind-specific strings (airtable enterprise_account_id and scim_url,
	// selfcommunity jwt_user_id, jwt_ttl and ext_id_provider); the connector refuses
	// options it does not know. No default.
	Options map[string]string `yaml:"options,omitempty"`

	// RateLimit is requests/second; default 0 = the connector's published default.
	RateLimit float64 `yaml:"rate_limit"`
	// Burst is the rate limiter's burst; default 0 = the connector's default.
	Burst int `yaml:"burst"`
	// Timeout bounds one HTTP request. Default 30s.
	Timeout time.Duration `yaml:"timeout"`
	// MaxAttempts bounds the tries of one request, the first included. Default 5.
	MaxAttempts int `yaml:"max_attempts"`
	// MaxRetryWait caps a server-requested wait (Retry-After); default 0 = the connector's
	// default: the API's quota window where it has one (devrev 5m30s), else 2m.
	MaxRetryWait time.Duration `yaml:"max_retry_wait"`
	// MaxBodyBytes caps one response body. Default 8388608 (8 MiB).
	MaxBodyBytes int64 `yaml:"max_body_bytes"`
	// PageSize is the list page size; default 0 = the connector's default.
	PageSize int `yaml:"page_size"`
	// Concurrency bounds parallel requests; default 0 = the connector's default.
	Concurrency int `yaml:"concurrency"`
}

// MembershipMode says what a flow does with target members the source does not have.
type MembershipMode string

// Membership modes.
const (
	// MembershipMirror adds and removes so the target matches the source.
	MembershipMirror MembershipMode = "mirror"
	// MembershipAddOnly only adds; members only in the target stay.
	MembershipAddOnly MembershipMode = "add_only"
)

// DeletePolicy says what a flow does with a linked target group whose source group is gone.
type DeletePolicy string

// Delete policies.
const (
	DeleteNever   DeletePolicy = "never"
	DeleteArchive DeletePolicy = "archive"
	DeleteHard    DeletePolicy = "delete"
)

// Flow is one configured sync (`flows.<name>`): groups in scope on the source are pushed to
// every target.
type Flow struct {
	// Source is the system groups are read from. Required.
	Source string `yaml:"source"`
	// Targets are the systems groups are pushed to (at least one, never the source).
	Targets []string `yaml:"targets"`
	// Schedule is when the daemon runs the flow: a 5-field cron expression or a descriptor
	// (@hourly, @every 10m), optionally prefixed CRON_TZ=Area/City. Required.
	Schedule string `yaml:"schedule"`
	// Scope selects the source groups. Required: all, or at least one selector.
	Scope Scope `yaml:"scope"`
	// Links pair a source group with a target group explicitly; they win over adoption by
	// name. No default.
	Links []Link `yaml:"links,omitempty"`
	// Matching says how accounts are matched across systems.
	Matching Matching `yaml:"matching"`
	// Membership is mirror or add_only. Default mirror.
	Membership MembershipMode `yaml:"membership"`
	// CreateGroups creates a target group when no linked or same-named group exists.
	// Default true.
	CreateGroups bool `yaml:"create_groups"`
	// DeleteGroups is never, archive or delete. Default never.
	DeleteGroups DeletePolicy `yaml:"delete_groups"`
	// Limits block a run that would remove or delete more than they allow until an operator
	// approves it.
	Limits Limits `yaml:"limits"`
	// MaxChangeAttempts is how many runs retry a failing change before it fails for good.
	// Default 5.
	MaxChangeAttempts int `yaml:"max_change_attempts"`
}

// Scope selects source groups. A group is in scope when all is true or it matches any of
// names, patterns or ids, and it matches none of exclude_patterns.
type Scope struct {
	// All selects every source group. Default false.
	All bool `yaml:"all"`
	// Names are exact group names. No default.
	Names []string `yaml:"names,omitempty"`
	// Patterns are path.Match globs on the group name ("eng-*"). No default.
	Patterns []string `yaml:"patterns,omitempty"`
	// IDs are source group ids. No default.
	IDs []string `yaml:"ids,omitempty"`
	// ExcludePatterns remove groups the other selectors chose. No default.
	ExcludePatterns []string `yaml:"exclude_patterns,omitempty"`
}

// IsEmpty reports whether the scope selects nothing.
func (s Scope) IsEmpty() bool {
	return !s.All && len(s.Names) == 0 && len(s.Patterns) == 0 && len(s.IDs) == 0
}

// Link pairs a source group with a target group.
type Link struct {
	// Source is the source group id. Required.
	Source string `yaml:"source"`
	// TargetSystem is one of the flow's targets. Required.
	TargetSystem string `yaml:"target_system"`
	// Target is the target group id. Required.
	Target string `yaml:"target"`
}

// Matching says how source accounts are found in a target.
type Matching struct {
	// By is the matching key: email, or ext_id for a flow whose systems all have
	// match_by: ext_id. Default: the source system's match_by (email unless set).
	By string `yaml:"by"`
	// Overrides map a source email to a different target email. No default.
	Overrides []EmailOverride `yaml:"overrides,omitempty"`
}

// EmailOverride maps one source email to a target email.
type EmailOverride struct {
	// Source is the email in the source system. Required.
	Source string `yaml:"source"`
	// Target is the email the account has in the targets. Required.
	Target string `yaml:"target"`
}

// Limits are a flow's safety limits. Zero is a real limit (nothing of that kind passes
// without approval), not "unlimited".
type Limits struct {
	// MaxMemberRemovals is the most member removals per target per run. Default 50.
	MaxMemberRemovals int `yaml:"max_member_removals"`
	// MaxMemberRemovalsPercent is the most removals as a percentage (0..100) of the target's
	// memberships in scope. Default 10.
	MaxMemberRemovalsPercent float64 `yaml:"max_member_removals_percent"`
	// MaxGroupDeletions is the most group archives/deletions per target per run. Default 5.
	MaxGroupDeletions int `yaml:"max_group_deletions"`
	// MinSourceRatio (0..1) blocks a run whose source listing has fewer groups or members
	// than this fraction of the previous complete listing (a truncated or wrong-tenant
	// source must not empty the targets). Default 0.8; 0 disables the check.
	MinSourceRatio float64 `yaml:"min_source_ratio"`
}

// SystemConfig returns the named system as a connector opener takes it, defaults applied.
// For a name that is not configured it returns a SystemConfig holding only the name (Load
// has already refused flows that reference unknown systems).
func (c *Config) SystemConfig(name string) connectors.SystemConfig {
	s, ok := c.Systems[name]
	if !ok {
		return connectors.SystemConfig{Name: name}
	}
	return connectors.SystemConfig{
		Name:    name,
		Kind:    s.Kind,
		BaseURL: s.BaseURL,
		Token:   s.Token,
		MatchBy: s.MatchBy,

		AllowInsecureHTTP: s.AllowInsecureHTTP,
		Username:          s.Username,
		Password:          s.Password,
		JWTSecret:         s.JWTSecret,
		Options:           maps.Clone(s.Options),
		RateLimit:         s.RateLimit,
		Burst:             s.Burst,
		Timeout:           s.Timeout,
		MaxAttempts:       s.MaxAttempts,
		MaxRetryWait:      s.MaxRetryWait,
		MaxBodyBytes:      s.MaxBodyBytes,
		PageSize:          s.PageSize,
		Concurrency:       s.Concurrency,
	}
}
