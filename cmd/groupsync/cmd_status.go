package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/groupsync/groupsync/config"
	"github.com/groupsync/groupsync/state"
)

// statusOptions are the flags of `groupsync status`.
type statusOptions struct {
	output string
	// failures bounds the failing changes listed.
	failures int
}

func newStatusCommand(a *app) *cobra.Command {
	opts := statusOptions{output: "table", failures: 10}
	cmd := &cobra.Command{
		Use:   "status",
		Short: "Show each flow's last runs and pending changes",
		Long: `status shows, for every flow, its last run (outcome, counts, when) and its next scheduled
run, the runs blocked waiting for approval with the command that approves each, the changes
still failing (most attempted first), and each system's mirrored record counts and last
complete pull. It only reads the mirror; it never contacts the systems.`,
		Args: usageArgs(cobra.NoArgs),
		RunE: func(cmd *cobra.Command, _ []string) error {
			if opts.output != "table" && opts.output != "json" {
				return usageError("--output %q: use table or json", opts.output)
			}
			if opts.failures < 0 {
				return usageError("--failures %d: must be 0 or more", opts.failures)
			}
			return runStatus(cmd.Context(), a, opts)
		},
	}
	cmd.Flags().StringVarP(&opts.output, "output", "o", opts.output, "output format: table or json")
	cmd.Flags().IntVar(&opts.failures, "failures", opts.failures, "how many failing changes to list")
	return cmd
}

// statusReport is what status prints; its JSON form is the --output json contract.
type statusReport struct {
	GeneratedAt      time.Time               `json:"generated_at"`
	Flows            []flowStatus            `json:"flows"`
	PendingApprovals []state.PendingApproval `json:"pending_approvals"`
	FailingChanges   []state.Failure         `json:"failing_changes"`
	Systems          []systemStatus          `json:"systems"`
}

type flowStatus struct {
	Name     string   `json:"name"`
	Source   string   `json:"source,omitempty"`
	Targets  []string `json:"targets,omitempty"`
	Schedule string   `json:"schedule,omitempty"`
	// Configured is false for a flow that has runs in the mirror but is no longer in the
	// configuration.
	Configured bool       `json:"configured"`
	NextRun    *time.Time `json:"next_run,omitempty"`
	// NextRunApprox is true for @every schedules: the daemon counts the interval from its own
	// start, so the next run is at the latest NextRun.
	NextRunApprox bool        `json:"next_run_approx,omitempty"`
	LastRun       *runSummary `json:"last_run,omitempty"`
	LastSuccessAt *time.Time  `json:"last_success_at,omitempty"`
	// Paused is the pause in force (groupsync pause, or a revert): the flow's runs do
	// nothing until groupsync resume.
	Paused *state.Pause `json:"paused,omitempty"`
}

type runSummary struct {
	ID            int64      `json:"id"`
	Status        string     `json:"status"`
	Trigger       string     `json:"trigger"`
	StartedAt     time.Time  `json:"started_at"`
	FinishedAt    *time.Time `json:"finished_at,omitempty"`
	Applied       int64      `json:"applied"`
	Failed        int64      `json:"failed"`
	Skipped       int64      `json:"skipped"`
	Blocked       int64      `json:"blocked"`
	Planned       int64      `json:"planned"`
	Error         string     `json:"error,omitempty"`
	BlockedReason string     `json:"blocked_reason,omitempty"`
	// RejectedBy and RejectReason say who cleared the run's block without pushing, and why.
	RejectedBy   string `json:"rejected_by,omitempty"`
	RejectReason string `json:"reject_reason,omitempty"`
}

type systemStatus struct {
	Name               string     `json:"name"`
	Kind               string     `json:"kind"`
	Groups             int64      `json:"groups"`
	Accounts           int64      `json:"accounts"`
	Memberships        int64      `json:"memberships"`
	LastCompletePullAt *time.Time `json:"last_complete_pull_at,omitempty"`
}

func runStatus(ctx context.Context, a *app, opts statusOptions) error {
	cfg, logger, err := a.setup()
	if err != nil {
		return err
	}
	store, err := state.Open(ctx, cfg.Database.URL.Reveal(), state.Options{
		Schema: cfg.Database.Schema, MaxConns: 2, Logger: logger,
	})
	if err != nil {
		return err
	}
	defer store.Close()
	// status only reads: a schema behind this build is reported, not migrated.
	cur, latest, err := store.MigrationStatus(ctx)
	if err != nil {
		return err
	}
	if cur < latest {
		return fmt.Errorf("schema %s is at version %d, this build reads version %d: run groupsync migrate", cfg.Database.Schema, cur, latest)
	}
	rep, err := buildStatus(ctx, store, cfg, opts.failures, time.Now())
	if err != nil {
		return err
	}
	if opts.output == "json" {
		enc := json.NewEncoder(a.env.stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(rep)
	}
	printStatus(a.env.stdout, rep, time.Now())
	return nil
}

// buildStatus reads everything status shows from the mirror.
func buildStatus(ctx context.Context, store *state.Store, cfg *config.Config, failures int, now time.Time) (*statusReport, error) {
	last, err := store.LastRuns(ctx)
	if err != nil {
		return nil, err
	}
	successes, err := store.LastSuccesses(ctx)
	if err != nil {
		return nil, err
	}
	pending, err := store.PendingApprovals(ctx)
	if err != nil {
		return nil, err
	}
	var failing []state.Failure
	if failures > 0 {
		if failing, err = store.RecentFailures(ctx, failures); err != nil {
			return nil, err
		}
	}
	systems, err := store.SystemCounts(ctx)
	if err != nil {
		return nil, err
	}
	pauses, err := store.ActivePauses(ctx)
	if err != nil {
		return nil, err
	}

	rep := &statusReport{GeneratedAt: now.UTC(), PendingApprovals: pending, FailingChanges: failing,
		Flows: []flowStatus{}, Systems: []systemStatus{}}
	if rep.PendingApprovals == nil {
		rep.PendingApprovals = []state.PendingApproval{}
	}
	if rep.FailingChanges == nil {
		rep.FailingChanges = []state.Failure{}
	}
	lastByFlow := map[string]state.Run{}
	for _, r := range last {
		lastByFlow[r.Flow] = r
	}
	names := slices.Collect(maps.Keys(cfg.Flows))
	for name := range lastByFlow {
		if _, ok := cfg.Flows[name]; !ok {
			names = append(names, name)
		}
	}
	slices.Sort(names)
	for _, name := range names {
		fs := flowStatus{Name: name}
		if f, ok := cfg.Flows[name]; ok {
			fs.Configured = true
			fs.Source, fs.Targets, fs.Schedule = f.Source, f.Targets, f.Schedule
			if sched, err := config.ParseSchedule(f.Schedule); err == nil {
				next := sched.Next(now).UTC()
				fs.NextRun = &next
				fs.NextRunApprox = strings.HasPrefix(strings.TrimSpace(f.Schedule), "@every")
			}
		}
		if r, ok := lastByFlow[name]; ok {
			fs.LastRun = summarizeRun(r)
		}
		if p, ok := pauses[name]; ok {
			fs.Paused = &p
			// A paused flow's next tick does nothing.
			fs.NextRun = nil
		}
		if at, ok := successes[name]; ok {
			at = at.UTC()
			fs.LastSuccessAt = &at
		}
		rep.Flows = append(rep.Flows, fs)
	}
	for _, s := range systems {
		rep.Systems = append(rep.Systems, systemStatus{Name: s.Name, Kind: s.Kind, Groups: s.Groups,
			Accounts: s.Accounts, Memberships: s.Memberships, LastCompletePullAt: s.LastCompletePullAt})
	}
	return rep, nil
}

// summarizeRun folds a run's per-change counters (keys target.operation.status, as the
// engine records them) into totals by status.
func summarizeRun(r state.Run) *runSummary {
	rs := &runSummary{ID: r.ID, Status: r.Status, Trigger: r.Trigger, StartedAt: r.StartedAt.UTC(),
		FinishedAt: r.FinishedAt, Error: r.Error, BlockedReason: r.BlockedReason,
		RejectedBy: r.RejectedBy, RejectReason: r.RejectReason}
	for key, n := range r.Counts {
		// System names may hold dots; the status is the last segment and the operation the
		// one before it, so count from the right.
		i := strings.LastIndexByte(key, '.')
		if i < 0 || strings.LastIndexByte(key[:i], '.') < 0 {
			continue // a run-level counter such as source_groups
		}
		switch key[i+1:] {
		case state.ChangeApplied:
			rs.Applied += n
		case state.ChangeFailed, state.ChangeInFlight:
			rs.Failed += n
		case state.ChangeSkipped:
			rs.Skipped += n
		case state.ChangeBlocked:
			rs.Blocked += n
		case state.ChangePlanned:
			rs.Planned += n
		}
	}
	return rs
}

// printStatus writes the table form.
func printStatus(w io.Writer, rep *statusReport, now time.Time) {
	printFlowTable(w, rep.Flows, now)
	printFlowNotes(w, rep.Flows, now)
	fmt.Fprintln(w)
	printPendingApprovals(w, rep.PendingApprovals, now)
	fmt.Fprintln(w)
	printFailingChanges(w, rep.FailingChanges)
	fmt.Fprintln(w)
	printSystemTable(w, rep.Systems, now)
}

// printFlowTable writes one row per flow: its route, its last run and its next run.
func printFlowTable(w io.Writer, flows []flowStatus, now time.Time) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "FLOW\tSOURCE → TARGETS\tLAST RUN\tSTATUS\tWHEN\tAPPLIED\tFAILED\tSKIPPED\tBLOCKED\tNEXT RUN")
	for _, f := range flows {
		route := "(not configured)"
		if f.Configured {
			route = f.Source + " → " + strings.Join(f.Targets, ", ")
		}
		next := nextRunCell(f, now)
		if r := f.LastRun; r != nil {
			fmt.Fprintf(tw, "%s\t%s\t%d\t%s\t%s\t%d\t%d\t%d\t%d\t%s\n", f.Name, route, r.ID, r.Status,
				stamp(r.StartedAt, now), r.Applied, r.Failed, r.Skipped, r.Blocked, next)
		} else {
			fmt.Fprintf(tw, "%s\t%s\t-\tnever run\t-\t-\t-\t-\t-\t%s\n", f.Name, route, next)
		}
	}
	if len(flows) == 0 {
		fmt.Fprintln(tw, "(no flows configured)")
	}
	_ = tw.Flush()
}

// nextRunCell is a flow's NEXT RUN cell: "by" marks an @every schedule's latest time.
func nextRunCell(f flowStatus, now time.Time) string {
	next := "-"
	if f.Paused != nil {
		next = "paused"
	}
	if f.NextRun != nil {
		next = stamp(*f.NextRun, now)
		if f.NextRunApprox {
			next = "by " + next
		}
	}
	return next
}

// printFlowNotes writes, under the flow table, what its cells cannot hold: last runs'
// errors, pauses and rejections.
func printFlowNotes(w io.Writer, flows []flowStatus, now time.Time) {
	for _, f := range flows {
		if r := f.LastRun; r != nil && r.Error != "" {
			fmt.Fprintf(w, "  %s run %d error: %s\n", f.Name, r.ID, r.Error)
		}
		if p := f.Paused; p != nil {
			fmt.Fprintf(w, "  %s PAUSED since %s by %s: %s; resume with groupsync resume %s\n",
				f.Name, stamp(p.PausedAt, now), p.PausedBy, p.Reason, f.Name)
		}
		if r := f.LastRun; r != nil && r.RejectedBy != "" {
			fmt.Fprintf(w, "  %s run %d rejected by %s: %s (nothing of it was pushed)\n", f.Name, r.ID, r.RejectedBy, r.RejectReason)
		}
	}
}

// printPendingApprovals writes the blocked runs with the commands that approve or reject each.
func printPendingApprovals(w io.Writer, pending []state.PendingApproval, now time.Time) {
	if len(pending) == 0 {
		fmt.Fprintln(w, "No runs awaiting approval.")
		return
	}
	fmt.Fprintf(w, "Runs awaiting approval (%d): nothing of these was pushed.\n", len(pending))
	for _, p := range pending {
		fmt.Fprintf(w, "  run %d, flow %s, %s, %d changes held\n    reason:  %s\n    approve: %s\n    reject:  %s\n",
			p.RunID, p.Flow, stamp(p.StartedAt, now), p.BlockedChanges, p.BlockedReason, p.ApproveCommand, p.RejectCommand)
	}
}

// printFailingChanges writes the changes still failing, as the mirror orders them.
func printFailingChanges(w io.Writer, failing []state.Failure) {
	if len(failing) == 0 {
		fmt.Fprintln(w, "No failed changes in the last 7 days.")
		return
	}
	fmt.Fprintln(w, "Failing changes (last 7 days, most attempted first):")
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "  CHANGE\tRUN\tFLOW\tTARGET\tOPERATION\tGROUP\tMEMBER\tATTEMPTS\tERROR")
	for _, f := range failing {
		member := f.AccountEmail
		if member == "" {
			member = "-"
		}
		fmt.Fprintf(tw, "  %d\t%d\t%s\t%s\t%s\t%s\t%s\t%d\t%s\n", f.ChangeID, f.RunID, f.Flow, f.TargetSystem,
			f.Operation, f.Group, member, f.Attempts, clip(f.LastError, 100))
	}
	_ = tw.Flush()
}

// printSystemTable writes each system's mirrored record counts and last complete pull.
func printSystemTable(w io.Writer, systems []systemStatus, now time.Time) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "SYSTEM\tKIND\tGROUPS\tACCOUNTS\tMEMBERSHIPS\tLAST COMPLETE PULL")
	for _, s := range systems {
		pulled := "never"
		if s.LastCompletePullAt != nil {
			pulled = stamp(*s.LastCompletePullAt, now)
		}
		fmt.Fprintf(tw, "%s\t%s\t%d\t%d\t%d\t%s\n", s.Name, s.Kind, s.Groups, s.Accounts, s.Memberships, pulled)
	}
	if len(systems) == 0 {
		fmt.Fprintln(tw, "(no system pulled yet)")
	}
	_ = tw.Flush()
}

// stamp shows a time in UTC with how far it is from now.
func stamp(t, now time.Time) string {
	d := now.Sub(t)
	rel := "ago"
	if d < 0 {
		d, rel = -d, "from now"
	}
	var amount string
	switch {
	case d < time.Minute:
		amount = fmt.Sprintf("%ds", int(d.Seconds()))
	case d < time.Hour:
		amount = fmt.Sprintf("%dm", int(d.Minutes()))
	case d < 48*time.Hour:
		amount = fmt.Sprintf("%dh", int(d.Hours()))
	default:
		amount = fmt.Sprintf("%dd", int(d.Hours()/24))
	}
	return fmt.Sprintf("%s (%s %s)", t.UTC().Format("2006-01-02 15:04Z"), amount, rel)
}

// clip shortens s to n runes on one line, for table cells.
func clip(s string, n int) string {
	s = strings.Join(strings.Fields(s), " ")
	if r := []rune(s); len(r) > n {
		return string(r[:n-1]) + "…"
	}
	return s
}
