package main

import (
	"os"
	"strings"
	"testing"

	"github.com/sethvargo/go-envconfig"
)

// TestReadmeDocumentsEveryCommand: the README's Commands section names every command of
// the binary and every flag of the history and check commands, so a new command cannot ship
// undocumented.
func TestReadmeDocumentsEveryCommand(t *testing.T) {
	b, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	readme := string(b)
	start := strings.Index(readme, "### Commands")
	end := strings.Index(readme[start+1:], "\n### ")
	if start < 0 || end < 0 {
		t.Fatal("README.md has no Commands section")
	}
	section := readme[start : start+1+end]
	root := newRootCommand(&app{env: environment{lookup: envconfig.MapLookuper(nil)}})
	for _, c := range root.Commands() {
		if c.Hidden || c.Name() == "help" || c.Name() == "completion" {
			continue
		}
		if !strings.Contains(section, "`groupsync "+c.Name()) {
			t.Errorf("README Commands section does not document groupsync %s", c.Name())
		}
	}
	for _, want := range []string{"`groupsync --version`", "groupsync check [--output json]",
		"groupsync runs [--flow NAME] [--limit N] [--output json]", "groupsync changes RUN [--status S] [--limit N] [--output json]"} {
		if !strings.Contains(section, want) {
			t.Errorf("README Commands section lacks %s", want)
		}
	}
}
