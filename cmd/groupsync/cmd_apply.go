package main

import (
	"context"

	"github.com/spf13/cobra"
)

// applyOptions are the flags and argument of `groupsync apply`.
type applyOptions struct {
	run          string
	allowDeletes bool
}

func newApplyCommand(a *app) *cobra.Command {
	var opts applyOptions
	cmd := &cobra.Command{
		Use:   "apply RUN",
		Short: "Carry out a planned or blocked run",
		Long: `apply carries out the changes of run RUN: a plan from ` + "`groupsync plan`" + `, or a run that
a safety limit blocked. Approving removals or deletions beyond the flow's limits needs
--allow-deletes; the approval is recorded with the run.`,
		Args: func(_ *cobra.Command, args []string) error {
			if len(args) != 1 {
				return usageError("apply takes one argument, the run id (see groupsync status), got %d", len(args))
			}
			return nil
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			opts.run = args[0]
			return runApply(cmd.Context(), a, opts)
		},
	}
	cmd.Flags().BoolVar(&opts.allowDeletes, "allow-deletes", false, "approve member removals and group deletions beyond the flow's limits")
	return cmd
}

func runApply(_ context.Context, _ *app, _ applyOptions) error { return errNotAvailable }
