package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/groupsync/groupsync/state"
)

// runsOptions are the flags of `groupsync runs`.
type runsOptions struct {
	flow   string
	limit  int
	output string
}

func newRunsCommand(a *app) *cobra.Command {
	opts := runsOptions{limit: state.DefaultHistoryLimit, output: "table"}
	cmd := &cobra.Command{
		Use:   "runs",
		Short: "List past runs, newest first",
		Long: `runs lists the runs recorded in the mirror, newest first: flow, trigger, outcome, when and
how long, and the changes applied, failed, skipped, blocked and planned. ` + "`groupsync changes RUN`" + `
lists one run's changes. It only reads the mirror.`,
		Args: usageArgs(cobra.NoArgs),
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := checkOutput(opts.output); err != nil {
				return err
			}
			if opts.limit < 1 {
				return usageError("--limit %d: must be 1 or more", opts.limit)
			}
			return runRuns(cmd.Context(), a, opts)
		},
	}
	cmd.Flags().StringVar(&opts.flow, "flow", "", "only this flow's runs")
	cmd.Flags().IntVar(&opts.limit, "limit", opts.limit, "how many runs to list")
	cmd.Flags().StringVarP(&opts.output, "output", "o", opts.output, "output format: table or json")
	return cmd
}

func checkOutput(output string) error {
	if output != "table" && output != "json" {
		return usageError("--output %q: use table or json", output)
	}
	return nil
}

// openMirror opens the mirror for a command that only reads it: a schema behind this build
// is reported, not migrated.
func (a *app) openMirror(ctx context.Context) (*state.Store, error) {
	cfg, logger, err := a.setup()
	if err != nil {
		return nil, err
	}
	store, err := state.Open(ctx, cfg.Database.URL.Reveal(), state.Options{
		Schema: cfg.Database.Schema, MaxConns: 2, Logger: logger,
	})
	if err != nil {
		return nil, err
	}
	cur, latest, err := store.MigrationStatus(ctx)
	if err != nil {
		store.Close()
		return nil, err
	}
	if cur < latest {
		store.Close()
		return nil, fmt.Errorf("schema %s is at version %d, this build reads version %d: run groupsync migrate", cfg.Database.Schema, cur, latest)
	}
	return store, nil
}

// runRecord is one run as `runs --output json` prints it.
type runRecord struct {
	Flow string `json:"flow"`
	runSummary
	DryRun bool `json:"dry_run"`
	// DurationS is how long the run took, in seconds; absent while it runs.
	DurationS  *float64   `json:"duration_s,omitempty"`
	ApprovedAt *time.Time `json:"approved_at,omitempty"`
	ApprovedBy string     `json:"approved_by,omitempty"`
	RejectedAt *time.Time `json:"rejected_at,omitempty"`
	// SupersededBy is the newer run of the flow that made this blocked run stale.
	SupersededBy int64 `json:"superseded_by,omitempty"`
}

// note is the table's one-line account of how a run ended beyond its status: its error,
// who rejected or approved its block, what superseded it, or why it was blocked.
func (r runRecord) note() string {
	switch {
	case r.Error != "":
		return r.Error
	case r.RejectedBy != "":
		return "rejected by " + r.RejectedBy + ": " + dash(r.RejectReason)
	case r.ApprovedBy != "":
		return "approved by " + r.ApprovedBy
	case r.SupersededBy != 0:
		return fmt.Sprintf("superseded by run %d", r.SupersededBy)
	case r.BlockedReason != "":
		return r.BlockedReason
	}
	return "-"
}

func newRunRecord(r state.Run) runRecord {
	rec := runRecord{Flow: r.Flow, runSummary: *summarizeRun(r), DryRun: r.DryRun, ApprovedAt: r.ApprovedAt,
		ApprovedBy: r.ApprovedBy, RejectedAt: r.RejectedAt, SupersededBy: r.SupersededBy}
	if r.FinishedAt != nil {
		d := r.FinishedAt.Sub(r.StartedAt).Seconds()
		rec.DurationS = &d
	}
	return rec
}

func runRuns(ctx context.Context, a *app, opts runsOptions) error {
	store, err := a.openMirror(ctx)
	if err != nil {
		return err
	}
	defer store.Close()
	filter := state.RunFilter{Flow: opts.flow, Limit: opts.limit}
	if opts.output == "json" {
		arr := newJSONArray(a.env.stdout)
		if err := store.EachRun(ctx, filter, func(r state.Run) error { return arr.add(newRunRecord(r)) }); err != nil {
			return err
		}
		return arr.close()
	}
	now := time.Now()
	tw := tabwriter.NewWriter(a.env.stdout, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "RUN\tFLOW\tTRIGGER\tSTATUS\tSTARTED\tDURATION\tAPPLIED\tFAILED\tSKIPPED\tBLOCKED\tPLANNED\tNOTE")
	n := 0
	err = store.EachRun(ctx, filter, func(r state.Run) error {
		n++
		rec := newRunRecord(r)
		took := "-"
		if rec.DurationS != nil {
			took = (time.Duration(*rec.DurationS * float64(time.Second))).Round(100 * time.Millisecond).String()
		}
		_, err := fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%s\t%s\t%d\t%d\t%d\t%d\t%d\t%s\n", rec.ID, rec.Flow, rec.Trigger, rec.Status,
			stamp(rec.StartedAt, now), took, rec.Applied, rec.Failed, rec.Skipped, rec.Blocked, rec.Planned, clip(rec.note(), 80))
		return err
	})
	if err != nil {
		return err
	}
	if n == 0 {
		fmt.Fprintln(tw, "(no runs)")
	}
	return tw.Flush()
}

// jsonArray writes a JSON array one element at a time, so a listing streamed from the
// mirror is printed as it is read.
type jsonArray struct {
	w io.Writer
	n int
}

func newJSONArray(w io.Writer) *jsonArray { return &jsonArray{w: w} }

func (j *jsonArray) add(v any) error {
	b, err := json.MarshalIndent(v, "  ", "  ")
	if err != nil {
		return err
	}
	sep := ",\n  "
	if j.n == 0 {
		sep = "[\n  "
	}
	j.n++
	_, err = fmt.Fprintf(j.w, "%s%s", sep, b)
	return err
}

func (j *jsonArray) close() error {
	end := "\n]\n"
	if j.n == 0 {
		end = "[]\n"
	}
	_, err := io.WriteString(j.w, end)
	return err
}
