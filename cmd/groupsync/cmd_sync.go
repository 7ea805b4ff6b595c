package main

import (
	"context"
	"errors"
	"fmt"

	"github.com/spf13/cobra"

	"github.com/groupsync/groupsync/config"
	"github.com/groupsync/groupsync/syncengine"
)

// syncOptions are the flags of `groupsync sync`.
type syncOptions struct {
	once   bool
	flows  []string
	dryRun bool
}

func newSyncCommand(a *app) *cobra.Command {
	var opts syncOptions
	cmd := &cobra.Command{
		Use:   "sync",
		Short: "Run the flows: as a daemon on their schedules, or once",
		Long: `sync runs every configured flow on its schedule until SIGINT/SIGTERM, serving /healthz,
/readyz and /metrics on http.listen. Several replicas may share one database: each
scheduled run executes once across them.

With --once it runs every flow (or those named with --flow) one time and exits: 0 when all
succeeded, 1 when one failed, 3 when one was blocked by a safety limit. --dry-run pulls and
plans but writes nothing to the targets.`,
		Args: usageArgs(cobra.NoArgs),
		RunE: func(cmd *cobra.Command, _ []string) error {
			return runSync(cmd.Context(), a, opts)
		},
	}
	f := cmd.Flags()
	f.BoolVar(&opts.once, "once", false, "run each flow once and exit instead of running as a daemon")
	f.StringArrayVar(&opts.flows, "flow", nil, "run only this flow (repeatable; default all flows)")
	f.BoolVar(&opts.dryRun, "dry-run", false, "pull and plan, but write nothing to the targets")
	return cmd
}

func runSync(ctx context.Context, a *app, opts syncOptions) error {
	if !opts.once {
		if opts.dryRun || len(opts.flows) > 0 {
			return usageError("--dry-run and --flow need --once (the daemon runs every flow on its schedule)")
		}
		return runDaemon(ctx, a)
	}
	rt, err := a.openRuntime(ctx, runtimeHooks{})
	if err != nil {
		return err
	}
	defer rt.Close()
	flows, err := rt.selectFlows(opts.flows)
	if err != nil {
		return err
	}
	var results []*syncengine.Result
	for _, name := range flows {
		res, err := rt.engine.RunFlow(ctx, name, syncengine.RunOptions{Trigger: syncengine.TriggerOnce, DryRun: opts.dryRun})
		if err != nil {
			return err
		}
		results = append(results, res)
		if ctx.Err() != nil {
			break
		}
	}
	printSummary(a.env.stdout, results)
	return exitFor(results)
}

// runDaemon runs every flow on its schedule until SIGINT/SIGTERM.
func runDaemon(ctx context.Context, a *app) error {
	rt, err := a.openRuntime(ctx, runtimeHooks{})
	if err != nil {
		return err
	}
	defer rt.Close()
	schedules := map[string]syncengine.Schedule{}
	for name, f := range rt.cfg.Flows {
		s, err := config.ParseSchedule(f.Schedule)
		if err != nil {
			return fmt.Errorf("flow %q: schedule: %w", name, err)
		}
		schedules[name] = s
	}
	sched := rt.engine.NewScheduler(schedules)
	rt.logger.Info("groupsync daemon started", "flows", len(schedules), "schema", rt.cfg.Database.Schema)
	err = sched.Run(ctx)
	rt.logger.Info("groupsync daemon stopped")
	return err
}

// errNotAvailable is what a command says while its part of groupsync is not built yet.
var errNotAvailable = errors.New("not available yet")
