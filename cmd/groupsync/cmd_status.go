package main

import (
	"context"

	"github.com/spf13/cobra"
)

// statusOptions are the flags of `groupsync status`.
type statusOptions struct {
	output string
}

func newStatusCommand(a *app) *cobra.Command {
	opts := statusOptions{output: "table"}
	cmd := &cobra.Command{
		Use:   "status",
		Short: "Show each flow's last runs and pending changes",
		Long: `status shows, for every flow, its last run (outcome, counts, when), the runs blocked
waiting for approval, the changes still failing, and each system's last complete pull.`,
		Args: usageArgs(cobra.NoArgs),
		RunE: func(cmd *cobra.Command, _ []string) error {
			if opts.output != "table" && opts.output != "json" {
				return usageError("--output %q: use table or json", opts.output)
			}
			return runStatus(cmd.Context(), a, opts)
		},
	}
	cmd.Flags().StringVarP(&opts.output, "output", "o", opts.output, "output format: table or json")
	return cmd
}

func runStatus(_ context.Context, _ *app, _ statusOptions) error { return errNotAvailable }
