package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"strings"

	"github.com/sethvargo/go-envconfig"
	"github.com/spf13/cobra"

	"github.com/groupsync/groupsync/config"
)

// Exit codes.
const (
	exitOK      = 0
	exitFailure = 1
	// exitUsage is a bad command line: unknown command or flag, wrong arguments.
	exitUsage = 2
	// exitBlocked is for runs the guard stopped for approval (returned by the sync
	// commands), and only those: a system that could not be read is exitFailure.
	exitBlocked = 3
)

// exitError carries the process exit code for an error. A nil err means the command has
// already told the user what went wrong (e.g. `config validate` printed the problems).
type exitError struct {
	code int
	err  error
}

func (e *exitError) Error() string {
	if e.err == nil {
		return ""
	}
	return e.err.Error()
}

func (e *exitError) Unwrap() error { return e.err }

func usageError(format string, args ...any) error {
	return &exitError{code: exitUsage, err: fmt.Errorf(format, args...)}
}

// environment is what the process gives the CLI; tests pass their own.
type environment struct {
	stdout, stderr io.Writer
	lookup         envconfig.Lookuper
	// environ is the process environment as KEY=value entries, for warning about
	// GROUPSYNC_* variables nothing reads (config.UnknownEnv); nil in most tests.
	environ     []string
	stderrIsTTY bool
}

// app is the state shared by the commands: the environment and the persistent flags.
type app struct {
	env        environment
	configPath string
	logLevel   string
	logFormat  string
}

// run executes the command line and returns the process exit code.
func run(ctx context.Context, args []string, env environment) int {
	a := &app{env: env}
	root := newRootCommand(a)
	root.SetArgs(args)
	root.SetOut(env.stdout)
	root.SetErr(env.stderr)
	cmd, err := root.ExecuteContextC(ctx)
	if err == nil {
		return exitOK
	}
	code := exitFailure
	var ee *exitError
	if errors.As(err, &ee) {
		code = ee.code
	}
	if msg := err.Error(); msg != "" {
		fmt.Fprintln(env.stderr, "groupsync: "+msg)
	}
	if code == exitUsage {
		fmt.Fprintf(env.stderr, "Run '%s --help' for usage.\n", cmd.CommandPath())
	}
	return code
}

func newRootCommand(a *app) *cobra.Command {
	root := &cobra.Command{
		Use:   "groupsync",
		Short: "Keep groups and memberships in step across SaaS systems",
		Long: `groupsync keeps groups and their memberships consistent across SaaS systems
(Airtable Enterprise, DevRev, SelfCommunity, Socialcast). It pulls every system a flow
touches into a Postgres mirror, plans the changes that make the targets match the source,
stops when a plan removes more than the flow's limits allow, and pushes the rest under
each system's rate limit.

Start with:
  cp config.example.yaml groupsync.yaml   # then edit it
  groupsync config validate
  groupsync check                         # credentials and access, read-only
  groupsync migrate
  groupsync sync --once --dry-run

Exit codes: 0 ok, 1 failure, 2 usage error, 3 blocked by a safety limit.
A system that cannot be read (refused, DNS, TLS, timeout, credentials) is a failure (1);
3 is only the guard holding a plan for approval (groupsync apply RUN --allow-deletes) or
rejection (groupsync reject RUN).`,
		Args:          cobra.ArbitraryArgs,
		RunE:          groupCommand,
		SilenceUsage:  true,
		SilenceErrors: true,
		// --version prints what the version subcommand does, as operators try both.
		Version: versionLine(),
	}
	root.SetVersionTemplate("{{.Version}}\n")
	root.SetFlagErrorFunc(func(_ *cobra.Command, err error) error {
		return &exitError{code: exitUsage, err: err}
	})

	defaultConfig := config.DefaultPath
	if v, ok := a.env.lookup.Lookup("GROUPSYNC_CONFIG"); ok && v != "" {
		defaultConfig = v
	}
	pf := root.PersistentFlags()
	pf.StringVar(&a.configPath, "config", defaultConfig, "configuration file (env GROUPSYNC_CONFIG)")
	pf.StringVar(&a.logLevel, "log-level", "", "log level: debug, info, warn or error (default: log.level, env GROUPSYNC_LOG_LEVEL, else info)")
	pf.StringVar(&a.logFormat, "log-format", "", "log format: auto, json or text (default: log.format, env GROUPSYNC_LOG_FORMAT, else auto)")

	root.AddCommand(
		newMigrateCommand(a),
		newConfigCommand(a),
		newVersionCommand(a),
		newSyncCommand(a),
		newPlanCommand(a),
		newApplyCommand(a),
		newRejectCommand(a),
		newStatusCommand(a),
		newTriggerCommand(a),
		newDemoCommand(a),
		newCheckCommand(a),
		newRunsCommand(a),
		newChangesCommand(a),
		newRevertCommand(a),
		newPauseCommand(a),
		newResumeCommand(a),
		newHistoryCommand(a),
	)
	return root
}

// groupCommand is the RunE of commands that only hold subcommands: bare, it prints help;
// with an argument that is no subcommand, it is a usage error (cobra would print help and
// exit 0 otherwise).
func groupCommand(cmd *cobra.Command, args []string) error {
	if len(args) == 0 {
		return cmd.Help()
	}
	msg := fmt.Sprintf("unknown command %q for %q", args[0], cmd.CommandPath())
	// cobra only defaults the distance inside its own error path, which we replace.
	if cmd.SuggestionsMinimumDistance <= 0 {
		cmd.SuggestionsMinimumDistance = 2
	}
	if s := cmd.SuggestionsFor(args[0]); len(s) > 0 {
		msg += "; did you mean " + strings.Join(s, " or ") + "?"
	}
	return &exitError{code: exitUsage, err: errors.New(msg)}
}

// usageArgs makes a cobra argument check a usage error (exit 2).
func usageArgs(check cobra.PositionalArgs) cobra.PositionalArgs {
	return func(cmd *cobra.Command, args []string) error {
		if err := check(cmd, args); err != nil {
			return &exitError{code: exitUsage, err: err}
		}
		return nil
	}
}

// checkLogFlags refuses bad --log-level/--log-format values as usage errors.
func (a *app) checkLogFlags() error {
	if a.logLevel != "" && !slices.Contains([]string{"debug", "info", "warn", "error"}, a.logLevel) {
		return usageError("--log-level %q: use debug, info, warn or error", a.logLevel)
	}
	if a.logFormat != "" && !slices.Contains([]string{"auto", "json", "text"}, a.logFormat) {
		return usageError("--log-format %q: use auto, json or text", a.logFormat)
	}
	return nil
}

// loadConfig reads the configuration named by --config with the environment overlay. The
// log flags win over the file and the environment.
func (a *app) loadConfig() (*config.Config, error) {
	if err := a.checkLogFlags(); err != nil {
		return nil, err
	}
	cfg, err := config.Load(a.configPath, a.env.lookup)
	if err != nil {
		return nil, err
	}
	if a.logLevel != "" {
		cfg.Log.Level = a.logLevel
	}
	if a.logFormat != "" {
		cfg.Log.Format = a.logFormat
	}
	return cfg, nil
}

// setup loads the configuration and builds the process logger from it, the one place the
// log handler is chosen.
func (a *app) setup() (*config.Config, *slog.Logger, error) {
	cfg, err := a.loadConfig()
	if err != nil {
		return nil, nil, err
	}
	logger := newLogger(a.env.stderr, cfg.Log.Level, cfg.Log.Format, a.env.stderrIsTTY)
	for _, w := range config.UnknownEnv(a.env.environ, cfg) {
		logger.Warn(w)
	}
	return cfg, logger, nil
}

// setupFromEnv is setup for a process without a configuration file: the environment alone.
func (a *app) setupFromEnv() (*config.Config, *slog.Logger, error) {
	if err := a.checkLogFlags(); err != nil {
		return nil, nil, err
	}
	cfg, err := config.LoadEnv(a.env.lookup)
	if err != nil {
		return nil, nil, err
	}
	if a.logLevel != "" {
		cfg.Log.Level = a.logLevel
	}
	if a.logFormat != "" {
		cfg.Log.Format = a.logFormat
	}
	return cfg, newLogger(a.env.stderr, cfg.Log.Level, cfg.Log.Format, a.env.stderrIsTTY), nil
}
