package main

import (
	"fmt"
	"runtime"
	"runtime/debug"

	"github.com/spf13/cobra"
)

// Set at build time: go build -ldflags "-X main.version=v1.2.3 -X main.commit=abc1234"
// (see the Makefile). Unset, they come from the module build info.
var (
	version = ""
	commit  = ""
)

func newVersionCommand(_ *app) *cobra.Command {
	return &cobra.Command{
		Use:   "version",
		Short: "Print the version and commit of this binary",
		Args:  usageArgs(cobra.NoArgs),
		RunE: func(cmd *cobra.Command, _ []string) error {
			fmt.Fprintln(cmd.OutOrStdout(), versionLine())
			return nil
		},
	}
}

// versionLine is what both `groupsync version` and `groupsync --version` print.
func versionLine() string {
	v, c := buildVersion(version, commit, debug.ReadBuildInfo)
	return fmt.Sprintf("groupsync %s (commit %s, %s)", v, c, runtime.Version())
}

// buildVersion prefers the -ldflags values and falls back to what the Go toolchain recorded:
// the module version for `go install ...@v1.2.3`, the VCS revision for a local build.
func buildVersion(v, c string, readBuildInfo func() (*debug.BuildInfo, bool)) (string, string) {
	info, ok := readBuildInfo()
	if ok && v == "" && info.Main.Version != "" && info.Main.Version != "(devel)" {
		v = info.Main.Version
	}
	if ok && c == "" {
		modified := false
		for _, s := range info.Settings {
			switch s.Key {
			case "vcs.revision":
				c = s.Value
			case "vcs.modified":
				modified = s.Value == "true"
			}
		}
		if c != "" && modified {
			c += "-dirty"
		}
	}
	if v == "" {
		v = "dev"
	}
	if c == "" {
		c = "unknown"
	}
	return v, c
}
