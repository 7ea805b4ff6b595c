package main

import (
	"context"
	"fmt"
	"os"
	"os/user"
	"strconv"
	"strings"

	"github.com/spf13/cobra"

	"github.com/groupsync/groupsync/state"
)

// rejectOptions are the flags and argument of `groupsync reject`.
type rejectOptions struct {
	run    string
	reason string
	by     string
}

func newRejectCommand(a *app) *cobra.Command {
	var opts rejectOptions
	cmd := &cobra.Command{
		Use:   "reject RUN",
		Short: "Clear a blocked run without pushing it",
		Long: `reject clears the block of run RUN, which the guard stopped: nothing of its plan is pushed,
it leaves the runs awaiting approval (status, pending_approvals and the
groupsync_runs_awaiting_approval gauge), and the rejection is recorded with the run: who
(--by, else the operating-system user), when, and why (--reason). Its changes stay stored
as blocked, as the record of what was refused. The flow's next run plans afresh.`,
		Args: func(_ *cobra.Command, args []string) error {
			if len(args) != 1 {
				return usageError("reject takes one argument, the run id (see groupsync status), got %d", len(args))
			}
			return nil
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			opts.run = args[0]
			return runReject(cmd.Context(), a, opts)
		},
	}
	cmd.Flags().StringVar(&opts.reason, "reason", "", "why the run is rejected, recorded with it")
	cmd.Flags().StringVar(&opts.by, "by", "", "who rejects it (default: the operating-system user @ host)")
	return cmd
}

func runReject(ctx context.Context, a *app, opts rejectOptions) error {
	id, err := strconv.ParseInt(opts.run, 10, 64)
	if err != nil || id <= 0 {
		return usageError("reject: run id %q is not a positive integer (see groupsync status)", opts.run)
	}
	cfg, logger, err := a.setup()
	if err != nil {
		return err
	}
	// A rejection only writes the run's row: it needs the mirror, not the systems' credentials.
	store, err := state.Open(ctx, cfg.Database.URL.Reveal(), state.Options{Schema: cfg.Database.Schema, MaxConns: 2, Logger: logger})
	if err != nil {
		return err
	}
	defer store.Close()
	if applied, err := store.Migrate(ctx); err != nil {
		return fmt.Errorf("migrate schema %s: %w", cfg.Database.Schema, err)
	} else if len(applied) > 0 {
		logger.Info("migrations applied", "schema", cfg.Database.Schema, "versions", applied)
	}
	r, err := store.RejectRun(ctx, id, a.operator(opts.by), strings.TrimSpace(opts.reason))
	if err != nil {
		return err
	}
	logger.Info("run rejected: its block is cleared and nothing of it was pushed", "run_id", r.ID, "flow", r.Flow,
		"rejected_by", r.RejectedBy, "reason", r.RejectReason)
	fmt.Fprintf(a.env.stdout, "run %d of flow %s rejected by %s at %s: nothing of it was pushed.\n",
		r.ID, r.Flow, r.RejectedBy, r.RejectedAt.UTC().Format("2006-01-02 15:04:05Z"))
	return nil
}

// operator names who acts on a run, for the runs table: by when given, else the user
// ($USER, else the operating-system account) @ host.
func (a *app) operator(by string) string {
	if by = strings.TrimSpace(by); by != "" {
		return by
	}
	name := ""
	if v, ok := a.env.lookup.Lookup("USER"); ok {
		name = v
	}
	if name == "" {
		if u, err := user.Current(); err == nil {
			name = u.Username
		}
	}
	if name == "" {
		name = "unknown"
	}
	if host, err := os.Hostname(); err == nil && host != "" {
		name += "@" + host
	}
	return name
}
