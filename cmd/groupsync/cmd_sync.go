package main

import (
	"context"
	"errors"
	"fmt"
	"runtime/debug"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/spf13/cobra"

	"github.com/groupsync/groupsync/config"
	"github.com/groupsync/groupsync/observe"
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
succeeded, 1 when one failed or could not read a system (a dry run included), 3 when the
guard blocked one for approval. --dry-run pulls and plans but writes nothing to the targets.`,
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
	// Progress: a redrawn frame on a terminal (the logger writes through it so log lines
	// and frame do not overwrite each other), periodic log lines otherwise.
	var progress interface {
		syncengine.Progress
		Finish()
	}
	var lp *logProgress
	if a.env.stderrIsTTY {
		tp := newTermProgress(a.env.stderr, time.Now)
		a.env.stderr = tp
		progress = tp
	} else {
		lp = newLogProgress(nil, time.Now)
		progress = lp
	}
	rt, err := a.openRuntime(ctx, runtimeHooks{progress: progress})
	if err != nil {
		return err
	}
	defer rt.Close()
	if lp != nil {
		// Set before the first run starts, so no Pulled call sees it change.
		lp.logger = rt.logger
	}
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
	progress.Finish()
	printSummary(a.env.stdout, results)
	return exitFor(results)
}

// shutdownGrace bounds how long the HTTP server waits for open scrapes at shutdown.
const shutdownGrace = 5 * time.Second

// runDaemon runs every flow on its schedule until SIGINT/SIGTERM, serving /healthz,
// /readyz and /metrics on http.listen meanwhile.
func runDaemon(ctx context.Context, a *app) error {
	reg := prometheus.NewRegistry()
	v, _ := buildVersion(version, commit, debug.ReadBuildInfo)
	metrics := observe.NewMetrics(reg, v)
	rt, err := a.openRuntime(ctx, runtimeHooks{requests: metrics, observer: metrics})
	if err != nil {
		return err
	}
	defer rt.Close()
	metrics.WatchMirror(rt.store, 5*time.Second, rt.logger.With("component", "metrics"))
	schedules := map[string]syncengine.Schedule{}
	for name, f := range rt.cfg.Flows {
		s, err := config.ParseSchedule(f.Schedule)
		if err != nil {
			return fmt.Errorf("flow %q: schedule: %w", name, err)
		}
		schedules[name] = s
	}
	sched := rt.engine.NewScheduler(schedules)
	var srv *observe.Server
	if listen := rt.cfg.HTTP.Listen; listen != "" {
		hlog := rt.logger.With("component", "http")
		srv, err = observe.Serve(listen, observe.Handler(reg, observe.Checks{DB: rt.store, SchedulerRunning: sched.Running}, hlog), hlog)
		if err != nil {
			return err
		}
	} else {
		rt.logger.Info("http listener disabled (http.listen is empty): no /healthz, /readyz or /metrics")
	}
	rt.logger.Info("groupsync daemon started", "flows", len(schedules), "schema", rt.cfg.Database.Schema)
	err = sched.Run(ctx)
	// The scheduler has stopped, so /readyz already answers 503 while open scrapes finish.
	if srv != nil {
		sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), shutdownGrace)
		defer cancel()
		if serr := srv.Shutdown(sctx); serr != nil {
			rt.logger.Warn("stopping the http listener", "error", serr)
		}
	}
	rt.logger.Info("groupsync daemon stopped")
	return err
}

// errNotAvailable is what a command says while its part of groupsync is not built yet.
var errNotAvailable = errors.New("not available yet")
