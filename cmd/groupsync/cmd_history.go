package main

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/groupsync/groupsync/state"
)

// historyOptions are the flags and argument of `groupsync history`.
type historyOptions struct {
	group  string
	system string
	since  string
	output string
}

func newHistoryCommand(a *app) *cobra.Command {
	opts := historyOptions{output: "table"}
	cmd := &cobra.Command{
		Use:   "history GROUP",
		Short: "Who joined or left a group, and its names, when, and through which run or pull",
		Long: `history prints the history of group GROUP (its id or its name, in every system that has it
unless --system says which), oldest first: each member who joined or left, each name and
visibility the group took, when, and whether a pull observed it or a run of groupsync wrote
it (with the run id). It is the membership_changes view and group_intervals; members_at
answers "who was in it at T". It only reads the mirror.`,
		Args: usageArgs(cobra.ExactArgs(1)),
		RunE: func(cmd *cobra.Command, args []string) error {
			opts.group = args[0]
			if err := checkOutput(opts.output); err != nil {
				return err
			}
			return runHistory(cmd.Context(), a, opts)
		},
	}
	cmd.Flags().StringVar(&opts.system, "system", "", "only the group in this system")
	cmd.Flags().StringVar(&opts.since, "since", "", "only changes since T: RFC 3339 (2026-11-30T09:00:00Z), a date (2026-11-30, UTC), or a duration ago (72h, 7d)")
	cmd.Flags().StringVarP(&opts.output, "output", "o", opts.output, "output format: table or json")
	return cmd
}

// parseSince reads --since: an instant, a UTC date, or a duration before now (Go syntax,
// plus whole days as Nd).
func parseSince(v string, now time.Time) (time.Time, error) {
	if v == "" {
		return time.Time{}, nil
	}
	if t, err := time.Parse(time.RFC3339, v); err == nil {
		return t, nil
	}
	if t, err := time.Parse(time.DateOnly, v); err == nil {
		return t, nil
	}
	if days, ok := strings.CutSuffix(v, "d"); ok {
		if n, err := strconv.Atoi(days); err == nil && n >= 0 {
			return now.AddDate(0, 0, -n), nil
		}
	}
	if d, err := time.ParseDuration(v); err == nil && d >= 0 {
		return now.Add(-d), nil
	}
	return time.Time{}, usageError("--since %q: use an RFC 3339 time (2026-11-30T09:00:00Z), a date (2026-11-30) or a duration ago (72h, 7d)", v)
}

func runHistory(ctx context.Context, a *app, opts historyOptions) error {
	since, err := parseSince(opts.since, time.Now())
	if err != nil {
		return err
	}
	store, err := a.openMirror(ctx)
	if err != nil {
		return err
	}
	defer store.Close()
	events, err := store.GroupHistory(ctx, state.GroupHistoryFilter{Group: opts.group, System: opts.system, Since: since})
	if errors.Is(err, state.ErrNotFound) {
		return fmt.Errorf("no group %q%s in the mirror (by id or name)", opts.group, systemSuffix(opts.system))
	} else if err != nil {
		return err
	}
	if opts.output == "json" {
		arr := newJSONArray(a.env.stdout)
		for _, e := range events {
			if err := arr.add(e); err != nil {
				return err
			}
		}
		return arr.close()
	}
	if len(events) == 0 {
		_, err := fmt.Fprintln(a.env.stdout, "(no changes)")
		return err
	}
	tw := tabwriter.NewWriter(a.env.stdout, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "AT\tSYSTEM\tGROUP\tCHANGE\tMEMBER\tVIA\tRUN")
	for _, e := range events {
		what := dash(e.MemberEmail) + " (" + e.MemberID + ")"
		if e.Change == "named" {
			what = fmt.Sprintf("%q, visibility %s", e.Name, dash(e.Visibility))
		}
		run := "-"
		if e.RunID != 0 {
			run = strconv.FormatInt(e.RunID, 10)
		}
		fmt.Fprintf(tw, "%s\t%s\t%s (%s)\t%s\t%s\t%s\t%s\n", e.At.UTC().Format(time.RFC3339), e.System,
			clip(e.GroupName, 40), e.GroupID, e.Change, what, e.Via, run)
	}
	return tw.Flush()
}

func systemSuffix(system string) string {
	if system == "" {
		return ""
	}
	return " in system " + system
}
