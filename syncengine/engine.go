// Package syncengine runs flows: pull every system a flow touches into the mirror, link
// source groups to their counterparts, plan the changes as rows, guard against destructive
// surprises, push the changes to the targets and record the outcome. One run of one flow at
// a time holds that flow's lease, so replicas sharing a database run each tick once.
package syncengine

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/groupsync/groupsync/config"
	"github.com/groupsync/groupsync/connectors"
	"github.com/groupsync/groupsync/logctx"
	"github.com/groupsync/groupsync/state"
)

// Triggers.
const (
	TriggerSchedule = "schedule"
	TriggerOnce     = "once"
	TriggerManual   = "manual"
	TriggerApply    = "apply"
	TriggerPlan     = "plan"
	// TriggerRevert is a revert's plan (groupsync revert RUN).
	TriggerRevert = "revert"
)

// StatusPaused is the Result.Status of a run that did not start because its flow is
// paused: no run row, nothing pulled or pushed.
const StatusPaused = "paused"

// Observer is told about runs and changes, for metrics. Implementations must be safe for
// concurrent use.
type Observer interface {
	RunFinished(flow, status string, d time.Duration)
	ChangeDone(system, operation, status string, n int)
}

// Progress is told how a run advances, for a terminal display or progress log lines. ctx
// is the run's: it carries the run's log attributes (logctx), so a progress line names its
// run and flow. Implementations must be safe for concurrent use.
type Progress interface {
	Pulled(ctx context.Context, system, kind string, pages, items int)
	Pushed(ctx context.Context, system string, n int)
}

// Options configure an Engine.
type Options struct {
	Store  *state.Store
	Config *config.Config
	// Connectors are the opened systems by configured name.
	Connectors map[string]connectors.Connector
	Logger     *slog.Logger
	// Clock defaults to the real clock.
	Clock Clock
	// Holder identifies this replica in leases and must name one process start: a live
	// lease is re-entered only by the same holder. Default host:pid:random plus the
	// process's boot, PID namespace and start time (see holder.go).
	Holder string
	// LeaseTTL is how long a lease lasts unless renewed; default Config.Lease.TTL (the
	// lease.ttl key), else 2 minutes. A replica that dies mid-run hands its flows over
	// within this time. Renewals go every TTL/6, each with a TTL/6 timeout; a run that
	// could not renew for 3/4 of the TTL stops writing.
	LeaseTTL time.Duration
	// Observer and Progress are optional.
	Observer Observer
	Progress Progress
	// Workers bounds concurrent member listings and account lookups per system; default 4.
	Workers int
	// PushWorkers bounds the changes in flight per target (member batches and group
	// writes alike); default 16. The connector's rate limiter sets the pace; this only
	// lets latency overlap. Each change also costs two short mirror writes, and a create
	// three calls in a row on Airtable (look up, create, read back): at 150 ms a call, 8
	// in flight reached ~42 of Airtable's 48 req/s, 16 reach the limiter; 16 also covers
	// 300 ms answers at 50 req/s. More only queue at the limiter.
	PushWorkers int
	// ShutdownGrace is how long a run's request in flight may take once the run's context
	// ends (a shutdown); default DefaultShutdownGrace.
	ShutdownGrace time.Duration
}

// Engine runs flows.
type Engine struct {
	o      Options
	logger *slog.Logger
	// running guards against two runs of one flow in this process (the lease guards
	// across processes).
	mu      sync.Mutex
	running map[string]bool
}

// New checks the options and returns an Engine.
func New(o Options) (*Engine, error) {
	if o.Store == nil || o.Config == nil {
		return nil, errors.New("syncengine: store and config are required")
	}
	for name, f := range o.Config.Flows {
		for _, sys := range append([]string{f.Source}, f.Targets...) {
			if o.Connectors[sys] == nil {
				return nil, fmt.Errorf("syncengine: flow %q: system %q has no opened connector", name, sys)
			}
		}
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.Clock == nil {
		o.Clock = realClock{}
	}
	if o.Holder == "" {
		o.Holder = newHolder()
	}
	if o.LeaseTTL <= 0 {
		o.LeaseTTL = o.Config.Lease.TTL
	}
	if o.LeaseTTL <= 0 {
		o.LeaseTTL = config.DefaultLeaseTTL
	}
	if o.Workers <= 0 {
		o.Workers = 4
	}
	if o.PushWorkers <= 0 {
		o.PushWorkers = 16
	}
	if o.ShutdownGrace <= 0 {
		o.ShutdownGrace = DefaultShutdownGrace
	}
	return &Engine{o: o, logger: o.Logger, running: map[string]bool{}}, nil
}

// Flows returns the configured flow names, sorted.
func (e *Engine) Flows() []string {
	return slices.Sorted(maps.Keys(e.o.Config.Flows))
}

// RunOptions say how a run is started.
type RunOptions struct {
	Trigger string
	// DryRun plans and stores the plan but pushes nothing (status dry_run).
	DryRun bool
	// PlanOnly plans and stores an approvable plan (status planned) for `apply`.
	PlanOnly bool
	// Tick is the scheduled time for schedule-triggered runs: replicas run a tick once.
	Tick *time.Time
	// Groups, when set, narrows the run to these in-scope source groups (by name or id):
	// the same pull, plan, guard and push for just them. Such a run is never the baseline
	// of min_source_ratio, and is not checked against it.
	Groups []string
	// approving is the blocked or planned run whose approval this dry run re-plans to
	// check (Apply): the guard's verdict is logged, not recorded as a block of its own,
	// since the approval being checked is the operator's answer to it.
	approving int64
	// revert is the run whose applied changes this run plans to undo (Revert, and the
	// re-plan checking a revert's apply) instead of planning from the source.
	revert int64
}

// TargetSummary counts one target's changes in a run.
type TargetSummary struct {
	Created, Updated, Deleted, Added, Removed int
	// Restored counts archived target groups brought back because their source group is live.
	Restored                          int
	Skipped, Failed, Blocked, Planned int
	// Reasons counts skipped/failed/blocked changes by reason.
	Reasons map[string]int
}

// PullSummary is how one system's pull went.
type PullSummary struct {
	Complete bool
	Groups   state.MergeCounts
	Members  state.MergeCounts
	Accounts state.MergeCounts
	Err      string
	// Unreadable are the groups, by id with the reason, that exist (or may) but the system
	// neither listed nor let us read (SelfCommunity hidden groups): kept, not deleted, and
	// no member is removed through them.
	Unreadable map[string]string
}

// Result is the outcome of one run.
type Result struct {
	RunID         int64
	Flow          string
	Status        string
	BlockedReason string
	Err           error
	Duration      time.Duration
	Pulls         map[string]*PullSummary
	Targets       map[string]*TargetSummary
	// Paused is the pause in force when Status is StatusPaused.
	Paused *state.Pause
}

// ErrFlowBusy is returned when the flow is already running here or on another replica.
var ErrFlowBusy = errors.New("flow is already running")

// RunFlow executes one run of the named flow. The returned error is for runs that could not
// start (unknown flow, lease held, database down); a run that started reports its outcome
// in Result.Status and Result.Err.
func (e *Engine) RunFlow(ctx context.Context, name string, ro RunOptions) (*Result, error) {
	flow, ok := e.o.Config.Flows[name]
	if !ok {
		return nil, fmt.Errorf("syncengine: unknown flow %q", name)
	}
	if !e.claim(name) {
		return nil, fmt.Errorf("syncengine: flow %q: %w (in this process)", name, ErrFlowBusy)
	}
	defer e.unclaim(name)
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("syncengine: flow %q: not started: %w", name, err)
	}
	// A paused flow's run takes no lease either: it writes nothing at all.
	if res, err := e.pausedResult(ctx, name, ro); res != nil || err != nil {
		return res, err
	}
	// ctx ending asks the run to stop; it ends its work in flight first (shutdown.go).
	ctx, stop := graceful(ctx, e.o.ShutdownGrace)
	defer stop()

	runCtx, lease, release, err := e.hold(ctx, name, ro.Tick)
	if errors.Is(err, state.ErrLeaseHeld) {
		return nil, fmt.Errorf("syncengine: flow %q: %w (lease held by another replica or tick already run)", name, ErrFlowBusy)
	}
	if err != nil {
		return nil, fmt.Errorf("syncengine: flow %q: %w", name, err)
	}
	defer release()
	// Checked again under the lease: a revert pauses its flow under it, so no run that
	// starts after the pause was recorded gets past here.
	if res, err := e.pausedResult(runCtx, name, ro); res != nil || err != nil {
		return res, err
	}
	return e.run(runCtx, name, flow, ro, lease.Term)
}

// hold takes the flow's lease and returns the context to run under it: it carries the
// lease's fence (every status write of the run checks it) and is cancelled, with the
// *state.FencedError as its cause, when the lease is lost or its local deadline passes.
// release stops the renewals and frees the lease.
func (e *Engine) hold(ctx context.Context, flow string, tick *time.Time) (context.Context, state.Lease, func(), error) {
	lease, fence, err := e.acquire(ctx, flow, tick)
	if err != nil {
		return nil, lease, nil, err
	}
	runCtx, cancel := context.WithCancelCause(state.WithFence(ctx, fence))
	stopRenew := e.keepLease(runCtx, cancel, lease, fence)
	return runCtx, lease, func() {
		stopRenew()
		cancel(nil)
		if err := e.o.Store.ReleaseLease(context.WithoutCancel(ctx), lease); err != nil {
			e.logger.Warn("releasing lease", "flow", flow, "error", err)
		}
	}, nil
}

// localDeadline is when a lease confirmed by a request sent at sent must be assumed lost:
// a quarter of the TTL before the database's expiry, which is at least TTL after sent. The
// margin covers clock rate drift and a request on its way to a target when it passes.
func (e *Engine) localDeadline(sent time.Time) time.Time {
	return sent.Add(e.o.LeaseTTL - e.o.LeaseTTL/4)
}

// acquire takes the flow's lease. A lease held by a process that provably died (a kill -9
// on this host, in this PID namespace) is expired first, so a restart does not wait out the
// lease; any other live holder is waited out.
func (e *Engine) acquire(ctx context.Context, flow string, tick *time.Time) (state.Lease, *state.Fence, error) {
	sent := e.o.Clock.Now()
	lease, err := e.o.Store.AcquireLease(ctx, flow, e.o.Holder, e.o.LeaseTTL, tick)
	if errors.Is(err, state.ErrLeaseHeld) {
		holder, live, herr := e.o.Store.LeaseHolder(ctx, flow)
		if herr != nil || !live || !deadLocalHolder(holder) {
			return lease, nil, err
		}
		e.logger.Warn("lease held by a dead process of this host: taking it over", "flow", flow, "dead_holder", holder)
		if err := e.o.Store.ExpireLease(ctx, flow, holder); err != nil {
			return lease, nil, err
		}
		sent = e.o.Clock.Now()
		lease, err = e.o.Store.AcquireLease(ctx, flow, e.o.Holder, e.o.LeaseTTL, tick)
	}
	if err != nil {
		return lease, nil, err
	}
	return lease, state.NewFence(lease, e.localDeadline(sent), e.o.LeaseTTL, e.o.Clock.Now), nil
}

func (e *Engine) claim(flow string) bool {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.running[flow] {
		return false
	}
	e.running[flow] = true
	return true
}

func (e *Engine) unclaim(flow string) {
	e.mu.Lock()
	delete(e.running, flow)
	e.mu.Unlock()
}

// keepLease renews the lease every TTL/6 while the run goes on, on a connection of its own
// and with a TTL/6 timeout, and moves the fence's local deadline after each renewal. When
// the lease is lost (another replica took it after this one stalled past the expiry) or the
// local deadline passes without a renewal (database unreachable, process paused), the fence
// is lost and the run cancelled: it stops pushing, and its writes are refused.
func (e *Engine) keepLease(ctx context.Context, cancel context.CancelCauseFunc, l state.Lease, f *state.Fence) (stop func()) {
	clock, ttl := e.o.Clock, e.o.LeaseTTL
	renewer := e.o.Store.NewRenewer()
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		defer renewer.Close()
		for {
			select {
			case <-done:
				return
			case <-ctx.Done():
				return
			case <-clock.After(min(ttl/6, f.Deadline().Sub(clock.Now()))):
			}
			if err := f.Check(); err != nil {
				e.logger.Error("lease not renewed before its local deadline; stopping the run", "flow", l.Flow, "term", l.Term)
				cancel(err)
				return
			}
			sent := clock.Now()
			rctx, rcancel := context.WithTimeout(ctx, ttl/6)
			renewed, err := renewer.Renew(rctx, l, ttl)
			rcancel()
			switch {
			case errors.Is(err, state.ErrFenced):
				f.Lose(err)
				e.logger.Error("lease lost; stopping the run", "flow", l.Flow, "error", err)
				cancel(err)
				return
			case err != nil:
				if ctx.Err() == nil {
					e.logger.Warn("renewing lease", "flow", l.Flow, "error", err, "local_deadline_in", f.Deadline().Sub(clock.Now()))
				}
			default:
				l = renewed
				f.Extend(e.localDeadline(sent))
			}
		}
	}()
	return func() { close(done); wg.Wait() }
}

// finish records a run's outcome, or, when the run was fenced out, that it was: such a run
// writes nothing else (state.RecordFenced). It returns the status and error recorded.
func (e *Engine) finish(ctx context.Context, log *slog.Logger, runID int64, status string, counts map[string]int64,
	runErr error, blocked string) (string, error, error) {
	bg := context.WithoutCancel(ctx)
	f := state.FenceFrom(ctx)
	if f == nil {
		return status, runErr, e.o.Store.FinishRun(bg, runID, status, counts, errText(runErr), blocked)
	}
	fenced := f.Check()
	if fenced == nil {
		err := e.o.Store.FinishRun(bg, runID, status, counts, errText(runErr), blocked)
		if !errors.Is(err, state.ErrFenced) {
			return status, runErr, err
		}
		fenced = err
	}
	reported, err := e.o.Store.RecordFenced(bg, runID, f, fenced)
	log.Error("run fenced out: it pushes and records nothing more; the lease's holder carries on", "error", reported)
	return state.RunFailed, reported, err
}

func errText(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}

// run is one run under a held lease.
func (e *Engine) run(ctx context.Context, name string, flow config.Flow, ro RunOptions, term int64) (*Result, error) {
	start := time.Now()
	log := e.logger.With("flow", name)
	st := e.o.Store
	if n, err := st.ReconcileInterrupted(ctx, name); err != nil {
		return nil, err
	} else if n > 0 {
		log.Warn("changes interrupted between send and record; the fresh pull reconciles them before any retry", "changes", n)
	}
	if err := st.RecordFlow(ctx, name, flow.Source, flow.Targets, flow.Schedule); err != nil {
		return nil, err
	}
	runID, err := st.CreateRun(ctx, state.NewRun{Flow: name, Trigger: ro.Trigger, DryRun: ro.DryRun || ro.PlanOnly,
		Holder: e.o.Holder, LeaseTerm: term, Tick: ro.Tick, RevertsRunID: ro.revert})
	if err != nil {
		return nil, err
	}
	log = log.With("run_id", runID)
	// Connectors and the mirror log with the run's context: give it the run's attributes.
	ctx = logctx.WithLogAttrs(ctx, "run_id", runID, "flow", name)
	// The run's pulls record the history intervals they open and close as this run's.
	ctx = state.WithRunID(ctx, runID)
	res := &Result{RunID: runID, Flow: name, Pulls: map[string]*PullSummary{}, Targets: map[string]*TargetSummary{}}
	log.Info("run started", "trigger", ro.Trigger, "dry_run", ro.DryRun, "plan_only", ro.PlanOnly)

	counts := map[string]int64{}
	status, blocked, runErr := e.execute(ctx, log, runID, name, flow, ro, res, counts)
	status, runErr = interruptedOutcome(ctx, status, runErr)
	res.Status, res.BlockedReason, res.Err = status, blocked, runErr
	res.Duration = time.Since(start)
	if err := e.summarize(context.WithoutCancel(ctx), res, counts); err != nil {
		log.Error("summarizing run", "error", err)
	}
	status, runErr, err = e.finish(ctx, log, runID, status, counts, runErr, blocked)
	res.Status, res.Err = status, runErr
	if err != nil {
		return res, err
	}
	if errors.Is(runErr, state.ErrFenced) {
		// Pruning is a write, and this run may write nothing more.
	} else if _, err := st.PruneSkipped(context.WithoutCancel(ctx), name, runID); err != nil {
		log.Warn("pruning skipped changes of earlier runs", "error", err)
	}
	if e.o.Observer != nil {
		e.o.Observer.RunFinished(name, status, res.Duration)
	}
	attrs := []any{"status", status, "duration_s", res.Duration.Seconds()}
	switch {
	case status == state.RunBlocked:
		log.Warn("run blocked: nothing was pushed", append(attrs, "reason", blocked,
			"approve", fmt.Sprintf("groupsync apply %d --allow-deletes", runID),
			"reject", fmt.Sprintf("groupsync reject %d --reason TEXT", runID))...)
	case status == state.RunInterrupted:
		log.Warn("run interrupted by shutdown", append(attrs, "error", runErr)...)
	case runErr != nil:
		log.Error("run finished with errors", append(attrs, "error", runErr)...)
	default:
		log.Info("run finished", attrs...)
	}
	return res, nil
}

// matchOverrides is the flow's matching overrides, source email to target email, normalized.
func matchOverrides(flow config.Flow) map[string]string {
	overrides := map[string]string{}
	for _, o := range flow.Matching.Overrides {
		overrides[connectors.NormalizeEmail(o.Source)] = connectors.NormalizeEmail(o.Target)
	}
	return overrides
}

// linkStep links the in-scope source groups to their counterparts in the live targets:
// the flow's configured links first, then the mirror's, then by name.
func (e *Engine) linkStep(ctx context.Context, runID int64, name string, flow config.Flow, p *pullState) error {
	links := make([]state.ConfigLink, 0, len(flow.Links))
	for _, l := range flow.Links {
		links = append(links, state.ConfigLink{SourceID: l.Source, TargetSystem: l.TargetSystem, TargetID: l.Target})
	}
	return e.o.Store.LinkFlow(ctx, state.LinkInput{RunID: runID, Flow: name, Source: flow.Source,
		Targets: p.liveTargets, ScopeIDs: p.scopeIDs, ConfigLinks: links, DeletePolicy: string(flow.DeleteGroups),
		Keeping: e.keeping(flow, p.liveTargets)})
}

// planStep plans the run's changes for every live target from the pulled mirror.
func (e *Engine) planStep(ctx context.Context, runID int64, name string, flow config.Flow, p *pullState,
	overrides map[string]string) (state.PlanStats, error) {
	targets := make([]state.PlanTarget, 0, len(p.liveTargets))
	for _, t := range p.liveTargets {
		targets = append(targets, state.PlanTarget{System: t, Caps: e.o.Connectors[t].Capabilities()})
	}
	maxAttempts := flow.MaxChangeAttempts
	if maxAttempts <= 0 {
		maxAttempts = config.DefaultMaxChangeAttempts
	}
	return e.o.Store.PlanFlow(ctx, state.PlanInput{RunID: runID, Flow: name, Source: flow.Source,
		ScopeIDs: p.scopeIDs, Targets: targets, Overrides: overrides,
		Mirror: flow.Membership != config.MembershipAddOnly, CreateGroups: flow.CreateGroups,
		DeletePolicy: string(flow.DeleteGroups), MaxAttempts: maxAttempts,
		IncompleteSourceGroups: p.sourceIncomplete})
}

// execute is pull → link → plan → guard → push → record; it returns the run status.
func (e *Engine) execute(ctx context.Context, log *slog.Logger, runID int64, name string, flow config.Flow,
	ro RunOptions, res *Result, counts map[string]int64) (status, blocked string, err error) {
	sc, err := newScope(flow.Scope)
	if err != nil {
		return state.RunFailed, "", err
	}
	sc.narrow(ro.Groups)
	if len(ro.Groups) > 0 {
		counts[state.CountNarrowedGroups] = int64(len(ro.Groups))
	}
	overrides := matchOverrides(flow)

	// 1. Pull groups (and the source's in-scope members) from every system at once. A
	// shutdown stops the pulls at once: they write nothing outside the mirror.
	pctx, endPull := untilStop(ctx)
	defer endPull()
	p, err := e.pullAll(pctx, log, name, flow, sc, res)
	if err != nil {
		return state.RunFailed, "", err
	}
	counts["source_groups_listed"] = int64(p.sourceListed)
	counts[state.CountSourceComplete] = 0 // until the pull proves complete and healthy
	p.narrowed = len(ro.Groups) > 0
	if ro.revert != 0 {
		return e.executeRevert(ctx, log, runID, flow, ro, p, res, overrides)
	}
	if p.narrowed && len(p.scopeIDs) == 0 {
		return state.RunFailed, "", fmt.Errorf("no source group of %s in the flow's scope is named %s or has that id",
			flow.Source, strings.Join(ro.Groups, ", "))
	}
	if p.sourceErr != nil {
		// A source that could not be read whole is not a basis for any write, and with
		// nothing planned there is nothing to approve: the run fails (see failure.go).
		return state.RunFailed, "", sourceFailure(flow.Source, p.sourceErr)
	}

	// 2. Link.
	if err := e.linkStep(ctx, runID, name, flow, p); err != nil {
		return state.RunFailed, "", err
	}

	// Targets' members of linked groups, and the accounts needed to match by email.
	if err := e.pullTargetsAndAccounts(pctx, log, flow, p, overrides, res); err != nil {
		return state.RunFailed, "", err
	}
	if p.sourceMembersComplete && len(p.sourceIncomplete) == 0 {
		// Every in-scope group's members and accounts were read: a shrink baseline.
		counts[state.CountSourceComplete] = 1
	}

	// 3. Plan.
	stats, err := e.planStep(ctx, runID, name, flow, p, overrides)
	if err != nil {
		return state.RunFailed, "", err
	}
	counts["source_groups"], counts["source_members"] = stats.SourceGroups, stats.SourceMembers

	// 4. Guard.
	status, blocked, err = e.guardStep(ctx, log, runID, name, flow, ro, p, stats)
	if status != "" {
		return status, blocked, err
	}

	// 5. Push, 6. record. The plan being pushed holds the flow's current intents.
	if stopRequested(ctx) {
		_, err := e.o.Store.SettleUnattempted(context.WithoutCancel(ctx), runID, "", state.ChangeSkipped, "interrupted")
		return state.RunInterrupted, "", errors.Join(errInterrupted, err)
	}
	if err := e.o.Store.RecordIntents(ctx, name, runID, p.liveTargets); err != nil {
		return state.RunFailed, "", err
	}
	return e.pushAll(ctx, log, runID, p, res)
}

// guardStep runs the guard on the stored plan and ends the run there when it blocks, or
// when the run is a dry run or a stored plan. An empty status means: go on and push.
func (e *Engine) guardStep(ctx context.Context, log *slog.Logger, runID int64, name string, flow config.Flow,
	ro RunOptions, p *pullState, stats state.PlanStats) (status, blocked string, err error) {
	blocked, err = e.guard(ctx, log, runID, name, flow, p, stats)
	if err != nil {
		return state.RunFailed, "", err
	}
	return e.settleGuard(ctx, log, runID, ro, p, blocked)
}

// settleGuard ends a run at the guard when its verdict blocked the plan, or when the run is
// a dry run or a stored plan; an empty status means: go on and push.
func (e *Engine) settleGuard(ctx context.Context, log *slog.Logger, runID int64, ro RunOptions, p *pullState,
	blocked string) (string, string, error) {
	if blocked != "" && ro.approving != 0 {
		log.Info("re-plan of an approval: the guard's limits are waived by it", "approving_run", ro.approving, "guard", blocked)
		blocked = ""
	}
	if blocked != "" {
		blocked += fmt.Sprintf("; review with `groupsync status`, then approve with `groupsync apply %d --allow-deletes` or reject with `groupsync reject %d --reason TEXT`", runID, runID)
		if _, err := e.o.Store.SetPlannedStatus(ctx, runID, nil, state.ChangeBlocked, "guard"); err != nil {
			return state.RunFailed, "", err
		}
		// A target that could not be read is said too: the run exits 1, not 3.
		return state.RunBlocked, blocked, p.err()
	}
	// A preview or plan that could not read every system is not one to act on or approve:
	// it fails, naming the system, and its changes stay visible.
	switch {
	case ro.DryRun && p.err() != nil, ro.PlanOnly && p.err() != nil:
		return state.RunFailed, "", p.err()
	case ro.DryRun:
		return state.RunDryRun, "", nil
	case ro.PlanOnly:
		return state.RunPlanned, "", nil
	}
	return "", "", nil
}

// keeping lists the targets that cannot carry out the flow's delete_groups policy (no
// archive or no delete): their groups outlive deleted source groups, as under never.
func (e *Engine) keeping(flow config.Flow, targets []string) []string {
	var out []string
	for _, t := range targets {
		c := e.o.Connectors[t].Capabilities()
		if (flow.DeleteGroups == config.DeleteArchive && !c.ArchiveGroup) || (flow.DeleteGroups == config.DeleteHard && !c.DeleteGroup) {
			out = append(out, t)
		}
	}
	return out
}

// summarize fills the result's per-target counts from the run's change rows and copies
// them into the run's counts.
func (e *Engine) summarize(ctx context.Context, res *Result, counts map[string]int64) error {
	rows, err := e.o.Store.ChangeCounts(ctx, res.RunID)
	if err != nil {
		return err
	}
	for _, r := range rows {
		ts := res.Targets[r.TargetSystem]
		if ts == nil {
			ts = &TargetSummary{Reasons: map[string]int{}}
			res.Targets[r.TargetSystem] = ts
		}
		n := int(r.Count)
		switch r.Status {
		case state.ChangeApplied:
			switch r.Operation {
			case "create_group":
				ts.Created += n
			case "update_group":
				ts.Updated += n
			case "restore_group":
				ts.Restored += n
			case "archive_group", "delete_group":
				ts.Deleted += n
			case "add_member":
				ts.Added += n
			case "remove_member":
				ts.Removed += n
			}
		case state.ChangeSkipped:
			ts.Skipped += n
		case state.ChangeFailed, state.ChangeInFlight:
			ts.Failed += n
		case state.ChangeBlocked:
			ts.Blocked += n
		case state.ChangePlanned:
			ts.Planned += n
		}
		if r.Reason != "" {
			ts.Reasons[r.Reason] += n
		}
		counts[r.TargetSystem+"."+r.Operation+"."+r.Status] += int64(n)
	}
	return nil
}
