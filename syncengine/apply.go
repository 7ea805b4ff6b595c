package syncengine

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"strings"
	"time"

	"github.com/groupsync/groupsync/config"
	"github.com/groupsync/groupsync/logctx"
	"github.com/groupsync/groupsync/state"
)

// ErrPlanMoved is returned by Apply when a fresh plan no longer matches the stored one.
var ErrPlanMoved = errors.New("the mirror moved since the plan was made")

// ErrCheckFailed is returned by Apply when the fresh re-plan that checks the stored plan
// could not read every system (a source still down, say): nothing is pushed, and the run
// stays awaiting approval.
var ErrCheckFailed = errors.New("the re-plan that checks the approval failed")

// Apply pushes exactly the stored plan of a run made by `plan` (status planned) or blocked
// by the guard (which needs allowDeletes). It first plans afresh as a dry run and refuses
// if that re-plan could not read every system, or if its plan differs from the stored one
// item by item, payload included (a group made private or renamed since is a difference),
// so nothing is pushed on a stale basis. The re-plan records no block of its own: the
// approval is the operator's answer to the guard.
func (e *Engine) Apply(ctx context.Context, runID int64, allowDeletes bool, who string) (*Result, error) {
	run, flow, err := e.approvable(ctx, runID, allowDeletes)
	if err != nil {
		return nil, err
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
	if check, err := e.checkApproval(runCtx, run, flow, lease.Term); err != nil {
		return check, err
	}
	// The approval is claimed first: a rejection racing with it loses, or wins and this
	// apply pushes nothing.
	if err := e.o.Store.ApproveRun(runCtx, runID, who); err != nil {
		return nil, fmt.Errorf("syncengine: run %d: %w", runID, err)
	}
	// The stored plan is what is pushed now: its intents are the flow's current ones.
	if err := e.o.Store.RecordIntents(runCtx, run.Flow, runID, flow.Targets); err != nil {
		return nil, err
	}
	if _, err := e.o.Store.ReleaseBlocked(runCtx, runID); err != nil {
		return nil, err
	}
	if run.RevertsRunID != 0 {
		// Resumed since the revert was planned: it is paused again before anything is
		// pushed, or the next scheduled run would redo at once what this undoes.
		if _, err := e.pauseForRevert(runCtx, run.Flow, who, runID, run.RevertsRunID); err != nil {
			return nil, err
		}
	}
	log.Info("applying stored plan", "approved_by", who, "allow_deletes", allowDeletes)
	return e.pushStored(ctx, runCtx, log, run, flow)
}

// approvable reads run runID and says why it cannot be applied: unknown, its flow gone,
// already applied, rejected, superseded by a newer run, not planned or blocked, or blocked
// without allowDeletes.
func (e *Engine) approvable(ctx context.Context, runID int64, allowDeletes bool) (state.Run, config.Flow, error) {
	run, err := e.o.Store.GetRun(ctx, runID)
	if err != nil {
		return run, config.Flow{}, err
	}
	flow, ok := e.o.Config.Flows[run.Flow]
	if !ok {
		return run, flow, fmt.Errorf("syncengine: run %d belongs to flow %q, which is no longer configured", runID, run.Flow)
	}
	if err := state.NotPending(run); err != nil {
		return run, flow, fmt.Errorf("syncengine: %w", err)
	}
	// A paused flow's own plans wait for the resume: pushing one would redo what a revert
	// undid. A revert's plan is what the pause is for.
	if run.Trigger != TriggerRevert {
		p, err := e.o.Store.ActivePause(ctx, run.Flow)
		switch {
		case err == nil:
			return run, flow, fmt.Errorf("syncengine: run %d not applied: %w", runID, PausedError(p))
		case !errors.Is(err, state.ErrNotFound):
			return run, flow, err
		}
	}
	switch run.Status {
	case state.RunPlanned:
	case state.RunBlocked:
		if !allowDeletes {
			return run, flow, fmt.Errorf("syncengine: run %d was blocked by the guard (%s); pass --allow-deletes to approve it", runID, run.BlockedReason)
		}
	default:
		return run, flow, fmt.Errorf("syncengine: run %d is %s: only planned or blocked runs can be applied", runID, run.Status)
	}
	return run, flow, nil
}

// checkApproval re-plans the flow as a dry run and refuses the approval of run when that
// re-plan failed (a system it needs still fails) or differs from run's stored plan.
func (e *Engine) checkApproval(ctx context.Context, run state.Run, flow config.Flow, term int64) (*Result, error) {
	// A revert's plan is checked against a fresh revert of the same run, not a fresh sync.
	check, err := e.run(ctx, run.Flow, flow, RunOptions{Trigger: TriggerApply, DryRun: true, approving: run.ID,
		revert: run.RevertsRunID}, term)
	if err != nil {
		return nil, err
	}
	if check.Status != state.RunDryRun || check.Err != nil {
		return check, fmt.Errorf("syncengine: run %d not applied: %w (run %d, %s: %v); nothing was pushed and run %d still awaits approval: apply it again once every system of flow %q answers",
			run.ID, ErrCheckFailed, check.RunID, check.Status, check.Err, run.ID, run.Flow)
	}
	diff, err := e.o.Store.PlanDiff(ctx, run.ID, check.RunID)
	if err != nil {
		return nil, err
	}
	if !diff.Empty() {
		return check, fmt.Errorf("syncengine: run %d: %w: %d planned changes no longer apply%s and %d new ones appeared%s (fresh plan: run %d); plan again",
			run.ID, ErrPlanMoved, diff.OnlyA, examples(diff.ExamplesA), diff.OnlyB, examples(diff.ExamplesB), check.RunID)
	}
	return check, nil
}

// pushStored pushes run's approved plan and records the outcome on run.
func (e *Engine) pushStored(ctx, runCtx context.Context, log *slog.Logger, run state.Run, flow config.Flow) (*Result, error) {
	start := time.Now()
	runCtx = logctx.WithLogAttrs(runCtx, "run_id", run.ID, "flow", run.Flow)
	res := &Result{RunID: run.ID, Flow: run.Flow, Pulls: map[string]*PullSummary{}, Targets: map[string]*TargetSummary{}}
	status, _, runErr := e.pushAll(runCtx, log, run.ID, &pullState{liveTargets: flow.Targets}, res)
	res.Status, res.Err = status, runErr
	// The run keeps the counters of its own pull (source_complete included): an approval
	// makes a run a shrink baseline only when that pull was complete and healthy.
	counts := maps.Clone(run.Counts)
	if err := e.summarize(context.WithoutCancel(ctx), res, counts); err != nil {
		return res, err
	}
	status, runErr, err := e.finish(runCtx, log, run.ID, status, counts, runErr, "")
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
