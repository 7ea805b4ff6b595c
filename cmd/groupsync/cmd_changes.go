package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/groupsync/groupsync/state"
)

// changeStatuses are the statuses --status accepts, as the changes table records them.
var changeStatuses = []string{state.ChangePlanned, state.ChangeInFlight, state.ChangeApplied,
	state.ChangeFailed, state.ChangeSkipped, state.ChangeBlocked}

// defaultChangesLimit bounds `changes` unless --limit says otherwise: a run can hold
// thousands of changes, and past a few hundred SQL is the better tool.
const defaultChangesLimit = 200

// changesOptions are the flags and argument of `groupsync changes`.
type changesOptions struct {
	run    string
	status string
	limit  int
	output string
}

func newChangesCommand(a *app) *cobra.Command {
	opts := changesOptions{limit: defaultChangesLimit, output: "table"}
	cmd := &cobra.Command{
		Use:   "changes RUN",
		Short: "List one run's changes, with group names and member emails",
		Long: `changes lists the changes run RUN planned (see groupsync runs): target, operation, the group
by name and id, the member by email and id, status, reason, attempts and last error. It
only reads the mirror.`,
		Args: func(_ *cobra.Command, args []string) error {
			if len(args) != 1 {
				return usageError("changes takes one argument, the run id (see groupsync runs), got %d", len(args))
			}
			return nil
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			opts.run = args[0]
			if err := checkOutput(opts.output); err != nil {
				return err
			}
			if opts.status != "" && !slices.Contains(changeStatuses, opts.status) {
				return usageError("--status %q: use one of %s", opts.status, strings.Join(changeStatuses, ", "))
			}
			if opts.limit < 1 {
				return usageError("--limit %d: must be 1 or more", opts.limit)
			}
			return runChanges(cmd.Context(), a, opts)
		},
	}
	cmd.Flags().StringVar(&opts.status, "status", "", "only changes in this status: "+strings.Join(changeStatuses, ", "))
	cmd.Flags().IntVar(&opts.limit, "limit", opts.limit, "how many changes to list")
	cmd.Flags().StringVarP(&opts.output, "output", "o", opts.output, "output format: table or json")
	return cmd
}

// changeRecord is one change as `changes --output json` prints it.
type changeRecord struct {
	ID              int64  `json:"id"`
	RunID           int64  `json:"run_id"`
	Flow            string `json:"flow"`
	TargetSystem    string `json:"target_system"`
	Operation       string `json:"operation"`
	Group           string `json:"group"`
	SourceGroupID   string `json:"source_group_id,omitempty"`
	TargetGroupID   string `json:"target_group_id,omitempty"`
	Member          string `json:"member,omitempty"`
	SourceAccountID string `json:"source_account_id,omitempty"`
	TargetAccountID string `json:"target_account_id,omitempty"`
	Status          string `json:"status"`
	Reason          string `json:"reason,omitempty"`
	Attempts        int    `json:"attempts"`
	LastError       string `json:"last_error,omitempty"`
}

func newChangeRecord(d state.ChangeDetail) changeRecord {
	c := d.Change
	return changeRecord{ID: c.ID, RunID: c.RunID, Flow: c.Flow, TargetSystem: c.TargetSystem, Operation: c.Operation,
		Group: d.GroupName, SourceGroupID: c.SourceGroupID, TargetGroupID: c.TargetGroupID, Member: d.MemberEmail,
		SourceAccountID: c.SourceAccountID, TargetAccountID: c.TargetAccountID, Status: c.Status, Reason: c.Reason,
		Attempts: c.Attempts, LastError: c.LastError}
}

func runChanges(ctx context.Context, a *app, opts changesOptions) error {
	id, err := strconv.ParseInt(opts.run, 10, 64)
	if err != nil || id <= 0 {
		return usageError("changes: run id %q is not a positive integer (see groupsync runs)", opts.run)
	}
	store, err := a.openMirror(ctx)
	if err != nil {
		return err
	}
	defer store.Close()
	if _, err := store.GetRun(ctx, id); errors.Is(err, state.ErrNotFound) {
		return fmt.Errorf("no run %d (see groupsync runs)", id)
	} else if err != nil {
		return err
	}
	filter := state.ChangeFilter{RunID: id, Status: opts.status, Limit: opts.limit}
	if opts.output == "json" {
		arr := newJSONArray(a.env.stdout)
		err := store.EachChangeDetail(ctx, filter, func(d state.ChangeDetail) error { return arr.add(newChangeRecord(d)) })
		if err != nil {
			return err
		}
		return arr.close()
	}
	// One more than the limit says whether there is more than was shown.
	filter.Limit++
	shown, more := 0, false
	tw := tabwriter.NewWriter(a.env.stdout, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "CHANGE\tTARGET\tOPERATION\tGROUP\tGROUP ID\tMEMBER\tMEMBER ID\tSTATUS\tREASON\tATTEMPTS\tERROR")
	err = store.EachChangeDetail(ctx, filter, func(d state.ChangeDetail) error {
		if shown == opts.limit {
			more = true
			return nil
		}
		shown++
		r := newChangeRecord(d)
		_, err := fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%d\t%s\n", r.ID, r.TargetSystem, r.Operation,
			dash(r.Group), groupRef(d.Change), dash(r.Member), memberRef(d.Change), r.Status, dash(r.Reason), r.Attempts,
			dash(clip(r.LastError, 80)))
		return err
	})
	if err != nil {
		return err
	}
	if shown == 0 {
		fmt.Fprintln(tw, "(no changes)")
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	if more {
		printMore(a.env.stdout, id, opts.limit)
	}
	return nil
}

func printMore(w io.Writer, run int64, limit int) {
	fmt.Fprintf(w, "… more than %d changes: raise --limit, or SELECT * FROM changes WHERE run_id = %d\n", limit, run)
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// groupRef is the id a person finds the group by in the target, or, before the target
// group exists, the source group's.
func groupRef(c state.Change) string {
	switch {
	case c.TargetGroupID != "":
		return c.TargetGroupID
	case c.SourceGroupID != "":
		return c.SourceSystem + ":" + c.SourceGroupID
	}
	return "-"
}

// memberRef is the member's account id in the target, or, when it has none there (a
// no_account skip), in the source.
func memberRef(c state.Change) string {
	switch {
	case c.TargetAccountID != "":
		return c.TargetAccountID
	case c.SourceAccountID != "":
		return c.SourceSystem + ":" + c.SourceAccountID
	}
	return "-"
}
