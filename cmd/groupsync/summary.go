package main

import (
	"fmt"
	"io"
	"maps"
	"slices"
	"strings"
	"text/tabwriter"

	"github.com/groupsync/groupsync/state"
	"github.com/groupsync/groupsync/syncengine"
)

// printSummary writes the end-of-run table: one row per flow and target.
func printSummary(w io.Writer, results []*syncengine.Result) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "FLOW\tRUN\tSTATUS\tTARGET\tCREATED\tUPDATED\tDELETED\tADDED\tREMOVED\tSKIPPED\tFAILED\tBLOCKED\tPLANNED")
	for _, r := range results {
		targets := slices.Sorted(maps.Keys(r.Targets))
		if r.Status == syncengine.StatusPaused {
			fmt.Fprintf(tw, "%s\t-\t%s\t-\t0\t0\t0\t0\t0\t0\t0\t0\t0\n", r.Flow, r.Status)
			continue
		}
		if len(targets) == 0 {
			fmt.Fprintf(tw, "%s\t%d\t%s\t-\t0\t0\t0\t0\t0\t0\t0\t0\t0\n", r.Flow, r.RunID, r.Status)
		}
		for _, t := range targets {
			s := r.Targets[t]
			fmt.Fprintf(tw, "%s\t%d\t%s\t%s\t%d\t%d\t%d\t%d\t%d\t%d\t%d\t%d\t%d\n", r.Flow, r.RunID, r.Status, t,
				s.Created, s.Updated, s.Deleted, s.Added, s.Removed, s.Skipped, s.Failed, s.Blocked, s.Planned)
		}
	}
	_ = tw.Flush()
	for _, r := range results {
		for _, t := range slices.Sorted(maps.Keys(r.Targets)) {
			if reasons := r.Targets[t].Reasons; len(reasons) > 0 {
				var parts []string
				for _, k := range slices.Sorted(maps.Keys(reasons)) {
					parts = append(parts, fmt.Sprintf("%s=%d", k, reasons[k]))
				}
				fmt.Fprintf(w, "  %s → %s: %s\n", r.Flow, t, strings.Join(parts, ", "))
			}
		}
		if r.Status == state.RunBlocked {
			fmt.Fprintf(w, "  %s run %d BLOCKED: %s\n", r.Flow, r.RunID, r.BlockedReason)
		}
		if r.Status == syncengine.StatusPaused && r.Paused != nil {
			fmt.Fprintf(w, "  %s PAUSED: nothing pulled or pushed: %v\n", r.Flow, syncengine.PausedError(*r.Paused))
		}
		if r.Err != nil {
			fmt.Fprintf(w, "  %s run %d error: %v\n", r.Flow, r.RunID, r.Err)
		}
	}
}

// exitFor maps run outcomes to the process exit code: 1 when any run failed, partly
// failed or could not read a system (a blocked run whose target failed included), else 3
// when any was blocked by the guard, else 0.
func exitFor(results []*syncengine.Result) error {
	blocked, failed, interrupted := 0, 0, 0
	for _, r := range results {
		switch {
		case r.Status == state.RunInterrupted:
			interrupted++
		case r.Status == state.RunFailed, r.Status == state.RunPartial, r.Err != nil:
			failed++
		case r.Status == state.RunBlocked:
			blocked++
		}
	}
	switch {
	case interrupted > 0:
		// SIGTERM or Ctrl-C asked for it: not a failure, but the runs did not finish.
		return &exitError{code: exitFailure, err: fmt.Errorf("%d of %d runs interrupted by a signal before they finished; the next run carries on", interrupted, len(results))}
	case failed > 0:
		return &exitError{code: exitFailure, err: fmt.Errorf("%d of %d runs failed", failed, len(results))}
	case blocked > 0:
		return &exitError{code: exitBlocked, err: fmt.Errorf("%d of %d runs blocked by a safety limit; approve with groupsync apply RUN --allow-deletes or reject with groupsync reject RUN", blocked, len(results))}
	}
	return nil
}
