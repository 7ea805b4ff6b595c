package main

import (
	"context"
	"fmt"
	"io"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/groupsync/groupsync/state"
	"github.com/groupsync/groupsync/syncengine"
)

// planOptions are the flags of `groupsync plan`.
type planOptions struct {
	flows []string
}

func newPlanCommand(a *app) *cobra.Command {
	var opts planOptions
	cmd := &cobra.Command{
		Use:   "plan",
		Short: "Pull and show the changes a run would make, without making them",
		Long: `plan pulls the systems of every flow (or those named with --flow), links groups and plans
the changes, then prints them and records the plan as a run that ` + "`groupsync apply RUN`" + `
can carry out later. Nothing is written to the targets.`,
		Args: usageArgs(cobra.NoArgs),
		RunE: func(cmd *cobra.Command, _ []string) error {
			return runPlan(cmd.Context(), a, opts)
		},
	}
	cmd.Flags().StringArrayVar(&opts.flows, "flow", nil, "plan only this flow (repeatable; default all flows)")
	return cmd
}

func runPlan(ctx context.Context, a *app, opts planOptions) error {
	rt, err := a.openRuntime(ctx, runtimeHooks{})
	if err != nil {
		return err
	}
	defer rt.Close()
	flows, err := rt.selectFlows(opts.flows)
	if err != nil {
		return err
	}
	var results []*syncengine.Result
	for _, name := range flows {
		res, err := rt.engine.RunFlow(ctx, name, syncengine.RunOptions{Trigger: syncengine.TriggerPlan, PlanOnly: true})
		if err != nil {
			return err
		}
		results = append(results, res)
		if err := printPlan(ctx, a.env.stdout, rt.store, res); err != nil {
			return err
		}
	}
	printSummary(a.env.stdout, results)
	for _, r := range results {
		if r.Status == state.RunPlanned || r.Status == state.RunBlocked {
			fmt.Fprintf(a.env.stdout, "apply with: groupsync apply %d%s\n", r.RunID, map[bool]string{true: " --allow-deletes"}[r.Status == state.RunBlocked])
		}
	}
	return exitFor(results)
}

// planListLimit bounds the item-level listing; the rest is in the changes table.
const planListLimit = 500

// printPlan lists a run's changes item by item: which group and which member, by name or
// email beside the ids, which system, why.
func printPlan(ctx context.Context, w io.Writer, st *state.Store, res *syncengine.Result) error {
	fmt.Fprintf(w, "Plan of flow %s (run %d, %s):\n", res.Flow, res.RunID, res.Status)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "  TARGET\tOPERATION\tGROUP\tGROUP ID\tMEMBER\tMEMBER ID\tSTATUS\tREASON")
	shown := 0
	// One more than the limit says whether there is more than was shown.
	err := st.EachChangeDetail(ctx, state.ChangeFilter{RunID: res.RunID, Limit: planListLimit + 1}, func(d state.ChangeDetail) error {
		if shown == planListLimit {
			shown++
			return nil
		}
		shown++
		c := d.Change
		group := d.GroupName
		if c.Operation == "update_group" && c.Payload.OldName != "" && c.Payload.OldName != c.Payload.Name {
			group = c.Payload.OldName + " → " + c.Payload.Name
		}
		_, err := fmt.Fprintf(tw, "  %s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", c.TargetSystem, c.Operation, dash(group), groupRef(c),
			dash(d.MemberEmail), memberRef(c), c.Status, c.Reason)
		return err
	})
	if err != nil {
		return err
	}
	_ = tw.Flush()
	if shown > planListLimit {
		fmt.Fprintf(w, "  … more changes: groupsync changes %d --limit N, or SELECT * FROM changes WHERE run_id = %d\n", res.RunID, res.RunID)
	}
	if shown == 0 {
		fmt.Fprintln(w, "  no changes: the targets match the source")
	}
	return nil
}
