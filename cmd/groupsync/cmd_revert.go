package main

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"

	"github.com/spf13/cobra"

	"github.com/groupsync/groupsync/state"
	"github.com/groupsync/groupsync/syncengine"
)

// revertOptions are the flags and argument of `groupsync revert`.
type revertOptions struct {
	run    string
	dryRun bool
	by     string
}

func newRevertCommand(a *app) *cobra.Command {
	var opts revertOptions
	cmd := &cobra.Command{
		Use:   "revert RUN",
		Short: "Plan the undo of a run's applied changes, and pause its flow",
		Long: `revert plans the inverse of run RUN's applied changes: members it removed are added back,
members it added are removed, groups it created are deleted or archived as the flow's
delete_groups says (left under never), groups it renamed or updated get their previous
name, description and visibility back. The targets are pulled first: what moved since (a
member re-added or removed by a later run, a group renamed again, an account or group gone)
is not reverted and is listed with the reason. The plan is stored as a run of trigger
revert that the flow's limits guard like any plan; carry it out with groupsync apply.

A stored revert pauses the flow: its scheduled, once and triggered runs do nothing until
groupsync resume FLOW, so the next run does not redo what the revert undoes while the
source still says so. --dry-run prints the plan without storing an approvable one and
pauses nothing.`,
		Args: func(_ *cobra.Command, args []string) error {
			if len(args) != 1 {
				return usageError("revert takes one argument, the run id (see groupsync runs), got %d", len(args))
			}
			return nil
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			opts.run = args[0]
			return runRevert(cmd.Context(), a, opts)
		},
	}
	cmd.Flags().BoolVar(&opts.dryRun, "dry-run", false, "print the revert's plan; store nothing to apply and pause nothing")
	cmd.Flags().StringVar(&opts.by, "by", "", "who asks for the revert, recorded with the pause (default: the operating-system user @ host)")
	return cmd
}

func runRevert(ctx context.Context, a *app, opts revertOptions) error {
	id, err := strconv.ParseInt(opts.run, 10, 64)
	if err != nil || id <= 0 {
		return usageError("revert: run id %q is not a positive integer (see groupsync runs)", opts.run)
	}
	rt, err := a.openRuntime(ctx, runtimeHooks{})
	if err != nil {
		return err
	}
	defer rt.Close()
	res, err := rt.engine.Revert(ctx, id, opts.dryRun, a.operator(opts.by))
	if err != nil {
		return err
	}
	w := a.env.stdout
	fmt.Fprintf(w, "Revert of run %d:\n", id)
	if err := printPlan(ctx, w, rt.store, res); err != nil {
		return err
	}
	printSummary(w, []*syncengine.Result{res})
	switch {
	case res.Status == state.RunPlanned || res.Status == state.RunBlocked:
		fmt.Fprintf(w, "apply with: groupsync apply %d%s\n", res.RunID, map[bool]string{true: " --allow-deletes"}[res.Status == state.RunBlocked])
	case res.Status == state.RunDryRun:
		fmt.Fprintf(w, "dry run: nothing stored to apply, flow %s not paused; without --dry-run the plan is stored for groupsync apply\n", res.Flow)
	}
	if p := res.Paused; p != nil {
		fmt.Fprintf(w, "flow %s is paused (by %s: %s): its runs do nothing until groupsync resume %s\n", p.Flow, p.PausedBy, p.Reason, p.Flow)
	}
	return exitFor([]*syncengine.Result{res})
}

// pauseOptions are the flags and argument of `groupsync pause` and `groupsync resume`.
type pauseOptions struct {
	flow   string
	reason string
	by     string
}

func newPauseCommand(a *app) *cobra.Command {
	var opts pauseOptions
	cmd := &cobra.Command{
		Use:   "pause FLOW",
		Short: "Stop a flow's runs until it is resumed",
		Long: `pause stops flow FLOW: its scheduled, once and triggered runs do nothing (they say the flow
is paused) until groupsync resume FLOW. A run in flight finishes. Previews (plan,
--dry-run) and applying a revert still work. Who (--by), when and why (--reason) are
recorded and shown by groupsync status.`,
		Args: flowArg("pause"),
		RunE: func(cmd *cobra.Command, args []string) error {
			opts.flow = args[0]
			return runPause(cmd.Context(), a, opts, true)
		},
	}
	cmd.Flags().StringVar(&opts.reason, "reason", "", "why the flow is paused, recorded with the pause")
	cmd.Flags().StringVar(&opts.by, "by", "", "who pauses it (default: the operating-system user @ host)")
	return cmd
}

func newResumeCommand(a *app) *cobra.Command {
	var opts pauseOptions
	cmd := &cobra.Command{
		Use:   "resume FLOW",
		Short: "Let a paused flow run again",
		Long: `resume ends the pause of flow FLOW (set by groupsync pause or by a revert): its next scheduled
run plans from the source again. After a revert, resume once the source no longer says what
the reverted run did (or preview with groupsync plan --flow FLOW first: a paused flow can
be planned), or the next run redoes it.`,
		Args: flowArg("resume"),
		RunE: func(cmd *cobra.Command, args []string) error {
			opts.flow = args[0]
			return runPause(cmd.Context(), a, opts, false)
		},
	}
	cmd.Flags().StringVar(&opts.by, "by", "", "who resumes it (default: the operating-system user @ host)")
	return cmd
}

func flowArg(verb string) cobra.PositionalArgs {
	return func(_ *cobra.Command, args []string) error {
		if len(args) != 1 {
			return usageError("%s takes one argument, the flow name (see groupsync status), got %d", verb, len(args))
		}
		return nil
	}
}

// runPause pauses or resumes a configured flow. Like reject, it writes only the mirror.
func runPause(ctx context.Context, a *app, opts pauseOptions, pause bool) error {
	cfg, logger, err := a.setup()
	if err != nil {
		return err
	}
	if _, ok := cfg.Flows[opts.flow]; !ok {
		return usageError("flow %q is not configured (see groupsync status)", opts.flow)
	}
	store, err := state.Open(ctx, cfg.Database.URL.Reveal(), state.Options{Schema: cfg.Database.Schema, MaxConns: 2, Logger: logger})
	if err != nil {
		return err
	}
	defer store.Close()
	if _, err := store.Migrate(ctx); err != nil {
		return fmt.Errorf("migrate schema %s: %w", cfg.Database.Schema, err)
	}
	who, w := a.operator(opts.by), a.env.stdout
	if !pause {
		p, err := store.ResumeFlow(ctx, opts.flow, who)
		if errors.Is(err, state.ErrNotPaused) {
			fmt.Fprintf(w, "flow %s is not paused: nothing to resume\n", opts.flow)
			return nil
		}
		if err != nil {
			return err
		}
		logger.Info("flow resumed", "flow", p.Flow, "resumed_by", who, "paused_by", p.PausedBy, "reason", p.Reason)
		fmt.Fprintf(w, "flow %s resumed by %s (paused by %s at %s: %s); its next run plans from the source again\n",
			p.Flow, who, p.PausedBy, p.PausedAt.UTC().Format("2006-01-02 15:04:05Z"), p.Reason)
		return nil
	}
	reason := strings.TrimSpace(opts.reason)
	if reason == "" {
		reason = "no reason given"
	}
	p, created, err := store.PauseFlow(ctx, opts.flow, who, reason, 0)
	if err != nil {
		return err
	}
	if !created {
		fmt.Fprintf(w, "flow %s is already paused (by %s at %s: %s)\n", p.Flow, p.PausedBy, p.PausedAt.UTC().Format("2006-01-02 15:04:05Z"), p.Reason)
		return nil
	}
	logger.Info("flow paused", "flow", p.Flow, "paused_by", who, "reason", reason)
	fmt.Fprintf(w, "flow %s paused by %s: its runs do nothing until groupsync resume %s\n", p.Flow, who, p.Flow)
	return nil
}
