package syncengine

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"strings"
	"time"

	"github.com/groupsync/groupsync/logctx"
	"github.com/groupsync/groupsync/state"
)

// ErrPlanMoved is returned by Apply when a fresh plan no longer matches the stored one.
var ErrPlanMoved = errors.New("the mirror moved since the plan was made")

// Apply pushes exactly the stored plan of a run made by `plan` (status planned) or blocked
// by the guard (which needs allowDeletes). It first plans afresh as a dry run and refuses
// if that plan differs from the stored one item by item, payload included (a group made
// private or renamed since is a difference), so nothing is pushed on a stale basis.
func (e *Engine) Apply(ctx context.Context, runID int64, allowDeletes bool, who string) (*Result, error) {
	st := e.o.Store
	run, err := st.GetRun(ctx, runID)
	if err != nil {
		return nil, err
	}
	flow, ok := e.o.Config.Flows[run.Flow]
	if !ok {
		return nil, fmt.Errorf("syncengine: run %d belongs to flow %q, which is no longer configured", runID, run.Flow)
	}
	if run.ApprovedAt != nil {
		return nil, fmt.Errorf("syncengine: run %d was already applied (by %s at %s)", runID, run.ApprovedBy, run.ApprovedAt.Format("2006-01-02 15:04:05Z07:00"))
	}
	switch run.Status {
	case state.RunPlanned:
	case state.RunBlocked:
		if !allowDeletes {
			return nil, fmt.Errorf("syncengine: run %d was blocked by the guard (%s); pass --allow-deletes to approve it", runID, run.BlockedReason)
		}
	default:
		return nil, fmt.Errorf("syncengine: run %d is %s: only planned or blocked runs can be applied", runID, run.Status)
	}
	if !e.claim(run.Flow) {
		return nil, fmt.Errorf("syncengine: flow %q: %w (in this process)", run.Flow, ErrFlowBusy)
	}
	defer e.unclaim(run.Flow)
	runCtx, lease, release, err := e.hold(ctx, run.Flow, nil)
	if err != nil {
		return nil, fmt.Errorf("syncengine: flow %q: %w", run.Flow, err)
	}
	defer release()

	log := e.logger.With("flow", run.Flow, "run_id", runID)
	check, err := e.run(runCtx, run.Flow, flow, RunOptions{Trigger: TriggerApply, DryRun: true}, lease.Term)
	if err != nil {
		return nil, err
	}
	diff, err := st.PlanDiff(runCtx, runID, check.RunID)
	if err != nil {
		return nil, err
	}
	if !diff.Empty() {
		return check, fmt.Errorf("syncengine: run %d: %w: %d planned changes no longer apply%s and %d new ones appeared%s (fresh plan: run %d); plan again",
			runID, ErrPlanMoved, diff.OnlyA, examples(diff.ExamplesA), diff.OnlyB, examples(diff.ExamplesB), check.RunID)
	}
	// The stored plan is what is pushed now: its intents are the flow's current ones.
	if err := st.RecordIntents(runCtx, run.Flow, runID, flow.Targets); err != nil {
		return nil, err
	}
	if _, err := st.ReleaseBlocked(runCtx, runID); err != nil {
		return nil, err
	}
	if err := st.ApproveRun(runCtx, runID, who); err != nil {
		return nil, err
	}
	log.Info("applying stored plan", "approved_by", who, "allow_deletes", allowDeletes)
	start := time.Now()
	runCtx = logctx.WithLogAttrs(runCtx, "run_id", runID, "flow", run.Flow)
	res := &Result{RunID: runID, Flow: run.Flow, Pulls: map[string]*PullSummary{}, Targets: map[string]*TargetSummary{}}
	status, _, runErr := e.pushAll(runCtx, log, runID, &pullState{liveTargets: flow.Targets}, res)
	res.Status, res.Err = status, runErr
	counts := maps.Clone(run.Counts)
	if err := e.summarize(context.WithoutCancel(ctx), res, counts); err != nil {
		return res, err
	}
	status, runErr, err = e.finish(runCtx, log, runID, status, counts, runErr, "")
	res.Status, res.Err = status, runErr
	if err != nil {
		return res, err
	}
	if e.o.Observer != nil {
		e.o.Observer.RunFinished(run.Flow, status, time.Since(start))
	}
	log.Info("stored plan applied", "status", status, "duration_s", time.Since(start).Seconds())
	return res, nil
}

// examples renders a few differing plan items for an error: " (e.g. a; b)".
func examples(items []string) string {
	if len(items) == 0 {
		return ""
	}
	return " (e.g. " + strings.Join(items, "; ") + ")"
}
