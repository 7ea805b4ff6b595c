package main

import (
	"os"
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
