package main

import (
	"net"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/sethvargo/go-envconfig"
	"gopkg.in/yaml.v3"

	"github.com/groupsync/groupsync/config"
	"github.com/groupsync/groupsync/observe"
)

// No Docker engine runs where the tests run, so the container files are checked for the
// properties the operator relies on: they are what hadolint cannot see anyway.

func TestDockerfileShape(t *testing.T) {
	b, err := os.ReadFile("../../Dockerfile")
	if err != nil {
		t.Fatal(err)
	}
	df := string(b)
	var froms []string
	for _, line := range strings.Split(df, "\n") {
		if strings.HasPrefix(line, "FROM ") {
			froms = append(froms, line)
		}
	}
	if len(froms) != 2 || !strings.HasPrefix(froms[0], "FROM golang:1.26 AS build") {
		t.Errorf("want a golang:1.26 builder and one final stage, got %q", froms)
	}
	for _, want := range []string{
		"CGO_ENABLED=0 go build -trimpath",
		"-X main.version=${VERSION}",
		"ca-certificates",
		`ENTRYPOINT ["groupsync"]`,
		`CMD ["sync"]`,
		"EXPOSE 8080",
		"GROUPSYNC_CONFIG=",
	} {
		if !strings.Contains(df, want) {
			t.Errorf("Dockerfile lacks %q", want)
		}
	}
	users := regexp.MustCompile(`(?m)^USER (\S+)`).FindAllStringSubmatch(df, -1)
	if len(users) == 0 || strings.HasPrefix(users[len(users)-1][1], "root") || strings.HasPrefix(users[len(users)-1][1], "0") {
		t.Errorf("the final stage must run as a non-root user, USER lines: %v", users)
	}
	// The port the image exposes is the configuration's default listen port.
	if !strings.HasSuffix(config.DefaultHTTPListen, ":8080") {
		t.Errorf("EXPOSE 8080 but the default listen address is %s", config.DefaultHTTPListen)
	}
}

func TestComposeWiring(t *testing.T) {
	b, err := os.ReadFile("../../compose.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var c struct {
		Services map[string]struct {
			Image       string            `yaml:"image"`
			Environment map[string]string `yaml:"environment"`
			Secrets     []string          `yaml:"secrets"`
			Healthcheck struct {
				Test []string `yaml:"test"`
			} `yaml:"healthcheck"`
		} `yaml:"services"`
		Secrets map[string]struct {
			File string `yaml:"file"`
		} `yaml:"secrets"`
	}
	if err := yaml.Unmarshal(b, &c); err != nil {
		t.Fatalf("compose.yaml: %v", err)
	}
	if c.Services["postgres"].Image != "postgres:15" {
		t.Errorf("postgres image = %q, want postgres:15", c.Services["postgres"].Image)
	}
	gs := c.Services["groupsync"]
	if !slices.ContainsFunc(gs.Healthcheck.Test, func(s string) bool { return strings.HasSuffix(s, observe.PathReady) }) {
		t.Errorf("groupsync healthcheck %q does not probe %s", gs.Healthcheck.Test, observe.PathReady)
	}
	// Every secret variable names a mounted secret, and every system variable belongs to a
	// system of config.example.yaml (the file the stack starts from).
	cfg, err := config.Load(examplePath, envconfig.MapLookuper(exampleEnv()))
	if err != nil {
		t.Fatal(err)
	}
	var prefixes []string
	for name := range cfg.Systems {
		prefixes = append(prefixes, config.SystemEnvPrefix(name))
	}
	for k, v := range gs.Environment {
		if strings.HasSuffix(k, "_FILE") {
			secret, ok := strings.CutPrefix(v, "/run/secrets/")
			if !ok || !slices.Contains(gs.Secrets, secret) || c.Secrets[secret].File == "" {
				t.Errorf("%s=%s is not a secret mounted into the groupsync service", k, v)
			}
		}
		if strings.HasPrefix(k, "GROUPSYNC_SYSTEMS_") && !slices.ContainsFunc(prefixes, func(p string) bool { return strings.HasPrefix(k, p) }) {
			t.Errorf("%s names no system of config.example.yaml (prefixes %v)", k, prefixes)
		}
	}
	if gs.Environment["GROUPSYNC_DATABASE_URL_FILE"] == "" {
		t.Error("the database URL (it holds the password) must come from a secret file")
	}
}

// readmeSection returns the README.md text under heading (a line like "### Container") up
// to the next heading of the same or a higher level.
func readmeSection(t *testing.T, heading string) string {
	t.Helper()
	b, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	_, after, ok := strings.Cut(string(b), "\n"+heading+"\n")
	if !ok {
		t.Fatalf("README.md has no %q section", heading)
	}
	level := strings.SplitN(heading, " ", 2)[0]
	for i, line := range strings.Split(after, "\n") {
		if h, _, _ := strings.Cut(line, " "); strings.HasPrefix(line, "#") && len(h) <= len(level) && strings.Trim(h, "#") == "" {
			return strings.Join(strings.Split(after, "\n")[:i], "\n")
		}
	}
	return after
}

// TestHealthListenAgrees: the port the image exposes is the one compose publishes and
// probes, the one the image, compose, the example configuration and the default serve on
// every interface (a container listening on 127.0.0.1 answers its own healthcheck but not
// the published port), and the one the README documents.
func TestHealthListenAgrees(t *testing.T) {
	b, err := os.ReadFile("../../Dockerfile")
	if err != nil {
		t.Fatal(err)
	}
	df := string(b)
	m := regexp.MustCompile(`(?m)^EXPOSE (\d+)$`).FindStringSubmatch(df)
	if m == nil {
		t.Fatal("Dockerfile exposes no port")
	}
	port := m[1]
	allInterfaces := func(what, addr string) {
		t.Helper()
		host, p, err := net.SplitHostPort(addr)
		if err != nil || p != port || (host != "" && host != "0.0.0.0" && host != "::") {
			t.Errorf("%s listens on %q; want every interface on the exposed port %s (e.g. :%s)", what, addr, port, port)
		}
	}
	// The image pins the listener, so a mounted file cannot move it off the exposed port.
	env := regexp.MustCompile(`GROUPSYNC_HTTP_LISTEN=(\S+)`).FindStringSubmatch(df)
	if env == nil {
		t.Error("the Dockerfile does not set GROUPSYNC_HTTP_LISTEN: a mounted file's http.listen could leave EXPOSE serving nothing")
	} else {
		allInterfaces("the Dockerfile's GROUPSYNC_HTTP_LISTEN", env[1])
	}
	allInterfaces("config.DefaultHTTPListen", config.DefaultHTTPListen)
	cfg, err := config.Load(examplePath, envconfig.MapLookuper(exampleEnv()))
	if err != nil {
		t.Fatal(err)
	}
	allInterfaces("config.example.yaml http.listen", cfg.HTTP.Listen)

	b, err = os.ReadFile("../../compose.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var c struct {
		Services map[string]struct {
			Environment map[string]string `yaml:"environment"`
			Ports       []string          `yaml:"ports"`
			Healthcheck struct {
				Test []string `yaml:"test"`
			} `yaml:"healthcheck"`
		} `yaml:"services"`
	}
	if err := yaml.Unmarshal(b, &c); err != nil {
		t.Fatalf("compose.yaml: %v", err)
	}
	gs := c.Services["groupsync"]
	if v, ok := gs.Environment["GROUPSYNC_HTTP_LISTEN"]; ok {
		allInterfaces("compose's GROUPSYNC_HTTP_LISTEN", v)
	}
	if !slices.ContainsFunc(gs.Ports, func(p string) bool { return strings.HasSuffix(p, ":"+port) }) {
		t.Errorf("compose publishes %v, not the container port %s", gs.Ports, port)
	}
	probe := "http://127.0.0.1:" + port + observe.PathReady
	if !slices.Contains(gs.Healthcheck.Test, probe) {
		t.Errorf("compose healthcheck %v does not probe %s", gs.Healthcheck.Test, probe)
	}

	health := readmeSection(t, "### Health endpoints")
	if !strings.Contains(health, "(default `:"+port+"`") {
		t.Errorf("README \"Health endpoints\" does not give the default :%s:\n%s", port, health)
	}
	container := readmeSection(t, "### Container")
	for _, want := range []string{"exposes\n" + port, "`GROUPSYNC_HTTP_LISTEN=:" + port + "`"} {
		if !strings.Contains(container, want) {
			t.Errorf("README \"Container\" lacks %q", want)
		}
	}
}

// TestSecretFilesReadableByTheImageUser: compose bind-mounts file secrets with the host's
// owner and mode, so a 0600 file of the operator's is unreadable by the image's user. The
// README and compose.yaml must say so, with the uid the Dockerfile really runs as.
func TestSecretFilesReadableByTheImageUser(t *testing.T) {
	b, err := os.ReadFile("../../Dockerfile")
	if err != nil {
		t.Fatal(err)
	}
	users := regexp.MustCompile(`(?m)^USER (\d+)`).FindAllStringSubmatch(string(b), -1)
	if len(users) == 0 {
		t.Fatal("the Dockerfile's final USER is not numeric")
	}
	uid := users[len(users)-1][1]
	container := readmeSection(t, "### Container")
	for _, want := range []string{"readable by uid " + uid, "chmod 0444 secrets/*", "chown " + uid + ":" + uid, "chgrp " + uid,
		"fsGroup: " + uid, "not\napplied to file secrets"} {
		if !strings.Contains(container, want) {
			t.Errorf("README \"Container\" lacks %q", want)
		}
	}
	b, err = os.ReadFile("../../compose.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(b), "chmod 0444 secrets/*") || !strings.Contains(string(b), "uid "+uid) {
		t.Error("compose.yaml's setup comment does not make the secret files readable by the image's user")
	}
}

// TestDockerignoreLeavesOutLocalState: the build context carries the sources and nothing a
// developer's tree accumulates. The matcher covers the .dockerignore forms used here
// (leading /, trailing /, **/ prefix, shell globs per path element), which is how Docker
// reads them: a pattern without **/ matches from the context's root only.
func TestDockerignoreLeavesOutLocalState(t *testing.T) {
	b, err := os.ReadFile("../../.dockerignore")
	if err != nil {
		t.Fatal(err)
	}
	var patterns []string
	for _, line := range strings.Split(string(b), "\n") {
		if line = strings.TrimSpace(line); line != "" && !strings.HasPrefix(line, "#") {
			patterns = append(patterns, line)
		}
	}
	ignored := func(path string) bool {
		parts := strings.Split(path, "/")
		for _, p := range patterns {
			p = strings.TrimSuffix(strings.TrimPrefix(p, "/"), "/")
			anyDepth := strings.HasPrefix(p, "**/")
			pp := strings.Split(strings.TrimPrefix(p, "**/"), "/")
			for start := 0; start < len(parts); start++ {
				if start > 0 && !anyDepth {
					break
				}
				// Matching a leading run of elements is enough: a pattern naming a
				// directory leaves out everything under it.
				if start+len(pp) > len(parts) {
					break
				}
				ok := true
				for i, seg := range pp {
					if m, _ := filepath.Match(seg, parts[start+i]); !m {
						ok = false
						break
					}
				}
				if ok {
					return true
				}
			}
		}
		return false
	}
	for _, path := range []string{
		".git/HEAD", ".cache/go-build/00/x", "e2e/.cache/x", "bin/groupsync", "groupsync",
		"coverage.out", "cmd/groupsync/cover.out", "state/coverage.html", "state/state.test", "cpu.prof",
		"node_modules/x/index.js", "docs/node_modules/x/index.js", "e2e/test-results/run.json", "junit.xml",
		"e2e/junit-e2e.xml", "groupsync.yaml", "secrets/devrev_token", ".env", ".idea/workspace.xml",
	} {
		if !ignored(path) {
			t.Errorf(".dockerignore sends %s into the build context", path)
		}
	}
	// And nothing the build needs is left out.
	for _, path := range []string{"go.mod", "go.sum", "cmd/groupsync/main.go", "state/migrate.go",
		"state/migrations/001_mirror.sql", "connectors/devrev/devrev.go", "config/load.go"} {
		if ignored(path) {
			t.Errorf(".dockerignore leaves out %s, which the build needs", path)
		}
	}
}
