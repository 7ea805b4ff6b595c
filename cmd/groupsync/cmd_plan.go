package main

import (
	"context"

	"github.com/spf13/cobra"
)

// planOptions are the flags of `groupsync plan`.
type planOptions struct {
	flows []string
}

func newPlanCommand(a *app) *cobra.Command {
	var opts planOptions
	cmd := &cobra.Command{
		Use:   "plan",
		Short: "Pull and show the changes a run would make, without making them",
		Long: `plan pulls the systems of every flow (or those named with --flow), links groups and plans
the changes, then prints them and records the plan as a run that ` + "`groupsync apply RUN`" + `
can carry out later. Nothing is written to the targets.`,
		Args: usageArgs(cobra.NoArgs),
		RunE: func(cmd *cobra.Command, _ []string) error {
			return runPlan(cmd.Context(), a, opts)
		},
	}
	cmd.Flags().StringArrayVar(&opts.flows, "flow", nil, "plan only this flow (repeatable; default all flows)")
	return cmd
}

func runPlan(_ context.Context, _ *app, _ planOptions) error { return errNotAvailable }
