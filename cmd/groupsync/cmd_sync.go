package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"runtime/debug"
	"syscall"
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
	groups []string
	dryRun bool
}

func newSyncCommand(a *app) *cobra.Command {
	var opts syncOptions
	cmd := &cobra.Command{
		Use:   "sync",
		Short: "Run the flows: as a daemon on their schedules, or once",
		Long: `sync runs every configured flow on its schedule until SIGINT/SIGTERM, serving /healthz,
/readyz and /metrics on http.listen. Several replicas may share one database: each
scheduled run executes once across them. On SIGTERM a run lets its request in flight
finish (20s grace) and is recorded interrupted; the process exits 0. SIGHUP reloads the
configuration (kept as it is when the new file does not validate).

With --once it runs every flow (or those named with --flow) one time and exits: 0 when all
succeeded, 1 when one failed or could not read a system (a dry run included), 3 when the
guard blocked one for approval. --dry-run pulls and plans but writes nothing to the
targets. --group NAME (with one --flow) runs just that source group through the same
plan, guard and push.`,
		Args: usageArgs(cobra.NoArgs),
		RunE: func(cmd *cobra.Command, _ []string) error {
			return runSync(cmd.Context(), a, opts)
		},
	}
	f := cmd.Flags()
	f.BoolVar(&opts.once, "once", false, "run each flow once and exit instead of running as a daemon")
	f.StringArrayVar(&opts.flows, "flow", nil, "run only this flow (repeatable; default all flows)")
	f.BoolVar(&opts.dryRun, "dry-run", false, "pull and plan, but write nothing to the targets")
	f.StringArrayVar(&opts.groups, "group", nil, "with --once and one --flow: run only this source group, by name or id (repeatable)")
	return cmd
}

func runSync(ctx context.Context, a *app, opts syncOptions) error {
	if !opts.once {
		if opts.dryRun || len(opts.flows) > 0 || len(opts.groups) > 0 {
			return usageError("--dry-run, --flow and --group need --once (the daemon runs every flow on its schedule)")
		}
		return runDaemon(ctx, a)
	}
	if len(opts.groups) > 0 && len(opts.flows) != 1 {
		return usageError("--group needs exactly one --flow: group names belong to one flow's source")
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
		res, err := rt.engine.RunFlow(ctx, name, syncengine.RunOptions{Trigger: syncengine.TriggerOnce, DryRun: opts.dryRun,
			Groups: opts.groups})
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
// /readyz and /metrics on http.listen meanwhile. SIGHUP reloads the configuration: a new
// one that validates replaces the running one once the runs in flight have finished; one
// that does not is logged and the running one kept.
func runDaemon(ctx context.Context, a *app) error {
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	for {
		reload, err := runGeneration(ctx, a, hup)
		if err != nil || !reload {
			return err
		}
	}
}

// runGeneration runs the daemon on the configuration as it is now, until a shutdown
// (reload false) or a valid reload (reload true).
func runGeneration(ctx context.Context, a *app, hup <-chan os.Signal) (reload bool, err error) {
	reg := prometheus.NewRegistry()
	v, _ := buildVersion(version, commit, debug.ReadBuildInfo)
	metrics := observe.NewMetrics(reg, v)
	rt, err := a.openRuntime(ctx, runtimeHooks{requests: metrics, observer: metrics})
	if err != nil {
		return false, err
	}
	defer rt.Close()
	metrics.WatchMirror(rt.store, 5*time.Second, rt.logger.With("component", "metrics"))
	schedules := map[string]syncengine.Schedule{}
	for name, f := range rt.cfg.Flows {
		s, err := config.ParseSchedule(f.Schedule)
		if err != nil {
			return false, fmt.Errorf("flow %q: schedule: %w", name, err)
		}
		schedules[name] = s
	}
	sched := rt.engine.NewScheduler(schedules)
	var srv *observe.Server
	if listen := rt.cfg.HTTP.Listen; listen != "" {
		hlog := rt.logger.With("component", "http")
		srv, err = observe.Serve(listen, observe.Handler(reg, observe.Checks{DB: rt.store, SchedulerRunning: sched.Running}, hlog), hlog)
		if err != nil {
			return false, err
		}
	} else {
		rt.logger.Info("http listener disabled (http.listen is empty): no /healthz, /readyz or /metrics")
	}
	stopFace, err := startSCIMFace(ctx, rt)
	if err != nil {
		if srv != nil {
			_ = srv.Shutdown(context.WithoutCancel(ctx))
		}
		return false, err
	}
	defer stopFace()
	rt.logger.Info("groupsync daemon started", "flows", len(schedules), "schema", rt.cfg.Database.Schema)
	drain := make(chan struct{})
	watched := make(chan struct{})
	go func() {
		defer close(watched)
		reload = watchReload(ctx, a, rt.logger, hup, drain)
	}()
	err = sched.RunUntil(ctx, drain)
	// The scheduler has stopped, so /readyz already answers 503 while open scrapes finish.
	if srv != nil {
		sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), shutdownGrace)
		defer cancel()
		if serr := srv.Shutdown(sctx); serr != nil {
			rt.logger.Warn("stopping the http listener", "error", serr)
		}
	}
	<-watched
	if ctx.Err() != nil {
		rt.logger.Info("groupsync daemon stopped")
		return false, err
	}
	return reload, err
}

// watchReload waits for SIGHUP until ctx ends. A configuration that loads and validates
// closes drain and reports true; one that does not is logged, and the daemon goes on with
// the configuration it runs.
func watchReload(ctx context.Context, a *app, log *slog.Logger, hup <-chan os.Signal, drain chan struct{}) bool {
	for {
		select {
		case <-ctx.Done():
			return false
		case <-hup:
			if _, err := a.loadConfig(); err != nil {
				log.Error("SIGHUP: the new configuration is refused; the running one is kept", "error", err)
				continue
			}
			log.Info("SIGHUP: configuration reloaded; the runs in flight finish, then the daemon restarts on it",
				"config", a.configPath)
			close(drain)
			return true
		}
	}
}

// errNotAvailable is what a command says while its part of groupsync is not built yet.
var errNotAvailable = errors.New("not available yet")
