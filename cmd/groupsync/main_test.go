package main

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"runtime/debug"
	"strings"
	"testing"
	"time"

	"github.com/sethvargo/go-envconfig"
)

const examplePath = "../../config.example.yaml"

// exampleEnv holds the secrets config.example.yaml expects from the environment.
func exampleEnv() map[string]string {
	return map[string]string{
		"GROUPSYNC_SYSTEMS_AIRTABLE_PROD_TOKEN":           "pat-airtable",
		"GROUPSYNC_SYSTEMS_DEVREV_PROD_TOKEN":             "pat-devrev",
		"GROUPSYNC_SYSTEMS_SELFCOMMUNITY_PROD_JWT_SECRET": "jwt-secret",
		"GROUPSYNC_SYSTEMS_SOCIALCAST_PROD_PASSWORD":      "basic-password",
	}
}

type result struct {
	stdout, stderr string
	code           int
}

// execute runs the CLI in-process as `groupsync args...` with env as the environment.
func execute(t *testing.T, env map[string]string, args ...string) result {
	t.Helper()
	var stdout, stderr bytes.Buffer
	environ := make([]string, 0, len(env))
	for k, v := range env {
		environ = append(environ, k+"="+v)
	}
	code := run(t.Context(), args, environment{
		stdout:  &stdout,
		stderr:  &stderr,
		lookup:  envconfig.MapLookuper(env),
		environ: environ,
	})
	return result{stdout: stdout.String(), stderr: stderr.String(), code: code}
}

func (r result) want(t *testing.T, code int, stdoutHas, stderrHas string) {
	t.Helper()
	if r.code != code || !strings.Contains(r.stdout, stdoutHas) || !strings.Contains(r.stderr, stderrHas) {
		t.Errorf("exit %d (want %d)\nstdout (want %q):\n%s\nstderr (want %q):\n%s", r.code, code, stdoutHas, r.stdout, stderrHas, r.stderr)
	}
}

func TestConfigValidateExample(t *testing.T) {
	r := execute(t, exampleEnv(), "config", "validate", "--config", examplePath)
	r.want(t, 0, "ok\n", "")
	if r.stdout != "ok\n" {
		t.Errorf("stdout = %q, want exactly ok", r.stdout)
	}

	// A variable nothing reads is warned on stderr, with the one meant; the file stays ok.
	typo := exampleEnv()
	typo["GROUPSYNC_DATABSE_SCHEMA"] = "mirror"
	execute(t, typo, "config", "validate", "--config", examplePath).want(t, 0, "ok\n",
		"warning: environment variable GROUPSYNC_DATABSE_SCHEMA is not read by groupsync: did you mean GROUPSYNC_DATABASE_SCHEMA?")

	// GROUPSYNC_CONFIG names the file when --config is not given.
	env := exampleEnv()
	env["GROUPSYNC_CONFIG"] = examplePath
	execute(t, env, "config", "validate").want(t, 0, "ok", "")
}

func TestConfigValidateBroken(t *testing.T) {
	path := filepath.Join(t.TempDir(), "broken.yaml")
	if err := os.WriteFile(path, []byte(`
database: {url: "postgres://localhost/x"}
systems:
  a: {kind: devrev}
  b: {kind: jira, token: x}
flows:
  f: {source: a, targets: [c], schedule: "sometimes", scope: {}}
`), 0o600); err != nil {
		t.Fatal(err)
	}
	r := execute(t, nil, "config", "validate", "--config", path)
	r.want(t, 1, "5 problems", "")
	for _, line := range []string{
		"  systems.a: kind devrev needs token or token_file (env GROUPSYNC_SYSTEMS_A_TOKEN or GROUPSYNC_SYSTEMS_A_TOKEN_FILE)",
		`  systems.b.kind: unknown kind "jira"`,
		`  flows.f.targets[0]: unknown system "c"`,
		"  flows.f.schedule: ",
		"  flows.f.scope: selects no groups",
	} {
		if !strings.Contains(r.stdout, line) {
			t.Errorf("validate output lacks %q:\n%s", line, r.stdout)
		}
	}

	// A missing file is an error that says how to start.
	missing := filepath.Join(t.TempDir(), "groupsync.yaml")
	execute(t, nil, "config", "validate", "--config", missing).want(t, 1, "", "cp config.example.yaml "+missing)

	// An unknown key is refused with its key path, line and the key meant, among the other
	// problems.
	if err := os.WriteFile(path, []byte("database:\n  urls: x\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	execute(t, nil, "config", "validate", "--config", path).want(t, 1, `database.urls (line 2): unknown key: did you mean "url"?`, "")
}

func TestConfigShowRedacts(t *testing.T) {
	const canary = "CANARY-cmd-5d1e"
	env := exampleEnv()
	env["GROUPSYNC_SYSTEMS_DEVREV_PROD_TOKEN"] = canary
	env["GROUPSYNC_DATABASE_URL"] = "postgres://gs:" + canary + "@db:5432/gs"
	r := execute(t, env, "config", "show", "--config", examplePath, "--log-level", "debug")
	r.want(t, 0, "token: '[REDACTED]'", "")
	if strings.Contains(r.stdout+r.stderr, canary) {
		t.Fatalf("config show leaks a secret:\n%s", r.stdout)
	}
	for _, want := range []string{"url: '[REDACTED]'", "level: debug", "enterprise_account_id: entXXXXXXXXXXXXXX"} {
		if !strings.Contains(r.stdout, want) {
			t.Errorf("config show lacks %q", want)
		}
	}
}

func TestUsageErrorsExitTwo(t *testing.T) {
	tests := []struct {
		args   []string
		stderr string
	}{
		{[]string{"bogus"}, `unknown command "bogus" for "groupsync"`},
		{[]string{"sycn"}, "did you mean sync?"},
		{[]string{"config", "bogus"}, `unknown command "bogus" for "groupsync config"`},
		{[]string{"--bogus"}, "unknown flag: --bogus"},
		{[]string{"sync", "--bogus"}, "unknown flag: --bogus"},
		{[]string{"migrate", "extra"}, `unknown command "extra" for "groupsync migrate"`},
		{[]string{"apply"}, "apply takes one argument, the run id"},
		{[]string{"apply", "1", "2"}, "apply takes one argument"},
		{[]string{"status", "--output", "yaml"}, `--output "yaml": use table or json`},
		{[]string{"config", "validate", "--log-level", "loud", "--config", examplePath}, `--log-level "loud"`},
		{[]string{"config", "validate", "--log-format", "xml", "--config", examplePath}, `--log-format "xml"`},
	}
	for _, tt := range tests {
		r := execute(t, exampleEnv(), tt.args...)
		if r.code != 2 || !strings.Contains(r.stderr, tt.stderr) || !strings.Contains(r.stderr, "--help' for usage") {
			t.Errorf("groupsync %s: exit %d, stderr:\n%s\nwant exit 2 and %q", strings.Join(tt.args, " "), r.code, r.stderr, tt.stderr)
		}
	}
}

func TestHelp(t *testing.T) {
	r := execute(t, nil)
	r.want(t, 0, "Exit codes: 0 ok, 1 failure, 2 usage error, 3 blocked", "")
	if !strings.Contains(r.stdout, "groupsync check ") {
		t.Errorf("root help does not tell a newcomer to run check first:\n%s", r.stdout)
	}
	for _, cmd := range []string{"migrate", "config", "version", "sync", "plan", "apply", "status", "demo", "check", "runs", "changes"} {
		if !strings.Contains(r.stdout, "\n  "+cmd+" ") {
			t.Errorf("root help does not list %s", cmd)
		}
	}
	execute(t, nil, "config").want(t, 0, "validate", "")
	execute(t, nil, "sync", "--help").want(t, 0, "--dry-run", "")
	execute(t, nil, "apply", "--help").want(t, 0, "--allow-deletes", "")
}

func TestVersion(t *testing.T) {
	r := execute(t, nil, "version")
	r.want(t, 0, "groupsync ", "")
	// The root flag prints the same line.
	if flag := execute(t, nil, "--version"); flag.code != 0 || flag.stdout != r.stdout {
		t.Errorf("--version: exit %d, stdout %q; want 0 and %q", flag.code, flag.stdout, r.stdout)
	}

	noInfo := func() (*debug.BuildInfo, bool) { return nil, false }
	if v, c := buildVersion("v1.2.3", "abc", noInfo); v != "v1.2.3" || c != "abc" {
		t.Errorf("ldflags values: %s %s", v, c)
	}
	if v, c := buildVersion("", "", noInfo); v != "dev" || c != "unknown" {
		t.Errorf("nothing known: %s %s", v, c)
	}
	info := func() (*debug.BuildInfo, bool) {
		return &debug.BuildInfo{
			Main:     debug.Module{Version: "v0.4.0"},
			Settings: []debug.BuildSetting{{Key: "vcs.revision", Value: "deadbeef"}, {Key: "vcs.modified", Value: "true"}},
		}, true
	}
	if v, c := buildVersion("", "", info); v != "v0.4.0" || c != "deadbeef-dirty" {
		t.Errorf("build info fallback: %s %s", v, c)
	}
}

func TestNewLogger(t *testing.T) {
	var buf bytes.Buffer
	newLogger(&buf, "warn", "auto", false).Info("hidden")
	newLogger(&buf, "warn", "auto", false).Warn("shown", "flow_name", "hr-sync")
	var rec map[string]any
	if err := json.Unmarshal(buf.Bytes(), &rec); err != nil {
		t.Fatalf("auto off a terminal should log one JSON line at warn, got %q: %v", buf.String(), err)
	}
	if rec["msg"] != "shown" || rec["flow_name"] != "hr-sync" {
		t.Errorf("record = %v", rec)
	}

	// Durations are seconds under a key ending in _s, never bare nanoseconds.
	buf.Reset()
	newLogger(&buf, "info", "json", false).Info("waited", "retry_after", 1500*time.Millisecond, "duration_s", 2*time.Second)
	if err := json.Unmarshal(buf.Bytes(), &rec); err != nil {
		t.Fatal(err)
	}
	if rec["retry_after_s"] != 1.5 || rec["duration_s"] != 2.0 || rec["retry_after"] != nil {
		t.Errorf("durations logged as %v, want retry_after_s 1.5 and duration_s 2", rec)
	}

	buf.Reset()
	newLogger(&buf, "debug", "auto", true).Debug("hello", "k", 1)
	if !strings.Contains(buf.String(), "\x1b[") || strings.HasPrefix(buf.String(), "{") {
		t.Errorf("auto on a terminal should be colored text, got %q", buf.String())
	}

	buf.Reset()
	newLogger(&buf, "info", "text", true).Info("hello")
	if !strings.Contains(buf.String(), "level=INFO msg=hello") {
		t.Errorf("text format: %q", buf.String())
	}
	buf.Reset()
	newLogger(&buf, "info", "json", true).Info("hello")
	if !strings.HasPrefix(buf.String(), "{") {
		t.Errorf("json format on a terminal: %q", buf.String())
	}
}

func TestCanceledContext(t *testing.T) {
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	var stdout, stderr bytes.Buffer
	// version does not look at the context; it must still work and exit 0.
	if code := run(ctx, []string{"version"}, environment{stdout: &stdout, stderr: &stderr, lookup: envconfig.MapLookuper(nil)}); code != 0 {
		t.Errorf("exit %d: %s", code, stderr.String())
	}
}
