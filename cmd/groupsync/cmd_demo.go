package main

import (
	"context"

	"github.com/spf13/cobra"
)

func newDemoCommand(a *app) *cobra.Command {
	return &cobra.Command{
		Use:   "demo",
		Short: "Sync sample data between simulated systems, end to end",
		Long: `demo is the first command to try: it starts simulators of the four supported APIs with
sample groups and people, uses GROUPSYNC_DATABASE_URL if set (else a local Postgres),
runs the demo flows once, and prints a summary and the SQL to explore the mirror.
It touches no real system.`,
		Args: usageArgs(cobra.NoArgs),
		RunE: func(cmd *cobra.Command, _ []string) error {
			return runDemo(cmd.Context(), a)
		},
	}
}

func runDemo(_ context.Context, _ *app) error { return errNotAvailable }
