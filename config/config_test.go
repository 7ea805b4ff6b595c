package config_test

import (
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/sethvargo/go-envconfig"

	"github.com/groupsync/groupsync/config"
	"github.com/groupsync/groupsync/connectors"
)

// exampleEnv is what an operator exports to run config.example.yaml: the example keeps every
// secret out of the file.
func exampleEnv() map[string]string {
	return map[string]string{
		"GROUPSYNC_SYSTEMS_AIRTABLE_PROD_TOKEN":           "pat-airtable",
		"GROUPSYNC_SYSTEMS_DEVREV_PROD_TOKEN":             "pat-devrev",
		"GROUPSYNC_SYSTEMS_SELFCOMMUNITY_PROD_JWT_SECRET": "jwt-secret",
		"GROUPSYNC_SYSTEMS_SOCIALCAST_PROD_PASSWORD":      "basic-password",
	}
}

const examplePath = "../config.example.yaml"

func TestExampleLoadsAndValidates(t *testing.T) {
	cfg, err := config.Load(examplePath, envconfig.MapLookuper(exampleEnv()))
	if err != nil {
		t.Fatalf("config.example.yaml with its documented env: %v", err)
	}
	if got := cfg.Systems["devrev-prod"].BaseURL; got != "https://api.devrev.ai" {
		t.Errorf("devrev default base_url = %q", got)
	}
	if got := cfg.Systems["devrev-prod"].Token.Reveal(); got != "pat-devrev" {
		t.Errorf("devrev token from env = %q", got)
	}
	f := cfg.Flows["community-to-devrev"]
	if !f.CreateGroups || f.DeleteGroups != config.DeleteNever || f.Membership != config.MembershipAddOnly {
		t.Errorf("community-to-devrev policies = create %v delete %q membership %q", f.CreateGroups, f.DeleteGroups, f.Membership)
	}
	want := config.Limits{MaxMemberRemovals: 50, MaxMemberRemovalsPercent: 10, MaxGroupDeletions: 5, MinSourceRatio: 0.8}
	if f.Limits != want {
		t.Errorf("default limits = %+v, want %+v", f.Limits, want)
	}
	if f.MaxChangeAttempts != 5 || f.Matching.By != "email" {
		t.Errorf("defaults: max_change_attempts %d, matching.by %q", f.MaxChangeAttempts, f.Matching.By)
	}
	if cfg.HTTP.Listen != ":8080" || cfg.Database.Schema != "groupsync" || cfg.Database.MaxConns != 8 {
		t.Errorf("top-level defaults: %+v %+v", cfg.HTTP, cfg.Database)
	}
}

// TestExamplePlaceholdersAreReplacedByTheEnvironment: the example as it stands is refused,
// each placeholder secret named with the variable that sets it, and the documented
// variables replace them.
func TestExamplePlaceholdersAreReplacedByTheEnvironment(t *testing.T) {
	_, err := config.Load(examplePath, envconfig.MapLookuper(nil))
	var ve *config.ValidationError
	if !errors.As(err, &ve) {
		t.Fatalf("config.example.yaml with its placeholder secrets: %v, want a validation error", err)
	}
	for _, v := range []string{"GROUPSYNC_SYSTEMS_AIRTABLE_PROD_TOKEN", "GROUPSYNC_SYSTEMS_DEVREV_PROD_TOKEN",
		"GROUPSYNC_SYSTEMS_SELFCOMMUNITY_PROD_JWT_SECRET", "GROUPSYNC_SYSTEMS_SOCIALCAST_PROD_PASSWORD"} {
		if !strings.Contains(err.Error(), "placeholder \"change-me\", not a credential: set "+v+" ") {
			t.Errorf("the refusal does not name %s:\n%v", v, err)
		}
	}
	if len(ve.Problems) != 4 {
		t.Errorf("%d problems, want the 4 placeholders only:\n%v", len(ve.Problems), err)
	}
	cfg, err := config.Load(examplePath, envconfig.MapLookuper(map[string]string{
		"GROUPSYNC_SYSTEMS_AIRTABLE_PROD_TOKEN":           "real-airtable",
		"GROUPSYNC_SYSTEMS_DEVREV_PROD_TOKEN":             "real-devrev",
		"GROUPSYNC_SYSTEMS_SELFCOMMUNITY_PROD_JWT_SECRET": "real-jwt",
		"GROUPSYNC_SYSTEMS_SOCIALCAST_PROD_PASSWORD":      "real-password",
	}))
	if err != nil {
		t.Fatal(err)
	}
	for sys, got := range map[string]string{
		"airtable-prod":      cfg.Systems["airtable-prod"].Token.Reveal(),
		"devrev-prod":        cfg.Systems["devrev-prod"].Token.Reveal(),
		"selfcommunity-prod": cfg.Systems["selfcommunity-prod"].JWTSecret.Reveal(),
		"socialcast-prod":    cfg.Systems["socialcast-prod"].Password.Reveal(),
	} {
		if !strings.HasPrefix(got, "real-") {
			t.Errorf("%s: the environment did not replace the placeholder secret", sys)
		}
	}
}

// TestExampleDocumentsEveryKey keeps config.example.yaml complete: every YAML key of the
// Config types must appear in it, set or in a comment.
func TestExampleDocumentsEveryKey(t *testing.T) {
	example, err := os.ReadFile(examplePath)
	if err != nil {
		t.Fatal(err)
	}
	seen := map[reflect.Type]bool{}
	var walk func(reflect.Type)
	walk = func(typ reflect.Type) {
		for typ.Kind() == reflect.Map || typ.Kind() == reflect.Slice || typ.Kind() == reflect.Pointer {
			typ = typ.Elem()
		}
		if typ.Kind() != reflect.Struct || seen[typ] || typ.PkgPath() != "github.com/groupsync/groupsync/config" {
			return
		}
		seen[typ] = true
		for i := range typ.NumField() {
			f := typ.Field(i)
			key, _, _ := strings.Cut(f.Tag.Get("yaml"), ",")
			if key == "" || key == "-" {
				continue
			}
			if !regexp.MustCompile(`(?m)[\s{,#]` + regexp.QuoteMeta(key) + `:`).Match(example) {
				t.Errorf("config.example.yaml does not document %s (%s.%s)", key, typ.Name(), f.Name)
			}
			walk(f.Type)
		}
	}
	walk(reflect.TypeOf(config.Config{}))
}

func TestMissingFileSuggestsTheExample(t *testing.T) {
	path := filepath.Join(t.TempDir(), "groupsync.yaml")
	_, err := config.Load(path, envconfig.MapLookuper(nil))
	if err == nil || !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("want a not-exist error, got %v", err)
	}
	if !strings.Contains(err.Error(), path) || !strings.Contains(err.Error(), "cp config.example.yaml "+path) {
		t.Errorf("error should name the path and suggest the copy: %v", err)
	}
}

// TestUnknownKeyRefusedWithLine: a misspelt key is a problem with its key path, its line
// and the key meant, listed with every other problem of the file (a value of the wrong
// type, a rule broken elsewhere) instead of stopping at the first.
func TestUnknownKeyRefusedWithLine(t *testing.T) {
	cfg := strings.Replace(baseConfig, "    token: t-src\n", "    token: t-src\n    tokne: oops\n", 1)
	cfg = strings.Replace(cfg, "    schedule: \"@hourly\"\n", "    shedule: \"@hourly\"\n    limits: {max_member_removals: lots}\n", 1)
	_, err := config.Load(writeConfig(t, cfg), envconfig.MapLookuper(nil))
	var ve *config.ValidationError
	if !errors.As(err, &ve) {
		t.Fatalf("want every problem listed, got %v", err)
	}
	for _, want := range []string{
		`systems.src.tokne (line 7): unknown key: did you mean "token"?`,
		`flows.f.shedule (line 15): unknown key: did you mean "schedule"?`,
		`flows.f.limits.max_member_removals (line 16): "lots" is not a valid value: expected a whole number`,
		`flows.f.schedule: required`,
	} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("missing %q in:\n%v", want, err)
		}
	}
}

func TestSecondDocumentRefused(t *testing.T) {
	_, err := config.Load(writeConfig(t, baseConfig+"---\nlog: {level: debug}\n"), envconfig.MapLookuper(nil))
	if err == nil || !strings.Contains(err.Error(), "more than one YAML document") {
		t.Fatalf("second document: %v", err)
	}
}

func TestEnvOverrides(t *testing.T) {
	path := writeConfig(t, baseConfig)
	cfg, err := config.Load(path, envconfig.MapLookuper(map[string]string{
		"GROUPSYNC_DATABASE_URL":          "postgres://other@db:5432/x",
		"GROUPSYNC_DATABASE_SCHEMA":       "gs_env",
		"GROUPSYNC_DATABASE_MAX_CONNS":    "3",
		"GROUPSYNC_LOG_LEVEL":             "debug",
		"GROUPSYNC_LOG_FORMAT":            "json",
		"GROUPSYNC_HTTP_LISTEN":           "", // set but empty: disables the listener
		"GROUPSYNC_SYSTEMS_SRC_TOKEN":     "from-env",
		"GROUPSYNC_SYSTEMS_DST_BASE_URL":  "https://devrev.internal",
		"GROUPSYNC_SYSTEMS_DST_TOKEN":     "", // empty: ignored, the file's token stays
		"GROUPSYNC_SYSTEMS_UNKNOWN_TOKEN": "ignored",
	}))
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Database.URL.Reveal() != "postgres://other@db:5432/x" || cfg.Database.Schema != "gs_env" || cfg.Database.MaxConns != 3 {
		t.Errorf("database overrides not applied: schema %q max_conns %d", cfg.Database.Schema, cfg.Database.MaxConns)
	}
	if cfg.Log.Level != "debug" || cfg.Log.Format != "json" {
		t.Errorf("log overrides: %+v", cfg.Log)
	}
	if cfg.HTTP.Listen != "" {
		t.Errorf("GROUPSYNC_HTTP_LISTEN= should disable the listener, got %q", cfg.HTTP.Listen)
	}
	if got := cfg.Systems["src"].Token.Reveal(); got != "from-env" {
		t.Errorf("src token = %q, want the env value", got)
	}
	if got := cfg.Systems["dst"].Token.Reveal(); got != "t-dst" {
		t.Errorf("dst token = %q, want the file value", got)
	}
	if got := cfg.Systems["dst"].BaseURL; got != "https://devrev.internal" {
		t.Errorf("dst base_url = %q", got)
	}

	_, err = config.Load(path, envconfig.MapLookuper(map[string]string{"GROUPSYNC_DATABASE_MAX_CONNS": "many"}))
	assertProblem(t, err, "database.max_conns", `GROUPSYNC_DATABASE_MAX_CONNS="many" is not an integer`)
}

func TestExplicitZeroesKept(t *testing.T) {
	cfg, err := config.Load(writeConfig(t, baseConfig+`    create_groups: false
    limits: {max_member_removals: 0, max_member_removals_percent: 0, max_group_deletions: 0, min_source_ratio: 0}
http:
  listen: ""
`), envconfig.MapLookuper(nil))
	if err != nil {
		t.Fatal(err)
	}
	f := cfg.Flows["f"]
	if f.CreateGroups || f.Limits != (config.Limits{}) {
		t.Errorf("explicit false/0 replaced by defaults: create_groups %v limits %+v", f.CreateGroups, f.Limits)
	}
	if cfg.HTTP.Listen != "" {
		t.Errorf(`listen: "" should disable the listener, got %q`, cfg.HTTP.Listen)
	}
}

func TestDefaultsThroughAnchors(t *testing.T) {
	cfg, err := config.Load(writeConfig(t, `
database: {url: "postgres://postgres@127.0.0.1/postgres"}
systems:
  src: {kind: devrev, token: a}
  dst: {kind: devrev, token: b}
x-policy: &policy
  create_groups: false
  limits: {max_member_removals: 0}
flows:
  f:
    <<: *policy
    source: src
    targets: [dst]
    schedule: "@hourly"
    scope: {all: true}
`), envconfig.MapLookuper(nil))
	if err == nil {
		t.Fatalf("x-policy is an unknown top-level key and must be refused; got cfg %+v", cfg.Flows["f"])
	}
	// Anchors defined inside a known key are the supported way to share settings.
	cfg, err = config.Load(writeConfig(t, `
database: {url: "postgres://postgres@127.0.0.1/postgres"}
systems:
  src: {kind: devrev, token: a}
  dst: {kind: devrev, token: b}
flows:
  f: &policy
    source: src
    targets: [dst]
    schedule: "@hourly"
    scope: {all: true}
    create_groups: false
    limits: {max_member_removals: 0}
  g:
    <<: *policy
    targets: [dst]
    schedule: "@daily"
`), envconfig.MapLookuper(nil))
	if err != nil {
		t.Fatal(err)
	}
	g := cfg.Flows["g"]
	if g.CreateGroups || g.Limits.MaxMemberRemovals != 0 || g.Limits.MaxGroupDeletions != 5 {
		t.Errorf("merged keys should count as given: create_groups %v limits %+v", g.CreateGroups, g.Limits)
	}
}

func TestSecretFiles(t *testing.T) {
	dir := t.TempDir()
	tokenFile := filepath.Join(dir, "token")
	if err := os.WriteFile(tokenFile, []byte("s3cret\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	urlFile := filepath.Join(dir, "url")
	if err := os.WriteFile(urlFile, []byte("postgres://u:pw@db/x\r\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	body := strings.Replace(baseConfig, "    token: t-src\n", "    token_file: "+tokenFile+"\n", 1)
	body = strings.Replace(body, "  url: postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable\n", "  url_file: "+urlFile+"\n", 1)
	cfg, err := config.Load(writeConfig(t, body), envconfig.MapLookuper(nil))
	if err != nil {
		t.Fatal(err)
	}
	if got := cfg.Systems["src"].Token.Reveal(); got != "s3cret" {
		t.Errorf("token from file = %q, want the trailing newline trimmed", got)
	}
	if got := cfg.Database.URL.Reveal(); got != "postgres://u:pw@db/x" {
		t.Errorf("url from file = %q", got)
	}

	// The environment's file replaces the file's inline value.
	cfg, err = config.Load(writeConfig(t, baseConfig), envconfig.MapLookuper(map[string]string{
		"GROUPSYNC_SYSTEMS_SRC_TOKEN_FILE": tokenFile,
	}))
	if err != nil {
		t.Fatal(err)
	}
	if got := cfg.Systems["src"].Token.Reveal(); got != "s3cret" {
		t.Errorf("token from env file = %q", got)
	}

	both := strings.Replace(baseConfig, "    token: t-src\n", "    token: t-src\n    token_file: "+tokenFile+"\n", 1)
	_, err = config.Load(writeConfig(t, both), envconfig.MapLookuper(nil))
	assertProblem(t, err, "systems.src.token", "both token and token_file are set")

	_, err = config.Load(writeConfig(t, baseConfig), envconfig.MapLookuper(map[string]string{
		"GROUPSYNC_SYSTEMS_SRC_TOKEN":      "x",
		"GROUPSYNC_SYSTEMS_SRC_TOKEN_FILE": tokenFile,
	}))
	assertProblem(t, err, "systems.src.token", "both token and token_file are set")

	missing := strings.Replace(baseConfig, "    token: t-src\n", "    token_file: "+filepath.Join(dir, "nope")+"\n", 1)
	_, err = config.Load(writeConfig(t, missing), envconfig.MapLookuper(nil))
	assertProblem(t, err, "systems.src.token_file", "no such file")

	dirAsFile := strings.Replace(baseConfig, "    token: t-src\n", "    token_file: "+dir+"\n", 1)
	_, err = config.Load(writeConfig(t, dirAsFile), envconfig.MapLookuper(nil))
	assertProblem(t, err, "systems.src.token_file", "not a regular file")
}

func TestSystemConfig(t *testing.T) {
	cfg, err := config.Load(examplePath, envconfig.MapLookuper(exampleEnv()))
	if err != nil {
		t.Fatal(err)
	}
	sc := cfg.SystemConfig("airtable-prod")
	if sc.Name != "airtable-prod" || sc.Kind != connectors.KindAirtable || sc.BaseURL != "https://api.airtable.com" ||
		sc.Token.Reveal() != "pat-airtable" || sc.Options["enterprise_account_id"] != "entXXXXXXXXXXXXXX" {
		t.Errorf("airtable SystemConfig = %#v", sc)
	}
	if sc.Timeout != 30*time.Second || sc.MaxAttempts != 5 || sc.MaxRetryWait != 2*time.Minute || sc.MaxBodyBytes != 8<<20 {
		t.Errorf("transport defaults not applied: %+v", sc)
	}
	sc.Options["enterprise_account_id"] = "changed"
	if cfg.Systems["airtable-prod"].Options["enterprise_account_id"] == "changed" {
		t.Error("SystemConfig shares its Options map with the Config")
	}
	soc := cfg.SystemConfig("socialcast-prod")
	if soc.Username != "sync-bot@example.com" || soc.Password.Reveal() != "basic-password" {
		t.Errorf("socialcast credentials: %q", soc.Username)
	}
	if got := cfg.SystemConfig("nope"); got.Name != "nope" || got.Kind != "" {
		t.Errorf("unknown system = %+v", got)
	}
}

func TestRedactedNeverShowsSecrets(t *testing.T) {
	const canary = "CANARY-7f3a9"
	dir := t.TempDir()
	jwtFile := filepath.Join(dir, "jwt")
	if err := os.WriteFile(jwtFile, []byte(canary+"-jwt\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	path := writeConfig(t, `
database:
  url: postgres://gs:`+canary+`-db@db.internal:5432/gs?sslmode=require
systems:
  src: {kind: devrev, token: `+canary+`-token}
  dst:
    kind: socialcast
    base_url: https://x.socialcast.com
    username: bot
    password: `+canary+`-password
  sc:
    kind: selfcommunity
    base_url: https://community.example.com
    jwt_secret_file: `+jwtFile+`
    options: {jwt_user_id: "1"}
flows:
  f: {source: src, targets: [dst, sc], schedule: "@hourly", scope: {all: true}}
`)
	cfg, err := config.Load(path, envconfig.MapLookuper(map[string]string{"GROUPSYNC_SYSTEMS_SRC_PASSWORD": canary + "-env"}))
	if err != nil {
		t.Fatal(err)
	}
	out, err := cfg.Redacted()
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(out), canary) {
		t.Fatalf("config show leaks a secret:\n%s", out)
	}
	for _, want := range []string{"url: '[REDACTED]'", "token: '[REDACTED]'", "password: '[REDACTED]'", "jwt_secret: '[REDACTED]'", "jwt_secret_file: " + jwtFile, "timeout: 30s"} {
		if !strings.Contains(string(out), want) {
			t.Errorf("config show lacks %q:\n%s", want, out)
		}
	}

	// Validation messages about secrets must not quote them either.
	bad := strings.Replace(baseConfig, "postgres://postgres@", "mysql://u:"+canary+"@", 1)
	bad = strings.Replace(bad, "  url: ", "  url: ", 1)
	_, err = config.Load(writeConfig(t, bad), envconfig.MapLookuper(nil))
	assertProblem(t, err, "database.url", "scheme must be postgres://")
	if strings.Contains(err.Error(), canary) {
		t.Errorf("validation error leaks the database password: %v", err)
	}
	_, err = config.Load(writeConfig(t, strings.Replace(baseConfig, "postgres://postgres@", "postgres://u:"+canary+"%zz@", 1)), envconfig.MapLookuper(nil))
	assertProblem(t, err, "database.url", "not a valid URL")
	if strings.Contains(err.Error(), canary) {
		t.Errorf("validation error leaks the database password: %v", err)
	}
}

const baseConfig = `database:
  url: postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable
systems:
  src:
    kind: devrev
    token: t-src
  dst:
    kind: devrev
    token: t-dst
flows:
  f:
    source: src
    targets: [dst]
    schedule: "@hourly"
    scope: {all: true}
`

func writeConfig(t *testing.T, body string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "groupsync.yaml")
	if err := os.WriteFile(path, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

func mustProblems(t *testing.T, err error) []config.Problem {
	t.Helper()
	var ve *config.ValidationError
	if !errors.As(err, &ve) {
		t.Fatalf("want *config.ValidationError, got %T: %v", err, err)
	}
	return ve.Problems
}

func assertProblem(t *testing.T, err error, key, message string) {
	t.Helper()
	for _, p := range mustProblems(t, err) {
		if p.Key == key && strings.Contains(p.Message, message) {
			return
		}
	}
	t.Errorf("no problem %s: ...%s... in:\n%v", key, message, err)
}

// TestUnknownEnvironmentVariablesAreWarned: a GROUPSYNC_* variable nothing reads (a typo,
// or a system variable for a system the file does not have) is warned with the closest name
// that is read; the variables read, and the test suite's own, are not; values never show.
func TestUnknownEnvironmentVariablesAreWarned(t *testing.T) {
	cfg, err := config.Load(writeConfig(t, baseConfig), envconfig.MapLookuper(nil))
	if err != nil {
		t.Fatal(err)
	}
	got := config.UnknownEnv([]string{
		"GROUPSYNC_DATABSE_URL=postgres://secret@x/y", "GROUPSYNC_DATABASE_URL=ok", "GROUPSYNC_SYSTEMS_DST_TOKEN=ok",
		"GROUPSYNC_SYSTEMS_DEVREV_PROD_TOKEN=s3cret", "GROUPSYNC_TEST_DATABASE_URL=x", "GROUPSYNC_LEASE_TTL=1m",
		"HOME=/root", "GROUPSYNC_SYSTEMS_SRC_TOKEN_FIEL=/run/secrets/t",
	}, cfg)
	want := []string{
		"environment variable GROUPSYNC_DATABSE_URL is not read by groupsync: did you mean GROUPSYNC_DATABASE_URL?",
		"environment variable GROUPSYNC_SYSTEMS_DEVREV_PROD_TOKEN is not read by groupsync (system variables are GROUPSYNC_SYSTEMS_<NAME>_<KEY> for the systems in the file: dst, src)",
		"environment variable GROUPSYNC_SYSTEMS_SRC_TOKEN_FIEL is not read by groupsync: did you mean GROUPSYNC_SYSTEMS_SRC_TOKEN_FILE? (system variables are GROUPSYNC_SYSTEMS_<NAME>_<KEY> for the systems in the file: dst, src)",
	}
	if !slices.Equal(got, want) {
		t.Errorf("warnings:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	for _, w := range got {
		if strings.Contains(w, "secret") {
			t.Errorf("a warning shows a value: %s", w)
		}
	}
}
