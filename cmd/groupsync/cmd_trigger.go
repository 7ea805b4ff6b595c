package main

import (
	"context"
	"errors"
	"fmt"
	"os/user"
	"time"

	"github.com/spf13/cobra"

	"github.com/groupsync/groupsync/state"
	"github.com/groupsync/groupsync/syncengine"
)

// triggerOptions are the flags of `groupsync trigger`.
type triggerOptions struct {
	wait    bool
	timeout time.Duration
	by      string
}

func newTriggerCommand(a *app) *cobra.Command {
	var opts triggerOptions
	cmd := &cobra.Command{
		Use:   "trigger FLOW",
		Short: "Ask the running daemon (any replica) to run a flow now",
		Long: `trigger stores a request to run FLOW now in the mirror; the first daemon replica that
polls (every 2s) claims it and runs the flow through the same pull, plan, guard and push
as a scheduled run (trigger manual). Pending requests of one flow are served by one run;
a flow already running is run again once that run ends. Nothing is exposed over HTTP: a
request needs the database, like every other command.

With --wait it waits for the run and exits as sync --once does (0 succeeded, 1 failed,
3 blocked); when no daemon claims the request within --timeout it exits 1.`,
		Args: usageArgs(cobra.ExactArgs(1)),
		RunE: func(cmd *cobra.Command, args []string) error {
			return runTrigger(cmd.Context(), a, args[0], opts)
		},
	}
	f := cmd.Flags()
	f.BoolVar(&opts.wait, "wait", false, "wait for the run and exit with its outcome")
	f.DurationVar(&opts.timeout, "timeout", 10*time.Minute, "with --wait: how long to wait for the run to end")
	f.StringVar(&opts.by, "by", "", "who asks, recorded with the request (default: the OS user)")
	return cmd
}

func runTrigger(ctx context.Context, a *app, flow string, opts triggerOptions) error {
	cfg, logger, err := a.setup()
	if err != nil {
		return err
	}
	if _, ok := cfg.Flows[flow]; !ok {
		return usageError("no flow %q in %s", flow, cfg.Path)
	}
	store, err := state.Open(ctx, cfg.Database.URL.Reveal(), state.Options{Schema: cfg.Database.Schema, MaxConns: 2, Logger: logger})
	if err != nil {
		return err
	}
	defer store.Close()
	// A paused flow's run would do nothing: say so now rather than queue a request that a
	// daemon refuses. (One paused after the request is refused by the daemon, with the reason.)
	if p, err := store.ActivePause(ctx, flow); err == nil {
		return &exitError{code: exitFailure, err: fmt.Errorf("nothing requested: %w", syncengine.PausedError(p))}
	} else if !errors.Is(err, state.ErrNotFound) {
		return err
	}
	by := opts.by
	if by == "" {
		by = osUser()
	}
	id, err := store.RequestRun(ctx, flow, by)
	if err != nil {
		return err
	}
	fmt.Fprintf(a.env.stdout, "run of flow %s requested (request %d, by %s); a running daemon starts it within seconds\n", flow, id, by)
	if !opts.wait {
		return nil
	}
	return waitForRequest(ctx, a, store, id, opts.timeout)
}

// waitForRequest polls the request until its run has finished, then exits as sync --once.
func waitForRequest(ctx context.Context, a *app, store *state.Store, id int64, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	for {
		r, err := store.GetRunRequest(ctx, id)
		if err != nil {
			return err
		}
		switch {
		case r.Outcome != "":
			return fmt.Errorf("request %d was not run: %s", id, r.Outcome)
		case r.RunID != 0:
			run, err := store.GetRun(ctx, r.RunID)
			if err != nil {
				return err
			}
			fmt.Fprintf(a.env.stdout, "run %d of flow %s: %s\n", run.ID, run.Flow, run.Status)
			return exitForStatus(run.Status, run.ID)
		}
		select {
		case <-ctx.Done():
			if errors.Is(ctx.Err(), context.DeadlineExceeded) {
				what := "no daemon claimed it"
				if r.ClaimedBy != "" {
					what = "replica " + r.ClaimedBy + " claimed it but its run has not ended"
				}
				return &exitError{code: exitFailure, err: fmt.Errorf("request %d: %s within %s: is `groupsync sync` running against this database?", id, what, timeout)}
			}
			return ctx.Err()
		case <-time.After(time.Second):
		}
	}
}

// exitForStatus maps a finished run's status to the exit codes of sync --once.
func exitForStatus(status string, runID int64) error {
	switch status {
	case state.RunFailed, state.RunPartial:
		return &exitError{code: exitFailure, err: fmt.Errorf("run %d %s", runID, status)}
	case state.RunBlocked:
		return &exitError{code: exitBlocked, err: fmt.Errorf("run %d blocked by a safety limit; approve with groupsync apply %d --allow-deletes", runID, runID)}
	}
	return nil
}

// osUser names who runs the command, for records of who asked.
func osUser() string {
	if u, err := user.Current(); err == nil && u.Username != "" {
		return u.Username
	}
	return "unknown"
}
