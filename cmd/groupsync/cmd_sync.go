package main

import (
	"context"
	"errors"

	"github.com/spf13/cobra"
)

// errNotAvailable is what the commands of the sync engine say until it lands.
var errNotAvailable = errors.New("not available yet: arrives with the sync engine")

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

func runSync(_ context.Context, _ *app, _ syncOptions) error { return errNotAvailable }
