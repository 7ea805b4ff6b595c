package config_test

import (
	"strings"
	"testing"
	"time"

	"github.com/sethvargo/go-envconfig"

	"github.com/groupsync/groupsync/config"
)

// TestValidationRules checks each rule's message and key path, one broken key at a time.
func TestValidationRules(t *testing.T) {
	flowTail := "    scope: {all: true}\n"
	tests := []struct {
		name    string
		old     string // replaced in baseConfig
		new     string
		key     string
		message string
	}{
		{"database url required", "  url: postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable\n", "", "database.url", "required"},
		{"database schema identifier", "database:\n", "database:\n  schema: Bad-Schema\n", "database.schema", "not a plain identifier"},
		{"database max_conns", "database:\n", "database:\n  max_conns: 0\n", "database.max_conns", "at least 1"},
		{"accounts max_age", "database:\n", "accounts: {max_age: -1h}\ndatabase:\n", "accounts.max_age", "must be > 0"},
		{"accounts lookup_miss_ttl", "database:\n", "accounts: {lookup_miss_ttl: -1h}\ndatabase:\n", "accounts.lookup_miss_ttl", "must be > 0"},
		{"log level", "database:\n", "log: {level: loud}\ndatabase:\n", "log.level", `"loud" is not a level`},
		{"log format", "database:\n", "log: {format: xml}\ndatabase:\n", "log.format", `"xml" is not a format`},
		{"http listen", "database:\n", "http: {listen: localhost}\ndatabase:\n", "http.listen", "not a host:port"},
		{"lease ttl too short", "database:\n", "lease: {ttl: 500ms}\ndatabase:\n", "lease.ttl", "must be at least 1s"},
		{"lease ttl zero", "database:\n", "lease: {ttl: 0s}\ndatabase:\n", "lease.ttl", "must be at least 1s"},
		{"history retention too short", "database:\n", "history: {retention: 1h}\ndatabase:\n", "history.retention", "must be at least 24h0m0s"},
		{"history retention zero", "database:\n", "history: {retention: 0s}\ndatabase:\n", "history.retention", "must be at least 24h0m0s"},
		{"lease ttl negative", "database:\n", "lease: {ttl: -1m}\ndatabase:\n", "lease.ttl", "must be at least 1s"},
		{"system name", "  dst:\n", "  Dst_1:\n    kind: devrev\n    token: x\n  dst:\n", "systems.Dst_1", "must match [a-z0-9][a-z0-9-]*"},
		{"unknown kind", "    kind: devrev\n    token: t-dst\n", "    kind: jira\n    token: t-dst\n", "systems.dst.kind", `unknown kind "jira"`},
		{"kind required", "    kind: devrev\n    token: t-dst\n", "    token: t-dst\n", "systems.dst.kind", "required"},
		{"devrev token", "    token: t-dst\n", "", "systems.dst", "needs token or token_file (env GROUPSYNC_SYSTEMS_DST_TOKEN or GROUPSYNC_SYSTEMS_DST_TOKEN_FILE)"},
		{"airtable options", "    kind: devrev\n    token: t-dst\n", "    kind: airtable\n    token: t-dst\n", "systems.dst.options.enterprise_account_id", "required for kind airtable"},
		{"scim base_url", "    kind: devrev\n    token: t-dst\n", "    kind: scim\n    token: t-dst\n", "systems.dst.base_url", "required for kind scim"},
		{"scim token", "    kind: devrev\n    token: t-dst\n", "    kind: scim\n    base_url: https://scim.example.com/v2\n", "systems.dst", "kind scim needs token or token_file"},
		{"scim write mode", "    kind: devrev\n    token: t-dst\n", "    kind: scim\n    token: t-dst\n    base_url: https://scim.example.com/v2\n    options: {write_mode: post}\n", "systems.dst.options.write_mode", `"post" must be auto, patch or put`},
		{"scim filter", "    kind: devrev\n    token: t-dst\n", "    kind: scim\n    token: t-dst\n    base_url: https://scim.example.com/v2\n    options: {filter: on}\n", "systems.dst.options.filter", "must be auto or off"},
		{"scim unknown option", "    kind: devrev\n    token: t-dst\n", "    kind: scim\n    token: t-dst\n    base_url: https://scim.example.com/v2\n    options: {scim_url: x}\n", "systems.dst.options.scim_url", "unknown option for kind scim"},
		{"selfcommunity base_url", "    kind: devrev\n    token: t-dst\n", "    kind: selfcommunity\n    token: t-dst\n", "systems.dst.base_url", "required for kind selfcommunity"},
		{"selfcommunity jwt needs user", "    kind: devrev\n    token: t-dst\n", "    kind: selfcommunity\n    base_url: https://c.example.com\n    jwt_secret: s\n", "systems.dst", "needs token, or jwt_secret with options.jwt_user_id"},
		{"socialcast basic needs password", "    kind: devrev\n    token: t-dst\n", "    kind: socialcast\n    base_url: https://x.socialcast.com\n    username: u\n", "systems.dst", "needs token, or username with password"},
		{"base_url scheme", "    token: t-dst\n", "    token: t-dst\n    base_url: ftp://x\n", "systems.dst.base_url", "not an http(s) URL"},
		{"negative rate", "    token: t-dst\n", "    token: t-dst\n    rate_limit: -1\n", "systems.dst.rate_limit", "must be >= 0"},
		{"negative burst", "    token: t-dst\n", "    token: t-dst\n    burst: -1\n", "systems.dst.burst", "must be >= 0"},
		{"negative timeout", "    token: t-dst\n", "    token: t-dst\n    timeout: -5s\n", "systems.dst.timeout", "must be > 0"},
		{"negative attempts", "    token: t-dst\n", "    token: t-dst\n    max_attempts: -1\n", "systems.dst.max_attempts", "must be >= 1"},
		{"negative retry wait", "    token: t-dst\n", "    token: t-dst\n    max_retry_wait: -1m\n", "systems.dst.max_retry_wait", "must be >= 0"},
		{"negative body", "    token: t-dst\n", "    token: t-dst\n    max_body_bytes: -1\n", "systems.dst.max_body_bytes", "must be > 0"},
		{"negative page size", "    token: t-dst\n", "    token: t-dst\n    page_size: -1\n", "systems.dst.page_size", "must be >= 0"},
		{"negative concurrency", "    token: t-dst\n", "    token: t-dst\n    concurrency: -1\n", "systems.dst.concurrency", "must be >= 0"},
		{"flow name", "  f:\n", "  F_1:\n", "flows.F_1", "must match"},
		{"source required", "    source: src\n", "", "flows.f.source", "required"},
		{"unknown source", "    source: src\n", "    source: nope\n", "flows.f.source", `unknown system "nope"`},
		{"targets required", "    targets: [dst]\n", "", "flows.f.targets", "at least one target"},
		{"unknown target", "    targets: [dst]\n", "    targets: [dst, x]\n", "flows.f.targets[1]", `unknown system "x"`},
		{"source among targets", "    targets: [dst]\n", "    targets: [dst, src]\n", "flows.f.targets[1]", "cannot be its own target"},
		{"duplicate target", "    targets: [dst]\n", "    targets: [dst, dst]\n", "flows.f.targets[1]", "listed twice"},
		{"schedule required", "    schedule: \"@hourly\"\n", "", "flows.f.schedule", "required"},
		{"schedule too short", "    schedule: \"@hourly\"\n", "    schedule: \"@every 0s\"\n", "flows.f.schedule", "at least 1s"},
		{"schedule too short with a zone", "    schedule: \"@hourly\"\n", "    schedule: \"CRON_TZ=UTC @every 500ms\"\n", "flows.f.schedule", "at least 1s"},
		{"placeholder token", "    token: t-dst\n", "    token: Change_Me\n", "systems.dst.token", "set GROUPSYNC_SYSTEMS_DST_TOKEN (or GROUPSYNC_SYSTEMS_DST_TOKEN_FILE, or token_file)"},
		{"template token", "    token: t-dst\n", "    token: \"<token>\"\n", "systems.dst.token", "placeholder"},
		{"schedule parses", "    schedule: \"@hourly\"\n", "    schedule: \"61 * * * *\"\n", "flows.f.schedule", "parse schedule"},
		{"scope empty", flowTail, "    scope: {}\n", "flows.f.scope", "selects no groups"},
		{"scope all and names", flowTail, "    scope: {all: true, names: [a]}\n", "flows.f.scope.all", "drop names"},
		{"bad pattern", flowTail, "    scope: {patterns: [\"eng-[\"]}\n", "flows.f.scope.patterns[0]", "not a valid glob"},
		{"bad exclude", flowTail, "    scope: {all: true, exclude_patterns: [\"[\"]}\n", "flows.f.scope.exclude_patterns[0]", "not a valid glob"},
		{"empty name", flowTail, "    scope: {names: [\" \"]}\n", "flows.f.scope.names[0]", "empty name"},
		{"link target not a target", flowTail, flowTail + "    links: [{source: g1, target_system: src, target: t1}]\n", "flows.f.links[0].target_system", `"src" is not one of the flow's targets`},
		{"link ids required", flowTail, flowTail + "    links: [{target_system: dst}]\n", "flows.f.links[0].source", "required"},
		{"link twice", flowTail, flowTail + "    links: [{source: g1, target_system: dst, target: t1}, {source: g1, target_system: dst, target: t2}]\n", "flows.f.links[1]", "already linked on dst by links[0]"},
		{"link target twice", flowTail, flowTail + "    links: [{source: g1, target_system: dst, target: t1}, {source: g2, target_system: dst, target: t1}]\n", "flows.f.links[1]", `target group "t1" on dst is already linked`},
		{"matching by", flowTail, flowTail + "    matching: {by: name}\n", "flows.f.matching.by", "use email or ext_id"},
		{"match_by unknown", "    token: t-dst\n", "    token: t-dst\n    match_by: phone\n", "systems.dst.match_by", `"phone" is not a way to match accounts`},
		{"match_by ext_id needs selfcommunity", "    token: t-dst\n", "    token: t-dst\n    match_by: ext_id\n", "systems.dst.match_by", "only offered by kind selfcommunity"},
		{"flow mixes match_by", devrevSource, scSource + "    match_by: ext_id\n", "flows.f.matching.by",
			`the flow matches by ext_id but system "dst" keys its accounts by email (systems.dst.match_by)`},
		{"flow matching.by against its systems", flowTail, flowTail + "    matching: {by: ext_id}\n", "flows.f.matching.by",
			`system "src" keys its accounts by email`},
		{"overrides in an ext_id flow", devrevSource + "  dst:\n    kind: devrev\n    token: t-dst\n" + flowsHead,
			scSource + "    match_by: ext_id\n  dst:\n    kind: selfcommunity\n    base_url: https://d.example.com\n    token: t-dst\n    match_by: ext_id\n" +
				flowsHead + "    matching: {overrides: [{source: a@x, target: b@y}]}\n",
			"flows.f.matching.overrides", "overrides map emails"},
		{"override email", flowTail, flowTail + "    matching: {overrides: [{source: a@x, target: nobody}]}\n", "flows.f.matching.overrides[0].target", "not an email"},
		{"override twice", flowTail, flowTail + "    matching: {overrides: [{source: a@x, target: b@y}, {source: A@X, target: c@y}]}\n", "flows.f.matching.overrides[1].source", "already overridden by overrides[0]"},
		{"membership", flowTail, flowTail + "    membership: sync\n", "flows.f.membership", "use mirror or add_only"},
		{"delete_groups", flowTail, flowTail + "    delete_groups: always\n", "flows.f.delete_groups", "use never, archive or delete"},
		{"removals", flowTail, flowTail + "    limits: {max_member_removals: -1}\n", "flows.f.limits.max_member_removals", "must be >= 0"},
		{"percent", flowTail, flowTail + "    limits: {max_member_removals_percent: 101}\n", "flows.f.limits.max_member_removals_percent", "between 0 and 100"},
		{"deletions", flowTail, flowTail + "    limits: {max_group_deletions: -1}\n", "flows.f.limits.max_group_deletions", "must be >= 0"},
		{"ratio", flowTail, flowTail + "    limits: {min_source_ratio: 1.5}\n", "flows.f.limits.min_source_ratio", "between 0 and 1"},
		{"change attempts", flowTail, flowTail + "    max_change_attempts: -2\n", "flows.f.max_change_attempts", "must be >= 1"},
		{"two-way", flowTail, flowTail + "  g: {source: dst, targets: [src], schedule: \"@hourly\", scope: {patterns: [\"x*\"]}}\n", "flows.g", "two-way sync is not supported yet"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			body := strings.Replace(baseConfig, tt.old, tt.new, 1)
			if body == baseConfig {
				t.Fatalf("test case did not change the config (old %q not found)", tt.old)
			}
			_, err := config.Load(writeConfig(t, body), envconfig.MapLookuper(nil))
			assertProblem(t, err, tt.key, tt.message)
		})
	}
}

// devrevSource is baseConfig's source; scSource makes it a SelfCommunity system.
const devrevSource = "  src:\n    kind: devrev\n    token: t-src\n"

// flowsHead is the start of baseConfig's flow.
const flowsHead = "flows:\n  f:\n"

const scSource = "  src:\n    kind: selfcommunity\n    base_url: https://c.example.com\n    token: t-src\n"

// TestMatchByExtIDFlowLoads: two communities on one SSO, both keyed by ext_id: the flow
// matches by ext_id without saying so, and the connectors are told.
func TestMatchByExtIDFlowLoads(t *testing.T) {
	body := strings.Replace(baseConfig, "  src:\n    kind: devrev\n    token: t-src\n  dst:\n    kind: devrev\n    token: t-dst\n",
		scSource+"    match_by: ext_id\n  dst:\n    kind: selfcommunity\n    base_url: https://d.example.com\n    token: t-dst\n"+
			"    match_by: ext_id\n    options: {ext_id_provider: okta}\n", 1)
	cfg, err := config.Load(writeConfig(t, body), envconfig.MapLookuper(nil))
	if err != nil {
		t.Fatal(err)
	}
	if by := cfg.Flows["f"].Matching.By; by != "ext_id" {
		t.Fatalf("flow matching.by = %q, want ext_id (from its systems)", by)
	}
	if sc := cfg.SystemConfig("dst"); sc.MatchBy != "ext_id" || sc.Options["ext_id_provider"] != "okta" {
		t.Fatalf("system config = %+v", sc)
	}
	plain, err := config.Load(writeConfig(t, baseConfig), envconfig.MapLookuper(nil))
	if err != nil {
		t.Fatal(err)
	}
	if plain.Systems["src"].MatchBy != "email" || plain.Flows["f"].Matching.By != "email" {
		t.Fatalf("defaults: system match_by %q, flow matching.by %q; want email", plain.Systems["src"].MatchBy, plain.Flows["f"].Matching.By)
	}
}

func TestManyProblemsAllListed(t *testing.T) {
	body := `
database:
  url: mysql://db
  max_conns: -1
log: {level: loud}
systems:
  src: {kind: devrev}
  dst: {kind: jira, base_url: "not a url"}
flows:
  f:
    source: src
    targets: [src, x]
    schedule: "every day"
    scope: {}
    limits: {min_source_ratio: 2}
`
	_, err := config.Load(writeConfig(t, body), envconfig.MapLookuper(nil))
	problems := mustProblems(t, err)
	wantKeys := []string{
		"database.url", "database.max_conns", "log.level", "systems.dst.kind", "systems.dst.base_url",
		"systems.src", "flows.f.targets[0]", "flows.f.targets[1]", "flows.f.schedule", "flows.f.scope",
		"flows.f.limits.min_source_ratio",
	}
	if len(problems) != len(wantKeys) {
		t.Errorf("want %d problems, got %d:\n%v", len(wantKeys), len(problems), err)
	}
	lines := strings.Split(err.Error(), "\n")
	if len(lines) != len(problems)+1 || !strings.Contains(lines[0], "11 problems") {
		t.Errorf("Error() should be a header then one problem per line:\n%v", err)
	}
	for _, key := range wantKeys {
		if !strings.Contains(err.Error(), "\n  "+key+": ") {
			t.Errorf("problem for %s missing:\n%v", key, err)
		}
	}
}

func TestTwoWayFlows(t *testing.T) {
	flows := func(a, b string) string {
		return strings.Replace(baseConfig, "flows:\n  f:\n    source: src\n    targets: [dst]\n    schedule: \"@hourly\"\n    scope: {all: true}\n",
			"flows:\n  a: {source: src, targets: [dst], schedule: \"@hourly\", scope: "+a+"}\n  b: {source: dst, targets: [src], schedule: \"@hourly\", scope: "+b+"}\n", 1)
	}
	tests := []struct {
		a, b    string
		refused bool
	}{
		{"{all: true}", "{all: true}", true},
		{"{names: [Eng]}", "{names: [Eng]}", true},
		{"{names: [Eng]}", "{patterns: [\"E*\"]}", true},
		{"{names: [Eng]}", "{ids: [g1]}", true}, // ids are opaque: they may name the pushed group
		{"{names: [Eng]}", "{names: [Sales]}", false},
		{"{names: [Eng]}", "{patterns: [\"S*\"]}", false},
		{"{names: [Eng]}", "{all: true, exclude_patterns: [\"Eng\"]}", false},
		{"{patterns: [\"E*\"]}", "{patterns: [\"S*\"]}", true}, // not provably disjoint
	}
	for _, tt := range tests {
		_, err := config.Load(writeConfig(t, flows(tt.a, tt.b)), envconfig.MapLookuper(nil))
		if tt.refused {
			assertProblem(t, err, "flows.b", `flow "a" pushes src→dst and this flow pushes dst→src`)
		} else if err != nil {
			t.Errorf("a %s / b %s: disjoint scopes refused: %v", tt.a, tt.b, err)
		}
	}
}

func TestParseSchedule(t *testing.T) {
	from := time.Date(2026, 1, 1, 10, 7, 0, 0, time.UTC)
	for expr, want := range map[string]time.Time{
		"*/15 * * * *":                    time.Date(2026, 1, 1, 10, 15, 0, 0, time.UTC),
		"@hourly":                         time.Date(2026, 1, 1, 11, 0, 0, 0, time.UTC),
		"@every 10m":                      from.Add(10 * time.Minute),
		"CRON_TZ=UTC 0 12 * * *":          time.Date(2026, 1, 1, 12, 0, 0, 0, time.UTC),
		"  CRON_TZ=Etc/GMT-1 0 12 * * * ": time.Date(2026, 1, 1, 11, 0, 0, 0, time.UTC),
	} {
		s, err := config.ParseSchedule(expr)
		if err != nil {
			t.Errorf("%q: %v", expr, err)
			continue
		}
		if got := s.Next(from); !got.Equal(want) {
			t.Errorf("%q: next after %v = %v, want %v", expr, from, got, want)
		}
	}
	for _, expr := range []string{"", "* * * *", "* * * * * *", "@fortnightly", "CRON_TZ=UTC", "TZ=", "CRON_TZ=Nowhere/Land * * * * *"} {
		if _, err := config.ParseSchedule(expr); err == nil {
			t.Errorf("%q accepted", expr)
		}
	}
}

// ringConfig is three devrev systems x, y, z and the flows given (YAML flow mappings).
func ringConfig(flows ...string) string {
	body := `database:
  url: postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable
systems:
  x: {kind: devrev, token: t-x}
  y: {kind: devrev, token: t-y}
  z: {kind: devrev, token: t-z}
flows:
`
	for _, f := range flows {
		body += "  " + f + "\n"
	}
	return body
}

// TestInvariantFlowGraphHasNoCycles: flows whose scopes may overlap never form a directed
// cycle of systems, of any length, and the problem names the cycle.
func TestInvariantFlowGraphHasNoCycles(t *testing.T) {
	const (
		a = `a: {source: x, targets: [y], schedule: "@hourly", scope: {all: true}}`
		b = `b: {source: y, targets: [z], schedule: "@hourly", scope: {all: true}}`
		c = `c: {source: z, targets: [x], schedule: "@hourly", scope: {all: true}}`
	)
	_, err := config.Load(writeConfig(t, ringConfig(a, b, c)), envconfig.MapLookuper(nil))
	assertProblem(t, err, "flows.a", "cycle over overlapping scopes: a (x→y) → b (y→z) → c (z→x) → a")
	if n := len(mustProblems(t, err)); n != 1 {
		t.Errorf("one cycle should be one problem, got %d:\n%v", n, err)
	}

	// A chain without the closing flow is fine.
	if _, err := config.Load(writeConfig(t, ringConfig(a, b)), envconfig.MapLookuper(nil)); err != nil {
		t.Errorf("x→y→z refused: %v", err)
	}
	// One link of the ring selecting, by exact name, nothing the next flow selects breaks it.
	disjoint := `c: {source: z, targets: [x], schedule: "@hourly", scope: {names: [Sales]}}`
	narrowA := `a: {source: x, targets: [y], schedule: "@hourly", scope: {patterns: ["Eng*"]}}`
	if _, err := config.Load(writeConfig(t, ringConfig(narrowA, b, disjoint)), envconfig.MapLookuper(nil)); err != nil {
		t.Errorf("ring broken by disjoint scopes refused: %v", err)
	}
	// A second target closing a shorter ring inside a longer one is still named.
	d := `d: {source: y, targets: [z, x], schedule: "@hourly", scope: {all: true}}`
	_, err = config.Load(writeConfig(t, ringConfig(a, d)), envconfig.MapLookuper(nil))
	assertProblem(t, err, "flows.d", `flow "a" pushes x→y and this flow pushes y→x`)
}

// TestTwoFlowsCannotLinkTwoSourceGroupsToOneTargetGroup: explicit links of different flows
// may not point two source groups at the same target group.
func TestTwoFlowsCannotLinkTwoSourceGroupsToOneTargetGroup(t *testing.T) {
	a := `a: {source: x, targets: [z], schedule: "@hourly", scope: {all: true}, links: [{source: gx, target_system: z, target: gz}]}`
	b := `b: {source: y, targets: [z], schedule: "@hourly", scope: {all: true}, links: [{source: gy, target_system: z, target: gz}]}`
	_, err := config.Load(writeConfig(t, ringConfig(a, b)), envconfig.MapLookuper(nil))
	assertProblem(t, err, "flows.b.links[0]", `target group "gz" on z is already linked to x group "gx" by flows.a.links[0]`)

	other := `b: {source: y, targets: [z], schedule: "@hourly", scope: {all: true}, links: [{source: gy, target_system: z, target: gz2}]}`
	if _, err := config.Load(writeConfig(t, ringConfig(a, other)), envconfig.MapLookuper(nil)); err != nil {
		t.Errorf("links to different target groups refused: %v", err)
	}
}

// lease.ttl: default 2m, the file's value, GROUPSYNC_LEASE_TTL over the file (the variable
// the engine read before the key existed), and a bad variable reported with the key.
func TestLeaseTTL(t *testing.T) {
	load := func(body string, env map[string]string) (*config.Config, error) {
		return config.Load(writeConfig(t, body), envconfig.MapLookuper(env))
	}
	cfg, err := load(baseConfig, nil)
	if err != nil || cfg.Lease.TTL != config.DefaultLeaseTTL {
		t.Fatalf("default: ttl %v, err %v; want %v", cfg.Lease.TTL, err, config.DefaultLeaseTTL)
	}
	withKey := "lease:\n  ttl: 45s\n" + baseConfig
	for _, tt := range []struct {
		body string
		env  map[string]string
		want time.Duration
	}{
		{withKey, nil, 45 * time.Second},
		{withKey, map[string]string{"GROUPSYNC_LEASE_TTL": "2s"}, 2 * time.Second},
		{baseConfig, map[string]string{"GROUPSYNC_LEASE_TTL": "1s"}, time.Second},
		{withKey, map[string]string{"GROUPSYNC_LEASE_TTL": ""}, 45 * time.Second}, // empty counts as unset
	} {
		cfg, err := load(tt.body, tt.env)
		if err != nil || cfg.Lease.TTL != tt.want {
			t.Errorf("env %v: ttl %v, err %v; want %v", tt.env, cfg.Lease.TTL, err, tt.want)
		}
		out, err := cfg.Redacted()
		if err != nil || !strings.Contains(string(out), "lease:\n    ttl: "+tt.want.String()+"\n") {
			t.Errorf("config show does not show lease.ttl %v:\n%s", tt.want, out)
		}
	}
	_, err = load(baseConfig, map[string]string{"GROUPSYNC_LEASE_TTL": "soon"})
	assertProblem(t, err, "lease.ttl", `GROUPSYNC_LEASE_TTL="soon" is not a duration`)
	_, err = load(withKey, map[string]string{"GROUPSYNC_LEASE_TTL": "999ms"})
	assertProblem(t, err, "lease.ttl", "must be at least 1s")
}

// history.retention: default 400 days, the file's value, GROUPSYNC_HISTORY_RETENTION over
// the file, and a bad variable reported with the key.
func TestHistoryRetention(t *testing.T) {
	load := func(body string, env map[string]string) (*config.Config, error) {
		return config.Load(writeConfig(t, body), envconfig.MapLookuper(env))
	}
	cfg, err := load(baseConfig, nil)
	if err != nil || cfg.History.Retention != 400*24*time.Hour {
		t.Fatalf("default: retention %v, err %v; want 400 days", cfg.History.Retention, err)
	}
	withKey := "history:\n  retention: 720h\n" + baseConfig
	for _, tt := range []struct {
		body string
		env  map[string]string
		want time.Duration
	}{
		{withKey, nil, 720 * time.Hour},
		{withKey, map[string]string{"GROUPSYNC_HISTORY_RETENTION": "48h"}, 48 * time.Hour},
		{baseConfig, map[string]string{"GROUPSYNC_HISTORY_RETENTION": ""}, config.DefaultHistoryRetention},
	} {
		cfg, err := load(tt.body, tt.env)
		if err != nil || cfg.History.Retention != tt.want {
			t.Errorf("env %v: retention %v, err %v; want %v", tt.env, cfg.History.Retention, err, tt.want)
		}
	}
	_, err = load(baseConfig, map[string]string{"GROUPSYNC_HISTORY_RETENTION": "400d"})
	assertProblem(t, err, "history.retention", `GROUPSYNC_HISTORY_RETENTION="400d" is not a duration`)
}
