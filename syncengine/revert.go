package syncengine

import (
	"context"
	"errors"
	"fmt"
	"log/slog"

	"github.com/groupsync/groupsync/config"
	"github.com/groupsync/groupsync/state"
)

// ErrFlowPaused is returned when an operation that would push a flow's own plan (apply
// of a stored sync plan) meets a paused flow.
var ErrFlowPaused = errors.New("flow is paused")

// Revert plans the inverse of run of's applied changes as a run of trigger revert: the
// flow's systems are pulled as for any run (the revert must see what moved since), then
// state.PlanRevert stores the inverse changes and what it leaves with the reason, and the
// flow's limits guard the plan like any other. Without dryRun the plan is stored for
// `groupsync apply` (status planned, or blocked by the guard) and the flow is paused, by
// who: its next scheduled run would otherwise redo what the revert undoes as soon as it is
// applied, the source still saying so. With dryRun the plan is a preview (status dry_run)
// and nothing is paused. Nothing is pushed here.
func (e *Engine) Revert(ctx context.Context, of int64, dryRun bool, who string) (*Result, error) {
	orig, err := e.o.Store.GetRun(ctx, of)
	if err != nil {
		return nil, err
	}
	flow, ok := e.o.Config.Flows[orig.Flow]
	if !ok {
		return nil, fmt.Errorf("syncengine: revert run %d: it belongs to flow %q, which is no longer configured", of, orig.Flow)
	}
	n, err := e.o.Store.AppliedChanges(ctx, of)
	if err != nil {
		return nil, err
	}
	if n == 0 {
		return nil, fmt.Errorf("syncengine: revert run %d of flow %q: it applied no change (status %s), so there is nothing to revert",
			of, orig.Flow, orig.Status)
	}
	if !e.claim(orig.Flow) {
		return nil, fmt.Errorf("syncengine: flow %q: %w (in this process)", orig.Flow, ErrFlowBusy)
	}
	defer e.unclaim(orig.Flow)
	runCtx, lease, release, err := e.hold(ctx, orig.Flow, nil)
	if errors.Is(err, state.ErrLeaseHeld) {
		return nil, fmt.Errorf("syncengine: flow %q: %w (lease held by another replica)", orig.Flow, ErrFlowBusy)
	}
	if err != nil {
		return nil, fmt.Errorf("syncengine: flow %q: %w", orig.Flow, err)
	}
	defer release()
	res, err := e.run(runCtx, orig.Flow, flow, RunOptions{Trigger: TriggerRevert, DryRun: dryRun, PlanOnly: !dryRun, revert: of}, lease.Term)
	if err != nil || dryRun || (res.Status != state.RunPlanned && res.Status != state.RunBlocked) {
		return res, err
	}
	p, err := e.pauseForRevert(runCtx, orig.Flow, who, res.RunID, of)
	res.Paused = &p
	return res, err
}

// pauseForRevert pauses flow for the revert run revertRun of run of, unless it is paused
// already (that pause stands). The write is fenced by the revert's lease.
func (e *Engine) pauseForRevert(ctx context.Context, flow, who string, revertRun, of int64) (state.Pause, error) {
	reason := fmt.Sprintf("revert run %d undoes run %d; resume once the source no longer says what run %d did", revertRun, of, of)
	p, created, err := e.o.Store.PauseFlow(ctx, flow, who, reason, revertRun)
	if err != nil {
		return p, err
	}
	if created {
		e.logger.Warn("flow paused by a revert: its runs do nothing until groupsync resume", "flow", flow,
			"revert_run_id", revertRun, "reverted_run_id", of, "paused_by", who)
	}
	return p, nil
}

// executeRevert is a revert's pull → plan → guard: the targets' groups, the members of the
// linked groups and their accounts are read as for any run (pullAll has listed them), then
// the inverse of run ro.revert is planned against that fresh mirror. A source that cannot
// be read does not stop a revert, which relies on the targets alone (its bad listing may be
// what made the run to revert); a target that cannot be read fails the plan as for any
// preview (settleGuard), so nothing is approved on a basis that could not be checked.
func (e *Engine) executeRevert(ctx context.Context, log *slog.Logger, runID int64, flow config.Flow, ro RunOptions,
	p *pullState, res *Result, overrides map[string]string) (string, string, error) {
	if p.sourceErr != nil {
		log.Warn("source could not be read; the revert relies on the targets only", "error", p.sourceErr)
	}
	p.revert = true
	if err := e.pullTargetsAndAccounts(ctx, log, flow, p, overrides, res); err != nil {
		return state.RunFailed, "", err
	}
	targets := make([]state.PlanTarget, 0, len(p.liveTargets))
	for _, t := range p.liveTargets {
		targets = append(targets, state.PlanTarget{System: t, Caps: e.o.Connectors[t].Capabilities()})
	}
	stats, err := e.o.Store.PlanRevert(ctx, state.RevertInput{RunID: runID, Of: ro.revert, Flow: res.Flow,
		Targets: targets, DeletePolicy: string(flow.DeleteGroups)})
	if err != nil {
		return state.RunFailed, "", err
	}
	log.Info("revert planned", "reverted_run_id", ro.revert, "changes_considered", stats.Reverted)
	// The revert's removals and deletions pass the flow's limits like any plan's; there is
	// no source to compare (min_source_ratio) and no source listing to hold removals on.
	gc, err := e.o.Store.GuardCounts(ctx, runID)
	if err != nil {
		return state.RunFailed, "", err
	}
	blocked := joinReasons(limitReasons(flow.Limits, p.liveTargets, gc, stats.TargetMembers))
	status, blocked, err := e.settleGuard(ctx, log, runID, ro, p, blocked)
	if status == "" {
		// A revert is only ever a plan or a preview (Revert sets one of them).
		return state.RunFailed, "", fmt.Errorf("revert run %d was neither a plan nor a preview", runID)
	}
	return status, blocked, err
}

// pausedResult returns the result of a run that does not start because flow is paused, or
// nil when it may run. Previews (dry runs, plans) and revert plans run on a paused flow:
// they push nothing, and show what resuming would do.
func (e *Engine) pausedResult(ctx context.Context, flow string, ro RunOptions) (*Result, error) {
	if ro.DryRun || ro.PlanOnly || ro.revert != 0 {
		return nil, nil
	}
	p, err := e.o.Store.ActivePause(ctx, flow)
	if errors.Is(err, state.ErrNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	e.logger.Info("flow paused: the run does nothing", "flow", flow, "trigger", ro.Trigger,
		"paused_by", p.PausedBy, "paused_at", p.PausedAt, "reason", p.Reason, "resume", "groupsync resume "+flow)
	return &Result{Flow: flow, Status: StatusPaused, Paused: &p, Pulls: map[string]*PullSummary{},
		Targets: map[string]*TargetSummary{}}, nil
}

// PausedError says that flow is paused, by whom, since when and why, and how to resume it.
func PausedError(p state.Pause) error {
	return fmt.Errorf("flow %q is paused (by %s at %s: %s); resume it with groupsync resume %s: %w",
		p.Flow, p.PausedBy, p.PausedAt.UTC().Format("2006-01-02 15:04:05Z"), p.Reason, p.Flow, ErrFlowPaused)
}
