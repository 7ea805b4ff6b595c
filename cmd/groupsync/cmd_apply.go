package main

import (
	"context"
	"strconv"

	"github.com/spf13/cobra"

	"github.com/groupsync/groupsync/syncengine"
)

// applyOptions are the flags and argument of `groupsync apply`.
type applyOptions struct {
	run          string
	allowDeletes bool
	by           string
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
	cmd.Flags().StringVar(&opts.by, "by", "", "who approves it (default: the operating-system user @ host)")
	return cmd
}

func runApply(ctx context.Context, a *app, opts applyOptions) error {
	id, err := strconv.ParseInt(opts.run, 10, 64)
	if err != nil || id <= 0 {
		return usageError("apply: run id %q is not a positive integer (see groupsync status)", opts.run)
	}
	rt, err := a.openRuntime(ctx, runtimeHooks{})
	if err != nil {
		return err
	}
	defer rt.Close()
	res, err := rt.engine.Apply(ctx, id, opts.allowDeletes, a.operator(opts.by))
	if err != nil {
		return err
	}
	printSummary(a.env.stdout, []*syncengine.Result{res})
	return exitFor([]*syncengine.Result{res})
}
