package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"math"
	"os"
	"path/filepath"
	"regexp"
	"runtime/debug"
	"slices"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/sethvargo/go-envconfig"
	"github.com/spf13/cobra"

	"github.com/groupsync/groupsync/config"
	"github.com/groupsync/groupsync/connectors"
	"github.com/groupsync/groupsync/connectors/registry"
	"github.com/groupsync/groupsync/connectors/simorg"
	"github.com/groupsync/groupsync/demo"
	"github.com/groupsync/groupsync/observe"
	"github.com/groupsync/groupsync/state"
	"github.com/groupsync/groupsync/syncengine"
)

// demoOptions are the flags of `groupsync demo`.
type demoOptions struct {
	ephemeralDB bool
	schema      string
	configOut   string
	keepRunning bool
	httpListen  string
}

func newDemoCommand(a *app) *cobra.Command {
	var opts demoOptions
	cmd := &cobra.Command{
		Use:   "demo",
		Short: "Sync sample data between simulated systems, end to end",
		Long: `demo is the first command to try: it starts simulators of the four supported APIs with
a sample organisation (a few dozen groups, a few hundred people, and some differences to
reconcile), writes a demo configuration with three flows, runs each flow once through the
real engine, and prints the summary and the psql commands to explore the mirror.
It touches no real system.

The mirror goes into the schema groupsync_demo (dropped and recreated on every run) of:
GROUPSYNC_DATABASE_URL if set; else the local Postgres on 127.0.0.1:5432 (user postgres,
database groupsync_demo, created if missing); else a private Postgres started from the
machine's PostgreSQL binaries in a temporary directory and removed on exit.

With --keep-running the demo then stays up as a daemon would: the flows run on their
schedules and /healthz, /readyz and /metrics answer on --http-listen (default
127.0.0.1:8080), until Ctrl-C.

Exit codes: 0 the demo worked, 1 a run failed, 3 a run was blocked.`,
		Args: usageArgs(cobra.NoArgs),
		RunE: func(cmd *cobra.Command, _ []string) error {
			return runDemo(cmd.Context(), a, opts)
		},
	}
	f := cmd.Flags()
	f.BoolVar(&opts.ephemeralDB, "ephemeral-db", false, "always start a private Postgres (ignore GROUPSYNC_DATABASE_URL and the local one)")
	f.StringVar(&opts.schema, "schema", demo.DefaultSchema, "schema of the demo mirror; must start with "+demo.SchemaPrefix+" (it is dropped first)")
	f.StringVar(&opts.configOut, "config-out", "", "write the demo configuration here and keep it (default: a temporary file, removed on exit)")
	f.BoolVar(&opts.keepRunning, "keep-running", false, "after the runs, keep the simulators, the database and the flows (on their schedules) up, serving /healthz, /readyz and /metrics on --http-listen, until Ctrl-C")
	f.StringVar(&opts.httpListen, "http-listen", demo.DefaultHTTPListen, `address of /healthz, /readyz and /metrics with --keep-running (the demo configuration's http.listen; "" for none)`)
	return cmd
}

var demoSchemaRE = regexp.MustCompile(`^[a-z_][a-z0-9_]*$`)

func runDemo(ctx context.Context, a *app, opts demoOptions) error {
	if err := a.checkLogFlags(); err != nil {
		return err
	}
	if err := checkDemoSchema(opts.schema); err != nil {
		return err
	}
	started := time.Now()
	out := a.env.stdout
	logger := a.demoLogger("")

	org := demo.SampleOrg()
	sims, err := demo.Start(org)
	if err != nil {
		return err
	}
	defer sims.Close()
	printDemoOrg(out, org, sims)

	db, err := openDemoDatabase(ctx, a, opts, logger)
	if err != nil {
		return err
	}
	defer func() {
		if err := db.Close(); err != nil {
			logger.Warn("stopping the private postgres", "error", err)
		}
	}()
	cfg, cleanup, err := loadDemoConfig(a, opts, sims, db)
	if err != nil {
		return err
	}
	defer cleanup()
	logger = a.demoLogger(cfg.Log.Level)

	// The demo's runs count in the metrics too: --keep-running serves them.
	reg := prometheus.NewRegistry()
	v, _ := buildVersion(version, commit, debug.ReadBuildInfo)
	metrics := observe.NewMetrics(reg, v)
	rt, err := openDemoRuntime(ctx, cfg, sims, logger, metrics)
	if err != nil {
		return err
	}
	defer rt.Close()
	results, again, err := runDemoFlows(ctx, rt.engine)
	if err != nil {
		return err
	}
	writes := demoWrites(again)
	printDemoRuns(out, results, again, writes)
	printDemoNotes(out, org)
	printDemoQueries(out, cfg.Database.Schema, db, results)
	if writes > 0 {
		return fmt.Errorf("demo: the second pass wrote %d changes: the flows did not converge (a bug: please report it with this output)", writes)
	}
	fmt.Fprintf(out, "\nDemo done in %s.\n", time.Since(started).Round(100*time.Millisecond))
	switch {
	case opts.keepRunning:
		if err := keepDemoRunning(ctx, out, cfg, rt, metrics, logger); err != nil {
			return err
		}
	case db.Source == demo.SourceEphemeral:
		fmt.Fprintln(out, "The private Postgres stops now: rerun with --keep-running to query it.")
	}
	return exitFor(results)
}

// checkDemoSchema refuses a --schema the demo must not drop (no demo prefix) or could not
// use unquoted (not a plain identifier of at most 63 bytes).
func checkDemoSchema(schema string) error {
	if !strings.HasPrefix(schema, demo.SchemaPrefix) || !demoSchemaRE.MatchString(schema) || len(schema) > 63 {
		return usageError("--schema %q: use a plain identifier starting with %s (the demo drops it)", schema, demo.SchemaPrefix)
	}
	return nil
}

// printDemoOrg prints the sample organisation's size and where each simulator listens.
func printDemoOrg(out io.Writer, org *demo.Org, sims *simorg.Org) {
	size := org.Counts()
	fmt.Fprintf(out, "Sample organisation: %d people, %d groups, %d memberships over four simulated systems:\n",
		size.People, size.Groups, size.Memberships)
	for _, name := range sims.Names() {
		fmt.Fprintf(out, "  %-14s %s  (%s, %s)\n", name, sims.Systems[name].Server.URL,
			plural(len(org.Groups[name]), "group"), plural(len(org.Accounts[name]), "account"))
	}
}

// openDemoDatabase opens the Postgres that holds the demo mirror and prints which one it is.
// The caller closes it.
func openDemoDatabase(ctx context.Context, a *app, opts demoOptions, logger *slog.Logger) (*demo.Database, error) {
	envURL, _ := a.env.lookup.Lookup("GROUPSYNC_DATABASE_URL")
	db, err := demo.OpenDatabase(ctx, demo.DatabaseOptions{EnvURL: envURL, Ephemeral: opts.ephemeralDB, Logger: logger})
	if err != nil {
		return nil, err
	}
	if db.Fallback != "" {
		fmt.Fprintf(a.env.stdout, "No local Postgres (%s).\n", db.Fallback)
	}
	fmt.Fprintf(a.env.stdout, "Database: %s, schema %s\n", db.Describe(), opts.schema)
	return db, nil
}

// loadDemoConfig writes the demo configuration, loads it back with the demo's environment,
// and prints where it is. cleanup removes a temporary file; on error it has already run.
func loadDemoConfig(a *app, opts demoOptions, sims *simorg.Org, db *demo.Database) (cfg *config.Config, cleanup func(), err error) {
	cfgPath, cleanup, err := writeDemoConfig(opts, sims, db)
	if err != nil {
		return nil, nil, err
	}
	cfg, err = config.Load(cfgPath, a.demoLookup(db))
	if err != nil {
		cleanup()
		return nil, nil, fmt.Errorf("demo configuration %s: %w", cfgPath, err)
	}
	out := a.env.stdout
	if opts.configOut != "" {
		fmt.Fprintf(out, "Configuration: %s (%d flows)\n", cfgPath, len(cfg.Flows))
	} else {
		fmt.Fprintf(out, "Configuration: %d flows (see it with --config-out FILE)\n", len(cfg.Flows))
	}
	return cfg, cleanup, nil
}

// demoWrites counts what the second pass wrote or failed to write: a converged demo has none.
func demoWrites(again []*syncengine.Result) int {
	writes := 0
	for _, r := range again {
		for _, t := range r.Targets {
			writes += t.Created + t.Updated + t.Deleted + t.Added + t.Removed + t.Failed + t.Blocked
		}
	}
	return writes
}

// printDemoRuns prints the first pass's summary and what the second pass (again, nil when
// it did not run) found left to do.
func printDemoRuns(out io.Writer, results, again []*syncengine.Result, writes int) {
	fmt.Fprintf(out, "\nRan %d flows once (%s):\n\n", len(results), runTime(results))
	printSummary(out, results)
	switch {
	case again != nil && writes == 0:
		fmt.Fprintf(out, "\nRan them again at once (%s): no writes, the targets already match the sources.\n", runTime(again))
	case again != nil:
		fmt.Fprintf(out, "\nRan them again at once (%s): %d writes or failures, where none were due:\n\n", runTime(again), writes)
		printSummary(out, again)
	}
}

// printDemoNotes prints the differences the sample organisation had the flows reconcile.
func printDemoNotes(out io.Writer, org *demo.Org) {
	fmt.Fprintln(out, "\nWhat the sample organisation had to reconcile:")
	for _, n := range org.Notes {
		fmt.Fprintln(out, "  - "+n)
	}
}

// printDemoQueries prints psql commands that explore the mirror in schema, the runs of
// results among them.
func printDemoQueries(out io.Writer, schema string, db *demo.Database, results []*syncengine.Result) {
	var runIDs []int64
	for _, r := range results {
		runIDs = append(runIDs, r.RunID)
	}
	fmt.Fprintln(out, "\nLook at the mirror:")
	for _, q := range demo.Queries(schema, runIDs) {
		fmt.Fprintf(out, "\n  # %s\n  %s\n", q.Title, demo.PsqlCommand(db.URL, q))
	}
	if demo.HasPassword(db.URL) {
		fmt.Fprintln(out, "\n  (password redacted: put yours back, or set PGPASSWORD)")
	}
}

// runTime is the summed duration of runs, for a person.
func runTime(results []*syncengine.Result) time.Duration {
	var d time.Duration
	for _, r := range results {
		d += r.Duration
	}
	return d.Round(100 * time.Millisecond)
}

// demoLogger logs to stderr. The demo prints its own story on stdout, so it logs warnings
// and errors only unless --log-level or GROUPSYNC_LOG_LEVEL asks for more; level is the
// configuration's, once loaded.
func (a *app) demoLogger(level string) *slog.Logger {
	format := a.logFormat
	if format == "" {
		format, _ = a.env.lookup.Lookup("GROUPSYNC_LOG_FORMAT")
	}
	switch {
	case a.logLevel != "":
		level = a.logLevel
	case level == "":
		if level, _ = a.env.lookup.Lookup("GROUPSYNC_LOG_LEVEL"); level == "" {
			level = "warn"
		}
	}
	return newLogger(a.env.stderr, level, format, a.env.stderrIsTTY)
}

// demoLookup is the environment the demo configuration is loaded with: only the database
// URL (when it holds a password and so is not in the file) and the log settings. The
// operator's other GROUPSYNC_* variables (a real mirror's schema, real systems' tokens)
// must not leak into the demo.
func (a *app) demoLookup(db *demo.Database) envconfig.Lookuper {
	env := map[string]string{}
	if demo.HasPassword(db.URL) {
		env["GROUPSYNC_DATABASE_URL"] = db.URL
	}
	for _, k := range []string{"GROUPSYNC_LOG_LEVEL", "GROUPSYNC_LOG_FORMAT"} {
		if v, ok := a.env.lookup.Lookup(k); ok {
			env[k] = v
		}
	}
	if a.logLevel != "" {
		env["GROUPSYNC_LOG_LEVEL"] = a.logLevel
	}
	if a.logFormat != "" {
		env["GROUPSYNC_LOG_FORMAT"] = a.logFormat
	}
	return envconfig.MapLookuper(env)
}

// writeDemoConfig writes the demo configuration to --config-out, or to a temporary file
// that cleanup removes.
func writeDemoConfig(opts demoOptions, sims *simorg.Org, db *demo.Database) (path string, cleanup func(), err error) {
	cleanup = func() {}
	path = opts.configOut
	if path == "" {
		dir, err := os.MkdirTemp("", "groupsync-demo-")
		if err != nil {
			return "", nil, fmt.Errorf("demo configuration: temp dir: %w", err)
		}
		cleanup = func() { _ = os.RemoveAll(dir) }
		path = filepath.Join(dir, "groupsync-demo.yaml")
	}
	systems := map[string]connectors.SystemConfig{}
	for name, s := range sims.Systems {
		systems[name] = s.Config
	}
	fileURL := db.URL
	if demo.HasPassword(fileURL) {
		fileURL = ""
	}
	in := demo.ConfigInputFor(systems, fileURL, opts.schema)
	in.HTTPListen = opts.httpListen
	if err := demo.WriteConfig(path, in); err != nil {
		cleanup()
		return "", nil, err
	}
	return path, cleanup, nil
}

// demoRuntime is the demo's mirror and engine, open from the first run until the demo
// ends (--keep-running goes on using them).
type demoRuntime struct {
	store  *state.Store
	engine *syncengine.Engine
}

func (rt *demoRuntime) Close() { rt.store.Close() }

// openDemoRuntime resets the demo schema, migrates it, and opens the systems of cfg with the
// simulators' HTTP clients, their requests and the engine's runs observed by metrics.
func openDemoRuntime(ctx context.Context, cfg *config.Config, sims *simorg.Org, logger *slog.Logger, metrics *observe.Metrics) (*demoRuntime, error) {
	dbURL := cfg.Database.URL.Reveal()
	if err := demo.ResetSchema(ctx, dbURL, cfg.Database.Schema); err != nil {
		return nil, err
	}
	store, err := state.Open(ctx, dbURL, state.Options{
		Schema:   cfg.Database.Schema,
		MaxConns: int32(min(cfg.Database.MaxConns, math.MaxInt32)),
		Logger:   logger,
	})
	if err != nil {
		return nil, err
	}
	rt := &demoRuntime{store: store}
	if err := rt.open(ctx, cfg, sims, logger, metrics); err != nil {
		store.Close()
		return nil, err
	}
	return rt, nil
}

func (rt *demoRuntime) open(ctx context.Context, cfg *config.Config, sims *simorg.Org, logger *slog.Logger, metrics *observe.Metrics) error {
	if _, err := rt.store.Migrate(ctx); err != nil {
		return fmt.Errorf("migrate schema %s: %w", cfg.Database.Schema, err)
	}
	conns := map[string]connectors.Connector{}
	for _, name := range slices.Sorted(maps.Keys(cfg.Systems)) {
		sys, ok := sims.Systems[name]
		if !ok {
			return fmt.Errorf("demo: system %s has no simulator", name)
		}
		c, err := registry.Open(cfg.SystemConfig(name), connectors.Deps{
			HTTPClient: sys.Server.Client(),
			Logger:     logger.With("system", name),
			Observer:   metrics,
		})
		if err != nil {
			return err
		}
		conns[name] = c
	}
	eng, err := syncengine.New(syncengine.Options{Store: rt.store, Config: cfg, Connectors: conns, Logger: logger, Observer: metrics})
	if err != nil {
		return err
	}
	rt.engine = eng
	return nil
}

// keepDemoRunning is what --keep-running does after the demo's runs: like groupsync sync,
// it runs the flows on their schedules and serves /healthz, /readyz and /metrics on
// http.listen, until ctx ends (Ctrl-C).
func keepDemoRunning(ctx context.Context, out io.Writer, cfg *config.Config, rt *demoRuntime, metrics *observe.Metrics, logger *slog.Logger) error {
	metrics.WatchMirror(rt.store, 5*time.Second, logger.With("component", "metrics"))
	schedules := map[string]syncengine.Schedule{}
	for name, f := range cfg.Flows {
		s, err := config.ParseSchedule(f.Schedule)
		if err != nil {
			return fmt.Errorf("flow %q: schedule: %w", name, err)
		}
		schedules[name] = s
	}
	sched := rt.engine.NewScheduler(schedules)
	var srv *observe.Server
	if listen := cfg.HTTP.Listen; listen != "" {
		hlog := logger.With("component", "http")
		var err error
		srv, err = observe.Serve(listen, observe.Handler(metrics.Registry(), observe.Checks{DB: rt.store, SchedulerRunning: sched.Running}, hlog), hlog)
		if err != nil {
			return fmt.Errorf("demo --keep-running: %w (choose another address with --http-listen)", err)
		}
	}
	fmt.Fprintln(out, "The simulators, the database and the flows (on their schedules) stay up until Ctrl-C.")
	if srv != nil {
		fmt.Fprintf(out, "Health and metrics: http://%[1]s/healthz  http://%[1]s/readyz  http://%[1]s/metrics\n", srv.Addr())
	}
	err := sched.Run(ctx)
	if srv != nil {
		sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), shutdownGrace)
		defer cancel()
		if serr := srv.Shutdown(sctx); serr != nil {
			logger.Warn("stopping the http listener", "error", serr)
		}
	}
	if err != nil && ctx.Err() == nil {
		return err
	}
	return nil
}

// runDemoFlows runs every flow once, in demo.Flows order. When every run succeeded it runs
// them all a second time, to show that a run converges: the second pass (again) writes
// nothing.
func runDemoFlows(ctx context.Context, eng *syncengine.Engine) (results, again []*syncengine.Result, err error) {
	pass := func() ([]*syncengine.Result, error) {
		var rs []*syncengine.Result
		for _, name := range demo.Flows {
			res, err := eng.RunFlow(ctx, name, syncengine.RunOptions{Trigger: syncengine.TriggerOnce})
			if err != nil {
				return nil, err
			}
			rs = append(rs, res)
		}
		return rs, nil
	}
	if results, err = pass(); err != nil {
		return nil, nil, err
	}
	if exitFor(results) != nil {
		return results, nil, nil
	}
	if again, err = pass(); err != nil {
		return nil, nil, err
	}
	return results, again, nil
}

func plural(n int, noun string) string {
	if n == 1 {
		return "1 " + noun
	}
	return fmt.Sprintf("%d %ss", n, noun)
}
