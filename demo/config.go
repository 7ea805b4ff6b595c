package demo

import (
	"bytes"
	"fmt"
	"os"
	"slices"
	"strconv"
	"strings"
	"text/template"

	"github.com/groupsync/groupsync/connectors"
	"github.com/groupsync/groupsync/connectors/airtable"
)

// DefaultSchema is the schema of the demo mirror. The demo drops and recreates it on every
// run, so it is never the schema of a real mirror (config.DefaultSchema is "groupsync").
const DefaultSchema = "groupsync_demo"

// SchemaPrefix starts every schema the demo may drop.
const SchemaPrefix = "groupsync_demo"

// DefaultHTTPListen is where `groupsync demo --keep-running` serves /healthz, /readyz and
// /metrics: the daemon's port, on the loopback interface only, because the demo is a local
// look and nothing outside the machine should scrape or probe it.
const DefaultHTTPListen = "127.0.0.1:8080"

// ConfigInput is what the demo configuration is written from.
type ConfigInput struct {
	// DatabaseURL goes into database.url; "" leaves it to GROUPSYNC_DATABASE_URL, which
	// the demo does when the URL holds a password, so the file never holds one.
	DatabaseURL string
	Schema      string
	// Systems are the simulators' connector configurations (simorg.System.Config).
	Systems map[string]connectors.SystemConfig
	// Councils are the DevRev groups the councils flow pushes to Airtable.
	Councils []string
	// HTTPListen goes into http.listen; "" disables the listener.
	HTTPListen string
}

// ConfigInputFor returns the configuration input of the sample organisation's simulators.
func ConfigInputFor(systems map[string]connectors.SystemConfig, databaseURL, schema string) ConfigInput {
	return ConfigInput{DatabaseURL: databaseURL, Schema: schema, Systems: systems, Councils: slices.Clone(councils),
		HTTPListen: DefaultHTTPListen}
}

// localRateLimit is the requests/second the demo allows against a local simulator. The
// connectors' defaults are the real services' budgets (SelfCommunity 5/s, one request per
// member added), which would stretch the demo to minutes. Airtable keeps its default: it
// warns above its published limit, and the demo sends it few requests.
const localRateLimit = 1000

var configTemplate = template.Must(template.New("demo").Funcs(template.FuncMap{"q": strconv.Quote}).Parse(
	`# groupsync demo configuration, written by ` + "`groupsync demo`" + `.
#
# The four systems are simulators the demo started on local ports; the tokens below are
# theirs and open nothing real. The simulators stop when the demo exits, so this file is an
# example to read (and validate), not one to run again.
database:
{{- if .DatabaseURL}}
  url: {{q .DatabaseURL}}
{{- else}}
  # url: from GROUPSYNC_DATABASE_URL (it holds a password, which stays out of this file)
{{- end}}
  # A schema of its own, dropped and recreated by every demo run: never a real mirror.
  schema: {{q .Schema}}
log:
  # The demo prints its own summary; engine logs only when something goes wrong.
  level: warn
http:
  # /healthz, /readyz and /metrics, served while ` + "`groupsync demo --keep-running`" + ` waits (and by
  # ` + "`groupsync sync`" + ` on this file). "" disables the listener.
  listen: {{q .HTTPListen}}

systems:
  airtable:
    kind: airtable
    base_url: {{q .Airtable.BaseURL}}
    token: {{q .Airtable.Token.Reveal}}
    options:
      enterprise_account_id: {{q .EnterpriseID}}
      scim_url: {{q .SCIMURL}}
  devrev:
    kind: devrev
    base_url: {{q .DevRev.BaseURL}}
    token: {{q .DevRev.Token.Reveal}}
    # Local simulators need no throttling; the real services keep the defaults.
    rate_limit: {{.RateLimit}}
  selfcommunity:
    kind: selfcommunity
    base_url: {{q .SelfCommunity.BaseURL}}
    token: {{q .SelfCommunity.Token.Reveal}}
    rate_limit: {{.RateLimit}}
  socialcast:
    kind: socialcast
    base_url: {{q .Socialcast.BaseURL}}
    token: {{q .Socialcast.Token.Reveal}}
    rate_limit: {{.RateLimit}}

flows:
  # The teams live in Airtable; DevRev and SelfCommunity follow them.
  {{.FlowTeams}}:
    source: airtable
    targets: [devrev, selfcommunity]
    schedule: "@every 15m"
    scope:
      all: true
      # The councils flow pushes these from DevRev into Airtable. Leaving them out here
      # keeps the two flows from pushing the same groups both ways (which validation
      # refuses: two-way sync is not supported).
      exclude_patterns: [{{q .CouncilPattern}}]
    membership: mirror
    delete_groups: never
  # A few customer-facing councils are run from DevRev and copied to Airtable.
  {{.FlowCouncils}}:
    source: devrev
    targets: [airtable]
    schedule: "@every 15m"
    scope:
      names:
{{- range .Councils}}
        - {{q .}}
{{- end}}
    membership: mirror
  # The communities move from Socialcast to SelfCommunity.
  {{.FlowCommunities}}:
    source: socialcast
    targets: [selfcommunity]
    schedule: "@every 15m"
    scope:
      all: true
    membership: mirror
`))

// ConfigYAML renders the demo configuration. config.Load accepts it (with
// GROUPSYNC_DATABASE_URL set when in.DatabaseURL is empty).
func ConfigYAML(in ConfigInput) ([]byte, error) {
	for _, name := range []string{SystemAirtable, SystemDevRev, SystemSelfCommunity, SystemSocialcast} {
		if _, ok := in.Systems[name]; !ok {
			return nil, fmt.Errorf("demo: config: no simulator for system %s", name)
		}
	}
	for _, c := range in.Councils {
		if !strings.HasPrefix(c, CouncilPrefix) {
			return nil, fmt.Errorf("demo: config: council %q lacks the prefix %q the teams flow excludes", c, CouncilPrefix)
		}
	}
	at := in.Systems[SystemAirtable]
	var buf bytes.Buffer
	err := configTemplate.Execute(&buf, map[string]any{
		"DatabaseURL":     in.DatabaseURL,
		"Schema":          in.Schema,
		"Airtable":        at,
		"EnterpriseID":    at.Options[airtable.OptionEnterpriseAccountID],
		"SCIMURL":         at.Options[airtable.OptionSCIMURL],
		"DevRev":          in.Systems[SystemDevRev],
		"SelfCommunity":   in.Systems[SystemSelfCommunity],
		"Socialcast":      in.Systems[SystemSocialcast],
		"RateLimit":       localRateLimit,
		"FlowTeams":       FlowTeams,
		"FlowCouncils":    FlowCouncils,
		"FlowCommunities": FlowCommunities,
		"CouncilPattern":  CouncilPrefix + "*",
		"Councils":        in.Councils,
		"HTTPListen":      in.HTTPListen,
	})
	if err != nil {
		return nil, fmt.Errorf("demo: render config: %w", err)
	}
	return buf.Bytes(), nil
}

// WriteConfig renders the demo configuration into path, readable by its owner only (it
// holds the simulators' tokens).
func WriteConfig(path string, in ConfigInput) error {
	data, err := ConfigYAML(in)
	if err != nil {
		return err
	}
	if err := os.WriteFile(path, data, 0o600); err != nil {
		return fmt.Errorf("demo: write config: %w", err)
	}
	return nil
}
