package config

import (
	"bytes"
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/sethvargo/go-envconfig"
	"gopkg.in/yaml.v3"

	"github.com/groupsync/groupsync/connectors"
	"github.com/groupsync/groupsync/secret"
)

// maxSecretFileBytes bounds a *_file read: a secret is short, and a path pointing at a
// device or a log file must fail instead of filling memory.
const maxSecretFileBytes = 64 << 10

// Load reads the configuration at path, overlays the environment read through lookup (nil
// means the process environment), applies defaults and validates. Problems with the values
// come back together as a *ValidationError; a missing or unparsable file is a plain error.
func Load(path string, lookup envconfig.Lookuper) (*Config, error) {
	if lookup == nil {
		lookup = envconfig.OsLookuper()
	}
	data, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("config file %s not found: start from the example with `cp config.example.yaml %s`, or point --config / GROUPSYNC_CONFIG at your file: %w", path, path, err)
	}
	if err != nil {
		return nil, fmt.Errorf("read config %s: %w", path, err)
	}
	return load(path, data, lookup)
}

// LoadEnv builds the configuration from the environment alone, as if the file were empty:
// for commands that need only the database (`groupsync migrate`) on a machine without a
// configuration file. Validation is the same as Load's.
func LoadEnv(lookup envconfig.Lookuper) (*Config, error) {
	if lookup == nil {
		lookup = envconfig.OsLookuper()
	}
	return load(envOnlyPath, nil, lookup)
}

// envOnlyPath names a configuration built by LoadEnv; it needs no systems or flows.
const envOnlyPath = "(environment)"

func load(path string, data []byte, lookup envconfig.Lookuper) (*Config, error) {
	var p problems
	cfg, present, err := decode(data, &p)
	if err != nil {
		return nil, fmt.Errorf("parse config %s: %w", path, err)
	}
	cfg.Path = path

	if err := applyEnv(cfg, present, lookup, &p); err != nil {
		return nil, fmt.Errorf("read environment: %w", err)
	}
	resolveSecrets(cfg, &p)
	applyDefaults(cfg, present)
	validate(cfg, &p)
	if len(p) > 0 {
		return nil, &ValidationError{Path: path, Problems: p}
	}
	return cfg, nil
}

// decode parses one YAML document into a Config, and also as a node tree so defaults can
// tell an absent key from an explicit zero (`listen: ""`, `create_groups: false`,
// `max_member_removals: 0`). Unknown keys and values of the wrong type are problems with
// their key path and line (keyCheck), reported with every other problem of the file; only
// a file that is not YAML at all is an error here.
func decode(data []byte, p *problems) (*Config, *presence, error) {
	cfg := &Config{}
	dec := yaml.NewDecoder(bytes.NewReader(data))
	var root yaml.Node
	if err := dec.Decode(&root); err != nil && !errors.Is(err, io.EOF) {
		return nil, nil, err
	}
	var extra yaml.Node
	if err := dec.Decode(&extra); !errors.Is(err, io.EOF) {
		return nil, nil, errors.New("more than one YAML document: put everything in one")
	}
	if root.Kind == 0 {
		return cfg, &presence{root: &root, set: map[string]bool{}}, nil
	}
	check := checkKeys(&root, p)
	if err := root.Decode(cfg); err != nil {
		var te *yaml.TypeError
		if !errors.As(err, &te) {
			return nil, nil, err
		}
		check.typeErrors(te)
	}
	return cfg, &presence{root: &root, set: map[string]bool{}}, nil
}

// presence answers whether a key was given, in the file or in the environment.
type presence struct {
	root *yaml.Node
	// set holds dotted key paths that the environment provided.
	set map[string]bool
}

// has reports whether the key path (e.g. "flows", name, "limits", "max_member_removals")
// holds a non-null value in the file or was set from the environment.
func (p *presence) has(path ...string) bool {
	if p.set[strings.Join(path, ".")] {
		return true
	}
	n := p.root
	if n != nil && n.Kind == yaml.DocumentNode && len(n.Content) > 0 {
		n = n.Content[0]
	}
	for _, key := range path {
		n = mappingValue(n, key, 0)
		if n == nil {
			return false
		}
	}
	return n.Tag != "!!null"
}

// mappingValue finds key in a mapping node, following aliases and merge keys (`<<: *base`)
// the way the decoder does, so a key given through an anchor counts as given.
func mappingValue(n *yaml.Node, key string, depth int) *yaml.Node {
	if n == nil || depth > 32 {
		return nil
	}
	for n.Kind == yaml.AliasNode {
		if n.Alias == nil {
			return nil
		}
		n = n.Alias
	}
	if n.Kind != yaml.MappingNode {
		return nil
	}
	var merged []*yaml.Node
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := n.Content[i], n.Content[i+1]
		if k.Value == key && k.Tag != "!!merge" {
			for v.Kind == yaml.AliasNode && v.Alias != nil {
				v = v.Alias
			}
			return v
		}
		if k.Tag == "!!merge" {
			merged = append(merged, v)
		}
	}
	for _, m := range merged {
		for m.Kind == yaml.AliasNode && m.Alias != nil {
			m = m.Alias
		}
		if m.Kind == yaml.SequenceNode {
			for _, item := range m.Content {
				if v := mappingValue(item, key, depth+1); v != nil {
					return v
				}
			}
			continue
		}
		if v := mappingValue(m, key, depth+1); v != nil {
			return v
		}
	}
	return nil
}

// envValue records whether a variable was set at all, so GROUPSYNC_HTTP_LISTEN="" (disable
// the listener) differs from an unset variable.
type envValue struct {
	value string
	set   bool
}

// EnvDecode implements envconfig.Decoder; go-envconfig calls it only for set variables.
func (e *envValue) EnvDecode(v string) error {
	e.value, e.set = v, true
	return nil
}

// fixedEnv are the overrides whose names do not depend on the file. Integers are read as
// text so a bad value becomes a validation problem among the others, not an early error.
type fixedEnv struct {
	DatabaseURL      envValue `env:"DATABASE_URL"`
	DatabaseURLFile  envValue `env:"DATABASE_URL_FILE"`
	DatabaseSchema   envValue `env:"DATABASE_SCHEMA"`
	DatabaseMaxConns envValue `env:"DATABASE_MAX_CONNS"`
	LogLevel         envValue `env:"LOG_LEVEL"`
	LogFormat        envValue `env:"LOG_FORMAT"`
	HTTPListen       envValue `env:"HTTP_LISTEN"`
	SCIMListen       envValue `env:"SCIM_LISTEN"`
	LeaseTTL         envValue `env:"LEASE_TTL"`
	HistoryRetention envValue `env:"HISTORY_RETENTION"`
}

func applyEnv(cfg *Config, present *presence, lookup envconfig.Lookuper, p *problems) error {
	var env fixedEnv
	if err := envconfig.ProcessWith(context.Background(), &envconfig.Config{
		Target:   &env,
		Lookuper: envconfig.PrefixLookuper(EnvPrefix, lookup),
	}); err != nil {
		return err
	}
	// An empty variable counts as unset, except for the listener where "" means "off".
	setString := func(e envValue, key string, dst *string) {
		if e.set && e.value != "" {
			*dst = e.value
			present.set[key] = true
		}
	}
	setSecret(env.DatabaseURL, env.DatabaseURLFile, &cfg.Database.URL, &cfg.Database.URLFile)
	setString(env.DatabaseSchema, "database.schema", &cfg.Database.Schema)
	if e := env.DatabaseMaxConns; e.set && e.value != "" {
		n, err := strconv.Atoi(e.value)
		if err != nil {
			p.add("database.max_conns", "GROUPSYNC_DATABASE_MAX_CONNS=%q is not an integer", e.value)
		} else {
			cfg.Database.MaxConns = n
			present.set["database.max_conns"] = true
		}
	}
	setString(env.LogLevel, "log.level", &cfg.Log.Level)
	setString(env.LogFormat, "log.format", &cfg.Log.Format)
	if env.HTTPListen.set {
		cfg.HTTP.Listen = env.HTTPListen.value
		present.set["http.listen"] = true
	}
	if env.SCIMListen.set {
		cfg.SCIM.Listen = env.SCIMListen.value
		present.set["scim.listen"] = true
	}
	if e := env.LeaseTTL; e.set && e.value != "" {
		d, err := time.ParseDuration(e.value)
		if err != nil {
			p.add("lease.ttl", "GROUPSYNC_LEASE_TTL=%q is not a duration (e.g. 30s, 2m)", e.value)
		} else {
			cfg.Lease.TTL = d
			present.set["lease.ttl"] = true
		}
	}
	if e := env.HistoryRetention; e.set && e.value != "" {
		d, err := time.ParseDuration(e.value)
		if err != nil {
			p.add("history.retention", "GROUPSYNC_HISTORY_RETENTION=%q is not a duration (e.g. 9600h for 400 days)", e.value)
		} else {
			cfg.History.Retention = d
			present.set["history.retention"] = true
		}
	}

	// Per-system variables are named after the systems in the file, so they are looked up
	// one by one with the same lookuper rather than through struct tags.
	for _, name := range sortedKeys(cfg.Systems) {
		s := cfg.Systems[name]
		prefix := SystemEnvPrefix(name)
		get := func(key string) envValue {
			v, ok := lookup.Lookup(prefix + key)
			return envValue{value: v, set: ok && v != ""}
		}
		if e := get("BASE_URL"); e.set {
			s.BaseURL = e.value
		}
		if e := get("USERNAME"); e.set {
			s.Username = e.value
		}
		setSecret(get("TOKEN"), get("TOKEN_FILE"), &s.Token, &s.TokenFile)
		setSecret(get("PASSWORD"), get("PASSWORD_FILE"), &s.Password, &s.PasswordFile)
		setSecret(get("JWT_SECRET"), get("JWT_SECRET_FILE"), &s.JWTSecret, &s.JWTSecretFile)
		cfg.Systems[name] = s
	}
	return nil
}

// setSecret overlays a secret from the environment. Either variable replaces both the value
// and the file of the configuration file: the operator who sets one means that source. Both
// variables set leave both fields set, which validation reports.
func setSecret(value, file envValue, dst *secret.Value, dstFile *string) {
	if !value.set && !file.set {
		return
	}
	*dst, *dstFile = secret.Value{}, ""
	if value.set && value.value != "" {
		*dst = secret.New(value.value)
	}
	if file.set {
		*dstFile = file.value
	}
}

// SystemEnvPrefix is the prefix of a system's environment variables:
// "devrev-prod" → "GROUPSYNC_SYSTEMS_DEVREV_PROD_".
func SystemEnvPrefix(name string) string {
	var b strings.Builder
	b.WriteString(EnvPrefix + "SYSTEMS_")
	for _, r := range strings.ToUpper(name) {
		if (r >= 'A' && r <= 'Z') || (r >= '0' && r <= '9') {
			b.WriteRune(r)
		} else {
			b.WriteByte('_')
		}
	}
	b.WriteByte('_')
	return b.String()
}

// resolveSecrets reads every *_file secret, recording a problem for a file that cannot be
// read and for a secret given both as a value and as a file.
func resolveSecrets(cfg *Config, p *problems) {
	readSecret(p, "database.url", &cfg.Database.URL, cfg.Database.URLFile)
	for _, name := range sortedKeys(cfg.Systems) {
		s := cfg.Systems[name]
		key := "systems." + name + "."
		readSecret(p, key+"token", &s.Token, s.TokenFile)
		readSecret(p, key+"password", &s.Password, s.PasswordFile)
		readSecret(p, key+"jwt_secret", &s.JWTSecret, s.JWTSecretFile)
		cfg.Systems[name] = s
	}
}

func readSecret(p *problems, key string, dst *secret.Value, file string) {
	if file == "" {
		return
	}
	if dst.IsSet() {
		p.add(key, "both %s and %s_file are set: keep one", lastKey(key), lastKey(key))
		return
	}
	v, err := readSecretFile(file)
	if err != nil {
		p.add(key+"_file", "%v", err)
		return
	}
	if v == "" {
		p.add(key+"_file", "%s is empty", file)
		return
	}
	*dst = secret.New(v)
}

func readSecretFile(path string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", fmt.Errorf("read secret file: %w", err)
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return "", fmt.Errorf("read secret file: %w", err)
	}
	if !st.Mode().IsRegular() {
		return "", fmt.Errorf("secret file %s is not a regular file", path)
	}
	b, err := io.ReadAll(io.LimitReader(f, maxSecretFileBytes+1))
	if err != nil {
		return "", fmt.Errorf("read secret file %s: %w", path, err)
	}
	if len(b) > maxSecretFileBytes {
		return "", fmt.Errorf("secret file %s is larger than %d bytes", path, maxSecretFileBytes)
	}
	// Files written by `echo` or editors end in a newline that is not part of the secret.
	return strings.TrimRight(string(b), "\r\n"), nil
}

func lastKey(key string) string {
	if i := strings.LastIndexByte(key, '.'); i >= 0 {
		return key[i+1:]
	}
	return key
}

// applyDefaults fills in what neither the file nor the environment gave: the top-level
// settings, then each system's, then each flow's.
func applyDefaults(cfg *Config, present *presence) {
	applyTopLevelDefaults(cfg, present)
	for name, s := range cfg.Systems {
		cfg.Systems[name] = systemDefaults(s)
	}
	for name, f := range cfg.Flows {
		cfg.Flows[name] = flowDefaults(cfg, name, f, present)
	}
}

// applyTopLevelDefaults fills in the database, accounts, log, listener, lease and history
// settings.
func applyTopLevelDefaults(cfg *Config, present *presence) {
	cfg.Database.Schema = cmp.Or(cfg.Database.Schema, DefaultSchema)
	if !present.has("database", "max_conns") {
		cfg.Database.MaxConns = DefaultMaxConns
	}
	cfg.Database.AcquireTimeout = cmp.Or(cfg.Database.AcquireTimeout, DefaultAcquireTimeout)
	cfg.Accounts.MaxAge = cmp.Or(cfg.Accounts.MaxAge, DefaultAccountMaxAge)
	cfg.Accounts.LookupMissTTL = cmp.Or(cfg.Accounts.LookupMissTTL, DefaultLookupMissTTL)
	cfg.Log.Level = cmp.Or(cfg.Log.Level, DefaultLogLevel)
	cfg.Log.Format = cmp.Or(cfg.Log.Format, DefaultLogFormat)
	if !present.has("http", "listen") {
		cfg.HTTP.Listen = DefaultHTTPListen
	}
	if !present.has("scim", "listen") {
		cfg.SCIM.Listen = DefaultSCIMListen
	}
	cfg.SCIM.MaxBodyBytes = cmp.Or(cfg.SCIM.MaxBodyBytes, DefaultSCIMMaxBodyBytes)
	// An explicit 0 is refused by validation rather than taken for the default.
	if !present.has("lease", "ttl") {
		cfg.Lease.TTL = DefaultLeaseTTL
	}
	if !present.has("history", "retention") {
		cfg.History.Retention = DefaultHistoryRetention
	}
}

// systemDefaults returns s with its kind's base URL, the transport defaults and match_by
// filled in.
func systemDefaults(s System) System {
	s.BaseURL = cmp.Or(s.BaseURL, DefaultBaseURLs[s.Kind])
	// Zero means "default" for the transport knobs: no one wants a 0s timeout.
	s.Timeout = cmp.Or(s.Timeout, DefaultTimeout)
	s.MaxAttempts = cmp.Or(s.MaxAttempts, DefaultMaxAttempts)
	s.MaxBodyBytes = cmp.Or(s.MaxBodyBytes, DefaultMaxBodyBytes)
	s.MatchBy = cmp.Or(s.MatchBy, connectors.MatchByEmail)
	return s
}

// flowDefaults returns flow name's f with matching, membership, group policies, limits and
// max_change_attempts filled in.
func flowDefaults(cfg *Config, name string, f Flow, present *presence) Flow {
	has := func(path ...string) bool { return present.has(append([]string{"flows", name}, path...)...) }
	if f.Matching.By == "" {
		// How the systems key their accounts decides how the flow can match them.
		f.Matching.By = string(connectors.MatchByEmail)
		if src, ok := cfg.Systems[f.Source]; ok && src.MatchBy != "" {
			f.Matching.By = string(src.MatchBy)
		}
	}
	f.Membership = cmp.Or(f.Membership, MembershipMirror)
	if !has("create_groups") {
		f.CreateGroups = true
	}
	f.DeleteGroups = cmp.Or(f.DeleteGroups, DeleteNever)
	// Zero is a meaningful limit ("block any"), so only an absent key gets the default.
	if !has("limits", "max_member_removals") {
		f.Limits.MaxMemberRemovals = DefaultMaxMemberRemovals
	}
	if !has("limits", "max_member_removals_percent") {
		f.Limits.MaxMemberRemovalsPercent = DefaultMaxMemberRemovalsPercent
	}
	if !has("limits", "max_group_deletions") {
		f.Limits.MaxGroupDeletions = DefaultMaxGroupDeletions
	}
	if !has("limits", "min_source_ratio") {
		f.Limits.MinSourceRatio = DefaultMinSourceRatio
	}
	f.MaxChangeAttempts = cmp.Or(f.MaxChangeAttempts, DefaultMaxChangeAttempts)
	return f
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}
