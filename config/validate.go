package config

import (
	"cmp"
	"errors"
	"fmt"
	"net/url"
	"path"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/robfig/cron/v3"

	"github.com/groupsync/groupsync/connectors"
	"github.com/groupsync/groupsync/connectors/apiclient"
	"github.com/groupsync/groupsync/connectors/scim"
	"github.com/groupsync/groupsync/connectors/sciminbound"
	"github.com/groupsync/groupsync/secret"
)

// Problem is one thing wrong with the configuration.
type Problem struct {
	// Key is the key path, e.g. "flows.hr-sync.targets[1]".
	Key string
	// Line is the file's line the problem is on, where it is one key of the file (0 when it
	// is not: a missing key, a value from the environment, a rule across keys).
	Line int
	// Message says what is wrong and, where it helps, how to fix it.
	Message string
}

func (p Problem) String() string {
	if p.Line > 0 {
		return fmt.Sprintf("%s (line %d): %s", p.Key, p.Line, p.Message)
	}
	return p.Key + ": " + p.Message
}

// ValidationError lists every problem Load found, so all of them can be fixed in one go.
type ValidationError struct {
	// Path is the configuration file.
	Path     string
	Problems []Problem
}

// Error lists the problems one per line under a header.
func (e *ValidationError) Error() string {
	var b strings.Builder
	noun := "problems"
	if len(e.Problems) == 1 {
		noun = "problem"
	}
	fmt.Fprintf(&b, "invalid configuration %s: %d %s", e.Path, len(e.Problems), noun)
	for _, p := range e.Problems {
		b.WriteString("\n  ")
		b.WriteString(p.String())
	}
	return b.String()
}

type problems []Problem

func (p *problems) add(key, format string, args ...any) {
	*p = append(*p, Problem{Key: key, Message: fmt.Sprintf(format, args...)})
}

func (p *problems) addAt(key string, line int, format string, args ...any) {
	*p = append(*p, Problem{Key: key, Line: line, Message: fmt.Sprintf(format, args...)})
}

var (
	nameRE   = regexp.MustCompile(`^[a-z0-9][a-z0-9-]*$`)
	schemaRE = regexp.MustCompile(`^[a-z_][a-z0-9_]*$`)
)

var kinds = []connectors.Kind{
	connectors.KindAirtable, connectors.KindDevRev, connectors.KindSCIM, connectors.KindSCIMInbound, connectors.KindSelfCommunity,
	connectors.KindSocialcast,
}

// cronParser accepts the standard 5 fields and descriptors (@hourly, @every 10m).
var cronParser = cron.NewParser(cron.Minute | cron.Hour | cron.Dom | cron.Month | cron.Dow | cron.Descriptor)

// ParseSchedule parses a flow schedule: a 5-field cron expression or a descriptor such as
// @hourly or @every 10m, optionally prefixed with CRON_TZ=Area/City.
func ParseSchedule(expr string) (s cron.Schedule, err error) {
	expr = strings.TrimSpace(expr)
	if expr == "" {
		return nil, errors.New("empty schedule")
	}
	// robfig/cron v3.0.1 slices out of range on a time zone prefix with nothing after it.
	if (strings.HasPrefix(expr, "TZ=") || strings.HasPrefix(expr, "CRON_TZ=")) && !strings.Contains(expr, " ") {
		return nil, fmt.Errorf("schedule %q has a time zone but no expression", expr)
	}
	defer func() {
		// The parser is third-party; a panic on odd input must become a config problem,
		// never a crashed daemon.
		if r := recover(); r != nil {
			s, err = nil, fmt.Errorf("schedule %q cannot be parsed", expr)
		}
	}()
	if err := checkEvery(expr); err != nil {
		return nil, err
	}
	s, err = cronParser.Parse(expr)
	if err != nil {
		return nil, fmt.Errorf("parse schedule %q: %w", expr, err)
	}
	return s, nil
}

// MinScheduleInterval is the shortest @every a flow may have. robfig/cron silently runs
// anything shorter (@every 0s, @every 200ms) every second, which is not what was written.
const MinScheduleInterval = time.Second

// checkEvery refuses an @every interval that robfig/cron would not run as written.
func checkEvery(expr string) error {
	_, rest, _ := strings.Cut(expr, " ") // a CRON_TZ= prefix is irrelevant to an interval
	if !strings.HasPrefix(expr, "@every") {
		if !strings.HasPrefix(rest, "@every") {
			return nil
		}
		expr = rest
	}
	d, err := time.ParseDuration(strings.TrimSpace(strings.TrimPrefix(expr, "@every")))
	if err != nil {
		return fmt.Errorf("schedule %q: the interval is not a duration such as 10m or 1h", expr)
	}
	if d < MinScheduleInterval {
		return fmt.Errorf("schedule %q: the interval must be at least %s (it would run every second)", expr, MinScheduleInterval)
	}
	return nil
}

func validate(cfg *Config, p *problems) {
	validateDatabase(cfg.Database, p)
	validateAccounts(cfg.Accounts, p)
	switch cfg.Log.Level {
	case "debug", "info", "warn", "error":
	default:
		p.add("log.level", "%q is not a level: use debug, info, warn or error", cfg.Log.Level)
	}
	switch cfg.Log.Format {
	case "auto", "json", "text":
	default:
		p.add("log.format", "%q is not a format: use auto, json or text", cfg.Log.Format)
	}
	if cfg.Lease.TTL < MinLeaseTTL {
		p.add("lease.ttl", "must be at least %s (renewed every ttl/6, each renewal bounded by ttl/6), got %s", MinLeaseTTL, cfg.Lease.TTL)
	}
	if cfg.History.Retention < MinHistoryRetention {
		p.add("history.retention", "must be at least %s (e.g. 9600h for 400 days), got %s", MinHistoryRetention, cfg.History.Retention)
	}
	validateSCIMFace(cfg, p)
	if cfg.HTTP.Listen != "" && !strings.Contains(cfg.HTTP.Listen, ":") {
		p.add("http.listen", "%q is not a host:port address (e.g. \":8080\"; \"\" disables the listener)", cfg.HTTP.Listen)
	}
	if len(cfg.Systems) == 0 && cfg.Path != envOnlyPath {
		p.add("systems", "no systems configured")
	}
	for _, name := range sortedKeys(cfg.Systems) {
		validateSystem(name, cfg.Systems[name], p)
	}
	if len(cfg.Flows) == 0 && cfg.Path != envOnlyPath {
		p.add("flows", "no flows configured")
	}
	for _, name := range sortedKeys(cfg.Flows) {
		validateFlow(cfg, name, cfg.Flows[name], p)
	}
	validateDirections(cfg, p)
	validateSharedLinks(cfg, p)
}

func validateDatabase(db Database, p *problems) {
	u := db.URL.Reveal()
	switch {
	case u == "":
		p.add("database.url", "required: set database.url, database.url_file or GROUPSYNC_DATABASE_URL")
	case strings.Contains(u, "://"):
		// The URL may hold a password, so neither it nor url.Parse's error (which quotes
		// it) goes into the message.
		parsed, err := url.Parse(u)
		if err != nil {
			p.add("database.url", "is not a valid URL")
		} else if parsed.Scheme != "postgres" && parsed.Scheme != "postgresql" {
			p.add("database.url", "scheme must be postgres:// or postgresql://")
		}
	case !strings.Contains(u, "="):
		p.add("database.url", "is neither a postgres:// URL nor a key=value connection string")
	}
	// Postgres truncates identifiers past 63 bytes, which would silently name another schema.
	if !schemaRE.MatchString(db.Schema) || len(db.Schema) > 63 {
		p.add("database.schema", "%q is not a plain identifier ([a-z_][a-z0-9_]*, at most 63 bytes)", db.Schema)
	}
	if db.MaxConns < 1 {
		p.add("database.max_conns", "must be at least 1, got %d", db.MaxConns)
	}
	if db.AcquireTimeout < 0 {
		p.add("database.acquire_timeout", "must be > 0, got %s", db.AcquireTimeout)
	}
}

// placeholders are values people leave in a secret before they have the real one (the
// example's change-me among them), compared lower-cased without - _ and spaces.
var placeholders = map[string]bool{"changeme": true, "replaceme": true, "todo": true, "tbd": true, "xxx": true,
	"xxxx": true, "placeholder": true, "secret": true, "password": true, "token": true, "yourtoken": true,
	"yourpassword": true, "yoursecret": true, "changemepg": true}

// placeholder reports whether a secret's value is a placeholder: one of placeholders, a
// <...> template, or an unexpanded ${VAR}. Only then is the value quoted in the problem.
func placeholder(v string) bool {
	v = strings.TrimSpace(v)
	if v == "" {
		return false
	}
	if (strings.HasPrefix(v, "<") && strings.HasSuffix(v, ">")) || (strings.HasPrefix(v, "${") && strings.HasSuffix(v, "}")) {
		return true
	}
	folded := strings.NewReplacer("-", "", "_", "", " ", "").Replace(strings.ToLower(v))
	return placeholders[folded]
}

func validateAccounts(a Accounts, p *problems) {
	if a.MaxAge < 0 {
		p.add("accounts.max_age", "must be > 0 (a few seconds re-reads accounts every run), got %s", a.MaxAge)
	}
	if a.LookupMissTTL < 0 {
		p.add("accounts.lookup_miss_ttl", "must be > 0 (a few seconds asks targets for unknown emails every run), got %s", a.LookupMissTTL)
	}
}

// validateSystem checks one system: its name and kind, then what its kind requires. A
// scim_inbound system is served by the face, so it has checks of its own.
func validateSystem(name string, s System, p *problems) {
	key := "systems." + name
	if !nameRE.MatchString(name) {
		p.add(key, "system name %q must match [a-z0-9][a-z0-9-]*", name)
	}
	env := SystemEnvPrefix(name)
	validateSystemKind(key, s.Kind, p)
	if s.Kind == connectors.KindSCIMInbound {
		validateSCIMInbound(key, env, s, p)
		return
	}
	validateBaseURL(key, s, p)
	validateCredentials(key, env, s, p)
	validateNoPlaceholderSecrets(key, env, s, p)
	validateSystemMatchBy(key, s, p)
	validateTransport(key, s, p)
}

// validateSystemKind checks that the system names one of the known kinds.
func validateSystemKind(key string, kind connectors.Kind, p *problems) {
	if slices.Contains(kinds, kind) {
		return
	}
	if kind == "" {
		p.add(key+".kind", "required: one of airtable, devrev, scim, scim_inbound, selfcommunity, socialcast")
	} else {
		p.add(key+".kind", "unknown kind %q: use airtable, devrev, scim, scim_inbound, selfcommunity or socialcast", kind)
	}
}

// validateBaseURL checks that base_url is given where the kind has no default host, and is
// an http(s) URL: plain http only to a loopback host or with allow_insecure_http.
func validateBaseURL(key string, s System, p *problems) {
	if s.BaseURL == "" {
		switch s.Kind {
		case connectors.KindSelfCommunity, connectors.KindSocialcast:
			p.add(key+".base_url", "required for kind %s (the customer's own host)", s.Kind)
		case connectors.KindSCIM:
			p.add(key+".base_url", "required for kind scim (the provider's SCIM base, e.g. https://example.com/scim/v2)")
		}
	} else if u, err := url.Parse(s.BaseURL); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		p.add(key+".base_url", "%q is not an http(s) URL", apiclient.RedactURL(s.BaseURL))
	} else if err := apiclient.CheckScheme(u, s.AllowInsecureHTTP); err != nil {
		p.add(key+".base_url", "%v", err)
	}
}

// validateCredentials checks that the system has the credentials its kind authenticates
// with, and kind-specific options (airtable's enterprise account, scim's options).
func validateCredentials(key, env string, s System, p *problems) {
	missing := func(what string, envs ...string) {
		p.add(key, "kind %s needs %s (env %s)", s.Kind, what, strings.Join(envs, " or "))
	}
	switch s.Kind {
	case connectors.KindDevRev:
		if !s.Token.IsSet() {
			missing("token or token_file", env+"TOKEN", env+"TOKEN_FILE")
		}
	case connectors.KindAirtable:
		if !s.Token.IsSet() {
			missing("token or token_file", env+"TOKEN", env+"TOKEN_FILE")
		}
		if s.Options["enterprise_account_id"] == "" {
			p.add(key+".options.enterprise_account_id", "required for kind airtable")
		}
	case connectors.KindSCIM:
		if !s.Token.IsSet() {
			missing("token or token_file (the provider's bearer token)", env+"TOKEN", env+"TOKEN_FILE")
		}
		validateSCIMOptions(key, s, p)
	case connectors.KindSelfCommunity:
		if !s.Token.IsSet() && !(s.JWTSecret.IsSet() && s.Options["jwt_user_id"] != "") {
			missing("token, or jwt_secret with options.jwt_user_id", env+"TOKEN", env+"JWT_SECRET")
		}
	case connectors.KindSocialcast:
		if !s.Token.IsSet() && !(s.Username != "" && s.Password.IsSet()) {
			missing("token, or username with password", env+"TOKEN", env+"USERNAME + "+env+"PASSWORD")
		}
	}
}

// validateNoPlaceholderSecrets checks that no secret of the system is a placeholder left
// in place of the real credential.
func validateNoPlaceholderSecrets(key, env string, s System, p *problems) {
	for _, sec := range []struct {
		key, env string
		v        secret.Value
	}{{"token", "TOKEN", s.Token}, {"password", "PASSWORD", s.Password}, {"jwt_secret", "JWT_SECRET", s.JWTSecret}} {
		if placeholder(sec.v.Reveal()) {
			p.add(key+"."+sec.key, "is the placeholder %q, not a credential: set %s%s (or %s%s_FILE, or %s_file)",
				sec.v.Reveal(), env, sec.env, env, sec.env, sec.key)
		}
	}
}

// validateSystemMatchBy checks that match_by is a key the system's kind can match accounts by.
func validateSystemMatchBy(key string, s System, p *problems) {
	switch s.MatchBy {
	case "", connectors.MatchByEmail:
	case connectors.MatchByExtID:
		if !s.Kind.MatchesByExtID() {
			p.add(key+".match_by", "ext_id is only offered by kind selfcommunity (its SSO users' external id); kind %s matches by email", s.Kind)
		}
	default:
		p.add(key+".match_by", "%q is not a way to match accounts: use email or ext_id", s.MatchBy)
	}
}

// validateTransport checks the client knobs: rate limit, timeouts, retries, body and page
// sizes, and concurrency.
func validateTransport(key string, s System, p *problems) {
	if s.RateLimit < 0 {
		p.add(key+".rate_limit", "must be >= 0 (0 = the connector's default), got %v", s.RateLimit)
	}
	if s.Burst < 0 {
		p.add(key+".burst", "must be >= 0 (0 = the connector's default), got %d", s.Burst)
	}
	if s.Timeout <= 0 {
		p.add(key+".timeout", "must be > 0, got %s", s.Timeout)
	}
	if s.MaxAttempts < 1 {
		p.add(key+".max_attempts", "must be >= 1, got %d", s.MaxAttempts)
	}
	if s.MaxRetryWait < 0 {
		p.add(key+".max_retry_wait", "must be >= 0 (0 = the connector's default), got %s", s.MaxRetryWait)
	}
	if s.MaxBodyBytes <= 0 {
		p.add(key+".max_body_bytes", "must be > 0, got %d", s.MaxBodyBytes)
	}
	if s.PageSize < 0 {
		p.add(key+".page_size", "must be >= 0 (0 = the connector's default), got %d", s.PageSize)
	}
	if s.Concurrency < 0 {
		p.add(key+".concurrency", "must be >= 0 (0 = the connector's default), got %d", s.Concurrency)
	}
}

// validateFlow checks one flow: its name, the systems it reads and writes, its schedule,
// scope, links, matching, policies and limits.
func validateFlow(cfg *Config, name string, f Flow, p *problems) {
	key := "flows." + name
	if !nameRE.MatchString(name) {
		p.add(key, "flow name %q must match [a-z0-9][a-z0-9-]*", name)
	}
	validateFlowSource(cfg, key, f, p)
	validateFlowTargets(cfg, key, f, p)
	validateFlowSchedule(key, f.Schedule, p)
	validateScope(key+".scope", f.Scope, p)
	validateLinks(key, f, p)
	validateMatching(cfg, key, f, p)
	validatePolicies(key, f, p)
	validateLimits(key, f.Limits, p)
	if f.MaxChangeAttempts < 1 {
		p.add(key+".max_change_attempts", "must be >= 1, got %d", f.MaxChangeAttempts)
	}
}

// validateFlowSource checks that the flow's source is given and is a configured system.
func validateFlowSource(cfg *Config, key string, f Flow, p *problems) {
	if f.Source == "" {
		p.add(key+".source", "required: the system groups are read from")
	} else if _, ok := cfg.Systems[f.Source]; !ok {
		p.add(key+".source", "unknown system %q", f.Source)
	}
}

// validateFlowTargets checks that the flow has targets, each a configured system other
// than the source, writable (not scim_inbound) and listed once.
func validateFlowTargets(cfg *Config, key string, f Flow, p *problems) {
	if len(f.Targets) == 0 {
		p.add(key+".targets", "at least one target system is required")
	}
	for i, t := range f.Targets {
		tkey := fmt.Sprintf("%s.targets[%d]", key, i)
		switch {
		case t == "":
			p.add(tkey, "empty system name")
		case t == f.Source:
			p.add(tkey, "%q is the flow's source: a system cannot be its own target", t)
		case cfg.Systems[t].Kind == connectors.KindSCIMInbound:
			p.add(tkey, "%q is of kind scim_inbound: its identity provider writes it, so it can only be a flow's source", t)
		case slices.Index(f.Targets, t) < i:
			p.add(tkey, "%q is listed twice", t)
		default:
			if _, ok := cfg.Systems[t]; !ok {
				p.add(tkey, "unknown system %q", t)
			}
		}
	}
}

// validateFlowSchedule checks that the flow's schedule is given and parses.
func validateFlowSchedule(key, schedule string, p *problems) {
	if schedule == "" {
		p.add(key+".schedule", `required: a cron expression such as "*/15 * * * *" or "@every 10m"`)
	} else if _, err := ParseSchedule(schedule); err != nil {
		p.add(key+".schedule", "%v", err)
	}
}

// validateLinks checks the flow's explicit links: each complete, on one of the flow's
// targets, and no source group or target group linked twice on one target system.
func validateLinks(key string, f Flow, p *problems) {
	seenLink := map[[2]string]int{}
	seenTarget := map[[2]string]int{}
	for i, l := range f.Links {
		lkey := fmt.Sprintf("%s.links[%d]", key, i)
		if l.Source == "" {
			p.add(lkey+".source", "required: the source group id")
		}
		if l.Target == "" {
			p.add(lkey+".target", "required: the target group id")
		}
		if !slices.Contains(f.Targets, l.TargetSystem) {
			p.add(lkey+".target_system", "%q is not one of the flow's targets", l.TargetSystem)
		}
		if j, ok := seenLink[[2]string{l.Source, l.TargetSystem}]; ok {
			p.add(lkey, "source group %q is already linked on %s by links[%d]", l.Source, l.TargetSystem, j)
		} else {
			seenLink[[2]string{l.Source, l.TargetSystem}] = i
		}
		if j, ok := seenTarget[[2]string{l.TargetSystem, l.Target}]; ok {
			p.add(lkey, "target group %q on %s is already linked by links[%d]", l.Target, l.TargetSystem, j)
		} else {
			seenTarget[[2]string{l.TargetSystem, l.Target}] = i
		}
	}
}

// validatePolicies checks that the flow's membership mode and delete_groups policy are known.
func validatePolicies(key string, f Flow, p *problems) {
	switch f.Membership {
	case MembershipMirror, MembershipAddOnly:
	default:
		p.add(key+".membership", "%q is not a mode: use mirror or add_only", f.Membership)
	}
	switch f.DeleteGroups {
	case DeleteNever, DeleteArchive, DeleteHard:
	default:
		p.add(key+".delete_groups", "%q is not a policy: use never, archive or delete", f.DeleteGroups)
	}
}

// validateLimits checks that the flow's safety limits are in range.
func validateLimits(key string, l Limits, p *problems) {
	if l.MaxMemberRemovals < 0 {
		p.add(key+".limits.max_member_removals", "must be >= 0, got %d", l.MaxMemberRemovals)
	}
	if l.MaxMemberRemovalsPercent < 0 || l.MaxMemberRemovalsPercent > 100 {
		p.add(key+".limits.max_member_removals_percent", "must be between 0 and 100, got %v", l.MaxMemberRemovalsPercent)
	}
	if l.MaxGroupDeletions < 0 {
		p.add(key+".limits.max_group_deletions", "must be >= 0, got %d", l.MaxGroupDeletions)
	}
	if l.MinSourceRatio < 0 || l.MinSourceRatio > 1 {
		p.add(key+".limits.min_source_ratio", "must be between 0 and 1, got %v", l.MinSourceRatio)
	}
}

// validateMatching checks how the flow matches accounts: the key it names must be the one
// every system of the flow keys its accounts by (systems.<name>.match_by), since an email
// and an ext_id never identify the same person; overrides map emails, so they only apply
// to a flow matching by email.
func validateMatching(cfg *Config, key string, f Flow, p *problems) {
	by := connectors.MatchBy(f.Matching.By)
	if by != connectors.MatchByEmail && by != connectors.MatchByExtID {
		p.add(key+".matching.by", "%q is not supported: use email or ext_id", f.Matching.By)
		return
	}
	for _, sys := range append([]string{f.Source}, f.Targets...) {
		s, ok := cfg.Systems[sys]
		if !ok {
			continue // refused as an unknown system already
		}
		if have := cmp.Or(s.MatchBy, connectors.MatchByEmail); have != by {
			p.add(key+".matching.by", "the flow matches by %s but system %q keys its accounts by %s (systems.%s.match_by): "+
				"set every system of the flow to the same match_by", by, sys, have, sys)
		}
	}
	if by == connectors.MatchByExtID && len(f.Matching.Overrides) > 0 {
		p.add(key+".matching.overrides", "overrides map emails, and this flow matches by ext_id: remove them")
		return
	}
	seenOverride := map[string]int{}
	for i, o := range f.Matching.Overrides {
		okey := fmt.Sprintf("%s.matching.overrides[%d]", key, i)
		if !strings.Contains(o.Source, "@") {
			p.add(okey+".source", "%q is not an email address", o.Source)
		}
		if !strings.Contains(o.Target, "@") {
			p.add(okey+".target", "%q is not an email address", o.Target)
		}
		src := connectors.NormalizeEmail(o.Source)
		if j, ok := seenOverride[src]; ok {
			p.add(okey+".source", "%q is already overridden by overrides[%d]", o.Source, j)
		} else {
			seenOverride[src] = i
		}
	}
}

func validateScope(key string, s Scope, p *problems) {
	if s.IsEmpty() {
		p.add(key, "selects no groups: set all: true, or names, patterns or ids")
	}
	if s.All && (len(s.Names) > 0 || len(s.Patterns) > 0 || len(s.IDs) > 0) {
		p.add(key+".all", "all: true already selects every group: drop names, patterns and ids (or all)")
	}
	for i, n := range s.Names {
		if strings.TrimSpace(n) == "" {
			p.add(fmt.Sprintf("%s.names[%d]", key, i), "empty name")
		}
	}
	for i, id := range s.IDs {
		if strings.TrimSpace(id) == "" {
			p.add(fmt.Sprintf("%s.ids[%d]", key, i), "empty id")
		}
	}
	checkPatterns := func(field string, patterns []string) {
		for i, pat := range patterns {
			if _, err := path.Match(pat, ""); err != nil || pat == "" {
				p.add(fmt.Sprintf("%s.%s[%d]", key, field, i), "%q is not a valid glob (path.Match syntax)", pat)
			}
		}
	}
	checkPatterns("patterns", s.Patterns)
	checkPatterns("exclude_patterns", s.ExcludePatterns)
}

// validateDirections refuses a directed cycle among flows with overlapping scopes (A→B and
// B→A, or A→B, B→C and C→A): groups written into one system would be read back out of it
// and pushed around the ring, each flow undoing another's writes. Two-way sync with
// conflict rules is a later feature. Scopes are compared conservatively, pair by pair along
// the cycle: only two scopes that provably select different group names (one of them a
// list of exact names the other cannot select) break it.
func validateDirections(cfg *Config, p *problems) {
	names := sortedKeys(cfg.Flows)
	feeds := func(a, b string) bool {
		fa, fb := cfg.Flows[a], cfg.Flows[b]
		return slices.Contains(fa.Targets, fb.Source) && scopesMayOverlap(fa, fb)
	}
	for i, start := range names {
		// Cycles are reported once, from their smallest flow name: only flows sorted after
		// start may appear in a cycle found from it.
		cycle := findCycle(start, names[i+1:], feeds)
		if cycle == nil {
			continue
		}
		if len(cycle) == 2 {
			a, b := cfg.Flows[cycle[0]], cfg.Flows[cycle[1]]
			p.add("flows."+cycle[1], "flow %q pushes %s→%s and this flow pushes %s→%s over overlapping scopes: two-way sync is not supported yet; give one flow a scope of exact names the other does not select",
				cycle[0], a.Source, b.Source, b.Source, a.Source)
			continue
		}
		steps := make([]string, 0, len(cycle)+1)
		for k, n := range cycle {
			next := cycle[(k+1)%len(cycle)]
			steps = append(steps, fmt.Sprintf("%s (%s→%s)", n, cfg.Flows[n].Source, cfg.Flows[next].Source))
		}
		steps = append(steps, cycle[0])
		p.add("flows."+cycle[0], "flows form a cycle over overlapping scopes: %s; groups would be pushed around it and each flow would undo another's writes; give one flow a scope of exact names the next one does not select",
			strings.Join(steps, " → "))
	}
}

// findCycle returns a shortest directed cycle through start whose other flows are among
// rest, as the flow names in order, or nil. Flows are few, so a breadth-first search from
// start is cheap.
func findCycle(start string, rest []string, feeds func(a, b string) bool) []string {
	prev := map[string]string{}
	queue := []string{start}
	for len(queue) > 0 {
		cur := queue[0]
		queue = queue[1:]
		// A flow targeting its own source is refused on its own (targets[i]).
		if cur != start && feeds(cur, start) {
			var path []string
			for n := cur; n != start; n = prev[n] {
				path = append(path, n)
			}
			path = append(path, start)
			slices.Reverse(path)
			return path
		}
		for _, next := range rest {
			if _, seen := prev[next]; !seen && feeds(cur, next) {
				prev[next] = cur
				queue = append(queue, next)
			}
		}
	}
	return nil
}

// validateSharedLinks refuses explicit links of two flows that point two different source
// groups at one target group: one link per target group, or the two flows would take turns
// writing it.
func validateSharedLinks(cfg *Config, p *problems) {
	type claim struct {
		key, flow, source, sourceID string
	}
	claims := map[[2]string]claim{}
	for _, name := range sortedKeys(cfg.Flows) {
		f := cfg.Flows[name]
		for i, l := range f.Links {
			k := [2]string{l.TargetSystem, l.Target}
			c := claim{key: fmt.Sprintf("flows.%s.links[%d]", name, i), flow: name, source: f.Source, sourceID: l.Source}
			first, taken := claims[k]
			switch {
			case !taken:
				claims[k] = c
			case first.flow != name && (first.source != c.source || first.sourceID != c.sourceID):
				p.add(c.key, "target group %q on %s is already linked to %s group %q by %s: a target group belongs to one link",
					l.Target, l.TargetSystem, first.source, first.sourceID, first.key)
			}
		}
	}
}

func scopesMayOverlap(a, b Flow) bool {
	if namesOnly(a) {
		return slices.ContainsFunc(a.Scope.Names, func(n string) bool { return maySelect(b.Scope, n) })
	}
	if namesOnly(b) {
		return slices.ContainsFunc(b.Scope.Names, func(n string) bool { return maySelect(a.Scope, n) })
	}
	return true
}

// namesOnly reports whether every group the flow pushes is known by name from the
// configuration: exact names only, and no explicit links (a linked target group's name is
// not known here).
func namesOnly(f Flow) bool {
	s := f.Scope
	return !s.All && len(s.Patterns) == 0 && len(s.IDs) == 0 && len(s.Names) > 0 && len(f.Links) == 0
}

// maySelect reports whether a group named name could be in scope s. IDs are opaque here, so
// a scope with ids may select anything.
func maySelect(s Scope, name string) bool {
	for _, ex := range s.ExcludePatterns {
		if ok, _ := path.Match(ex, name); ok {
			return false
		}
	}
	if s.All || len(s.IDs) > 0 || slices.Contains(s.Names, name) {
		return true
	}
	for _, pat := range s.Patterns {
		if ok, _ := path.Match(pat, name); ok {
			return true
		}
	}
	return false
}

// validateSCIMOptions checks kind scim's options, each problem under its own key, with the
// connector's own rules (scim.Open refuses the same).
func validateSCIMOptions(key string, s System, p *problems) {
	for k, v := range s.Options {
		switch k {
		case scim.OptionWriteMode:
			if !slices.Contains([]string{"", scim.WriteModeAuto, scim.WriteModePatch, scim.WriteModePut}, strings.ToLower(strings.TrimSpace(v))) {
				p.add(key+".options."+k, "%q must be auto, patch or put", v)
			}
		case scim.OptionFilter:
			if !slices.Contains([]string{"", "auto", "off"}, strings.ToLower(strings.TrimSpace(v))) {
				p.add(key+".options."+k, "%q must be auto or off", v)
			}
		default:
			p.add(key+".options."+k, "unknown option for kind scim (known: %s, %s)", scim.OptionWriteMode, scim.OptionFilter)
		}
	}
	if s.Username != "" || s.Password.IsSet() || s.JWTSecret.IsSet() {
		p.add(key, "kind scim uses only token; username, password and jwt_secret must be empty")
	}
	if s.PageSize > scim.MaxPageSize {
		p.add(key+".page_size", "must be at most %d for kind scim, got %d", scim.MaxPageSize, s.PageSize)
	}
}

// validateSCIMInbound checks a system of kind scim_inbound: the face serves it, so it has
// no base_url and no outbound credentials; token is what its identity provider presents.
func validateSCIMInbound(key, env string, s System, p *problems) {
	if s.BaseURL != "" {
		p.add(key+".base_url", "must be empty for kind scim_inbound: groupsync serves it (scim.listen, path /scim/v2)")
	}
	if !s.Token.IsSet() {
		p.add(key, "kind scim_inbound needs token or token_file: the bearer token its identity provider sends (env %sTOKEN or %sTOKEN_FILE)", env, env)
	} else if placeholder(s.Token.Reveal()) {
		p.add(key+".token", "is a placeholder, not a credential: set %sTOKEN (or %sTOKEN_FILE, or token_file)", env, env)
	} else if len(s.Token.Reveal()) < minInboundTokenLen {
		p.add(key+".token", "is shorter than %d characters: an identity provider's token must not be guessable (e.g. openssl rand -hex 32)", minInboundTokenLen)
	}
	if s.Username != "" || s.Password.IsSet() || s.JWTSecret.IsSet() {
		p.add(key, "kind scim_inbound uses only token; username, password and jwt_secret must be empty")
	}
	if _, err := sciminbound.ParseOptions(s.Options); err != nil {
		p.add(key, "%v", err)
	}
	if s.RateLimit < 0 {
		p.add(key+".rate_limit", "must be >= 0 (0 = %v requests/s for the identity provider), got %v", DefaultInboundRateLimit, s.RateLimit)
	}
	if s.Burst < 0 {
		p.add(key+".burst", "must be >= 0 (0 = %d), got %d", DefaultInboundBurst, s.Burst)
	}
}

// minInboundTokenLen is the shortest token the face accepts from an identity provider.
const minInboundTokenLen = 32

// validateSCIMFace checks the face's settings, and that no two scim_inbound systems share
// a token: the face tells its clients apart by it.
func validateSCIMFace(cfg *Config, p *problems) {
	if cfg.SCIM.Listen != "" && !strings.Contains(cfg.SCIM.Listen, ":") {
		p.add("scim.listen", "%q is not a host:port address (e.g. \":8081\"; \"\" disables the SCIM face)", cfg.SCIM.Listen)
	}
	if cfg.SCIM.MaxBodyBytes < 0 {
		p.add("scim.max_body_bytes", "must be > 0, got %d", cfg.SCIM.MaxBodyBytes)
	}
	if cfg.SCIM.Listen != "" && cfg.SCIM.Listen == cfg.HTTP.Listen {
		p.add("scim.listen", "%q is also http.listen: the SCIM face needs its own address", cfg.SCIM.Listen)
	}
	owner := map[string]string{}
	for _, name := range sortedKeys(cfg.Systems) {
		s := cfg.Systems[name]
		if s.Kind != connectors.KindSCIMInbound || !s.Token.IsSet() {
			continue
		}
		if other, ok := owner[s.Token.Reveal()]; ok {
			p.add("systems."+name+".token", "is also the token of scim_inbound system %q: each identity provider needs its own", other)
			continue
		}
		owner[s.Token.Reveal()] = name
	}
}
