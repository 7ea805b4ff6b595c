package syncengine

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/bits"
	"slices"
	"sync"

	"github.com/groupsync/groupsync/connectors"
	"github.com/groupsync/groupsync/state"
)

// pushAll pushes every target's planned changes at once (each under its own rate limit);
// one target failing does not stop the others.
func (e *Engine) pushAll(ctx context.Context, log *slog.Logger, runID int64, p *pullState, res *Result) (string, string, error) {
	var wg sync.WaitGroup
	var mu sync.Mutex
	var errs []error
	for _, t := range p.liveTargets {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := e.pushTarget(ctx, log.With("system", t), runID, t); err != nil {
				mu.Lock()
				errs = append(errs, fmt.Errorf("push to %s: %w", t, err))
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	bg := context.WithoutCancel(ctx)
	// What a stopped push did not attempt is failed when the run lost its lease or a target
	// stopped it, and skipped when a shutdown stopped it (the next run plans it again).
	status, reason := state.ChangeFailed, "not_attempted"
	switch {
	case ctx.Err() != nil:
		reason = "interrupted"
		errs = append(errs, fmt.Errorf("push interrupted: %w", context.Cause(ctx)))
	case stopRequested(ctx):
		status, reason = state.ChangeSkipped, "interrupted"
		errs = append(errs, errInterrupted)
	}
	if _, err := e.o.Store.SettleUnattempted(bg, runID, "", status, reason); err != nil {
		errs = append(errs, err)
	}
	if err := e.o.Store.RecordSourceSyncOut(bg, runID); err != nil {
		errs = append(errs, err)
	}
	if perr := p.err(); perr != nil {
		errs = append(errs, perr)
	}
	rows, err := e.o.Store.ChangeCounts(bg, runID)
	if err != nil {
		return state.RunFailed, "", errors.Join(append(errs, err)...)
	}
	var applied, failed int64
	for _, r := range rows {
		switch r.Status {
		case state.ChangeApplied:
			applied += r.Count
		case state.ChangeFailed:
			failed += r.Count
		}
	}
	runErr := errors.Join(errs...)
	switch {
	case failed == 0 && runErr == nil:
		return state.RunSucceeded, "", nil
	case applied > 0 || (failed == 0 && len(p.liveTargets) > 0):
		if runErr == nil {
			runErr = fmt.Errorf("%d changes failed", failed)
		}
		return state.RunPartial, "", runErr
	default:
		if runErr == nil {
			runErr = fmt.Errorf("%d changes failed", failed)
		}
		return state.RunFailed, "", runErr
	}
}

// fatalForTarget reports errors after which pushing more to the target is pointless.
func fatalForTarget(err error) bool {
	return errors.Is(err, connectors.ErrUnauthorized)
}

// fail records a failed attempt; it returns a non-nil error only when the failure must stop
// the target (bad credentials) or the database failed.
func (e *Engine) fail(ctx context.Context, cs []state.Change, reason string, cause error) error {
	ids := make([]int64, len(cs))
	for i, c := range cs {
		ids[i] = c.ID
	}
	if ctx.Err() != nil {
		reason = "interrupted"
	}
	if err := e.o.Store.MarkFailed(context.WithoutCancel(ctx), ids, reason, cause.Error()); err != nil {
		return err
	}
	if err := e.recheckAccounts(ctx, cs, reason, cause); err != nil {
		return err
	}
	if e.o.Observer != nil && len(cs) > 0 {
		e.o.Observer.ChangeDone(cs[0].TargetSystem, cs[0].Operation, state.ChangeFailed, len(cs))
	}
	if fatalForTarget(cause) {
		return cause
	}
	return nil
}

// recheckAccounts has the next run re-read the target accounts of adds the target itself
// refused (reason "": not a group that was not created, not an interruption)
// (InvariantAccountsAreFresh): a deleted or deactivated account is the likeliest reason,
// and the re-read tombstones it instead of the add failing every run until given up.
func (e *Engine) recheckAccounts(ctx context.Context, cs []state.Change, reason string, cause error) error {
	if len(cs) == 0 || cs[0].Operation != "add_member" || reason != "" || ctx.Err() != nil ||
		connectors.IsTransient(cause) || errors.Is(cause, connectors.ErrUnauthorized) {
		return nil
	}
	ids := make([]string, 0, len(cs))
	for _, c := range cs {
		if c.TargetAccountID != "" {
			ids = append(ids, c.TargetAccountID)
		}
	}
	return e.o.Store.RecheckAccounts(context.WithoutCancel(ctx), cs[0].TargetSystem, ids)
}

func (e *Engine) applied(ctx context.Context, cs []state.Change) {
	if e.o.Observer != nil && len(cs) > 0 {
		e.o.Observer.ChangeDone(cs[0].TargetSystem, cs[0].Operation, state.ChangeApplied, len(cs))
	}
	if e.o.Progress != nil && len(cs) > 0 {
		e.o.Progress.Pushed(ctx, cs[0].TargetSystem, len(cs))
	}
}

// outcome is how one group change went: cause is the change's own failure (recorded on it,
// with reason when it has a name), stop a database error that stops the target.
type outcome struct {
	reason string
	cause  error
	stop   error
}

func failed(reason string, cause error) outcome { return outcome{reason: reason, cause: cause} }

// settle records o on the change and returns what stops the target, if anything.
func (e *Engine) settle(ctx context.Context, log *slog.Logger, c state.Change, o outcome) error {
	switch {
	case o.stop != nil:
		return o.stop
	case o.cause != nil:
		log.Warn("change failed", "reason", o.reason, "error", o.cause)
		return e.fail(ctx, []state.Change{c}, o.reason, o.cause)
	}
	e.applied(ctx, []state.Change{c})
	return nil
}

func specOf(c state.Change) connectors.GroupSpec {
	return connectors.GroupSpec{Name: c.Payload.Name, Description: c.Payload.Description,
		Visibility: connectors.Visibility(c.Payload.Visibility)}
}

// pushGroup applies one create, restore, archive or delete.
func (e *Engine) pushGroup(ctx context.Context, log *slog.Logger, conn connectors.Connector, w connectors.Writer,
	caps connectors.Capabilities, c state.Change) error {
	if err := e.o.Store.MarkInFlight(ctx, []int64{c.ID}); err != nil {
		return err
	}
	clog := log.With("change_id", c.ID, "operation", c.Operation, "group", c.Payload.Name)
	var o outcome
	switch c.Operation {
	case "create_group":
		o = e.pushCreate(ctx, clog, conn, w, c)
	case "restore_group":
		o = e.pushRestore(ctx, clog, conn, caps, c)
	case "archive_group", "delete_group":
		o = e.pushDelete(ctx, clog, w, c)
	default:
		o = failed("", fmt.Errorf("unknown operation %q", c.Operation))
	}
	return e.settle(ctx, clog, c, o)
}

// pushCreate creates a group. It first looks the name up, so a create whose earlier outcome
// was unknown adopts the group instead of duplicating it. Only a live, active group that no
// other link holds is adopted (RecordGroupWritten refuses the others: name_conflict); an
// archived one is left alone and the group is created beside it where the target allows.
func (e *Engine) pushCreate(ctx context.Context, log *slog.Logger, conn connectors.Connector, w connectors.Writer, c state.Change) outcome {
	spec := specOf(c)
	g, err := conn.FindGroupByName(ctx, spec.Name)
	archivedID := ""
	switch {
	case err == nil && g.State != "archived":
		return e.recordWritten(ctx, log, c, g, "group already exists in the target: adopted")
	case err == nil:
		archivedID = g.ID
		log.Info("an archived group holds the name: not adopted, creating a new group", "archived_group_id", g.ID)
	case !errors.Is(err, connectors.ErrNotFound):
		return failed("", err)
	}
	g, err = w.CreateGroup(ctx, spec)
	if err != nil && connectors.IsTransient(err) {
		// The create may have happened before the failure: look before anyone retries.
		if found, ferr := conn.FindGroupByName(ctx, spec.Name); ferr == nil && found.State != "archived" {
			g, err = found, nil
		}
	}
	switch {
	case errors.Is(err, connectors.ErrNameTaken) && archivedID != "":
		// A target that keeps an archived group's name and has no call to restore it
		// (SelfCommunity: a group deactivated by hand) refuses the new group until a person
		// acts: say what to do, the failure recurs until then.
		return failed("name_conflict", fmt.Errorf("archived target group %s holds the name and this target cannot restore it "+
			"through its API: reactivate it in the target (the next run adopts it) or rename the source group: %w", archivedID, err))
	case errors.Is(err, connectors.ErrNameTaken):
		return failed("name_conflict", err)
	case err != nil:
		return failed("", err)
	}
	return e.recordWritten(ctx, log, c, g, "group created")
}

// recordWritten records a created, adopted, renamed or restored group. A group that belongs
// to another link is not taken over (push never moves a link): the change fails as
// name_conflict and both links keep their groups.
func (e *Engine) recordWritten(ctx context.Context, log *slog.Logger, c state.Change, g connectors.Group, msg string) outcome {
	rctx := context.WithoutCancel(ctx) // the target answered: a shutdown must not lose the outcome
	var err error
	if c.Operation == "restore_group" {
		err = e.o.Store.RecordGroupRestored(rctx, c, g)
	} else {
		err = e.o.Store.RecordGroupWritten(rctx, c, g)
	}
	if errors.Is(err, state.ErrLinkConflict) {
		return failed("name_conflict", fmt.Errorf("target group %s (%q) belongs to another mirror group; not taken over: %w",
			g.ID, g.Name, err))
	}
	if err != nil {
		return outcome{stop: err}
	}
	log.Info(msg, "target_group_id", g.ID)
	return outcome{}
}

// pushRestore brings an archived target group back (the source group is live again).
func (e *Engine) pushRestore(ctx context.Context, log *slog.Logger, conn connectors.Connector, caps connectors.Capabilities, c state.Change) outcome {
	r, ok := conn.(connectors.Restorer)
	if !ok || !caps.RestoreGroup {
		return failed("unsupported", fmt.Errorf("%s cannot restore archived groups: %w", c.TargetSystem, connectors.ErrUnsupported))
	}
	g, err := r.RestoreGroup(ctx, c.TargetGroupID)
	if err != nil {
		return failed("", err)
	}
	return e.recordWritten(ctx, log, c, g, "group restored")
}

// pushDelete archives or deletes a group; one that is already gone counts as removed.
func (e *Engine) pushDelete(ctx context.Context, log *slog.Logger, w connectors.Writer, c state.Change) outcome {
	mode := connectors.DeleteHard
	if c.Operation == "archive_group" {
		mode = connectors.DeleteArchive
	}
	err := w.DeleteGroup(ctx, c.TargetGroupID, mode)
	if err != nil && !errors.Is(err, connectors.ErrNotFound) {
		return failed("", err)
	}
	if err := e.o.Store.RecordGroupDeleted(context.WithoutCancel(ctx), c, mode == connectors.DeleteArchive); err != nil {
		return outcome{stop: err}
	}
	log.Info("group removed", "mode", mode, "target_group_id", c.TargetGroupID)
	return outcome{}
}

// pushUpdates applies a target's group updates so that renames colliding within the target
// converge in one run (A→B while B→A, chains, cycles): a rename whose new name another
// rename of this run still has to free waits for it, and when every waiting rename waits
// for another (a cycle) one of them first moves aside to a temporary name.
func (e *Engine) pushUpdates(ctx context.Context, log *slog.Logger, runID int64, target string, w connectors.Writer,
	stopped func() bool) error {
	q, err := e.loadRenames(ctx, runID, target)
	if err != nil {
		return err
	}
	for len(q.pending) > 0 {
		if stopped() {
			return nil // the caller fails what was not attempted
		}
		r := q.next()
		if r == nil {
			// Every pending rename waits for another: break the cycle through a temporary name.
			r = q.pending[0]
			if err := e.moveAside(ctx, log, w, q, r); err != nil {
				return err
			}
			continue
		}
		q.done(r)
		if err := e.pushUpdate(ctx, log, w, r); err != nil {
			return err
		}
	}
	return nil
}

// rename is one update_group change as the rename order sees it.
type rename struct {
	c state.Change
	// current is the group's name in the target now: the planned old name, or the temporary
	// name it was moved aside to.
	current string
	// inFlight is true once the change was marked in flight (by its move aside).
	inFlight bool
}

// renameQueue holds a target's pending updates and, by normalized name, the pending rename
// whose group holds that name now.
type renameQueue struct {
	pending []*rename
	holder  map[string]*rename
}

func (e *Engine) loadRenames(ctx context.Context, runID int64, target string) (*renameQueue, error) {
	q := &renameQueue{holder: map[string]*rename{}}
	var after int64
	for {
		page, err := e.o.Store.Changes(ctx, state.ChangeFilter{RunID: runID, TargetSystem: target, Operation: "update_group",
			Status: state.ChangePlanned, AfterID: after, Limit: 500})
		if err != nil {
			return nil, err
		}
		if len(page) == 0 {
			return q, nil
		}
		after = page[len(page)-1].ID
		for _, c := range page {
			r := &rename{c: c, current: c.Payload.OldName}
			q.pending = append(q.pending, r)
			if r.current != "" {
				q.holder[connectors.NormalizeName(r.current)] = r
			}
		}
	}
}

// next returns the first pending update whose new name no other pending rename holds, or
// nil when all of them wait (a cycle).
func (q *renameQueue) next() *rename {
	for _, r := range q.pending {
		if h := q.holder[connectors.NormalizeName(r.c.Payload.Name)]; h == nil || h == r {
			return r
		}
	}
	return nil
}

// done takes r out of the queue: whatever its outcome, nothing waits for it any more (a
// rename blocked by a failed one then meets the target's own refusal, reported on it).
func (q *renameQueue) done(r *rename) {
	q.pending = slices.DeleteFunc(q.pending, func(p *rename) bool { return p == r })
	if key := connectors.NormalizeName(r.current); q.holder[key] == r {
		delete(q.holder, key)
	}
}

// temporaryName is where a rename in a cycle parks its group: unique to the change, and
// saying what is going on to anyone who looks at the target meanwhile.
func temporaryName(r *rename) string {
	return fmt.Sprintf("%s (renaming to %s, change %d)", r.current, r.c.Payload.Name, r.c.ID)
}

// moveAside renames r's group to a temporary name, freeing its current name for the rename
// waiting on it; r's own rename follows once its new name is free.
func (e *Engine) moveAside(ctx context.Context, log *slog.Logger, w connectors.Writer, q *renameQueue, r *rename) error {
	if err := e.o.Store.MarkInFlight(ctx, []int64{r.c.ID}); err != nil {
		return err
	}
	r.inFlight = true
	tmp := temporaryName(r)
	spec := specOf(r.c)
	spec.Name = tmp
	clog := log.With("change_id", r.c.ID, "operation", r.c.Operation, "group", r.c.Payload.Name)
	if _, err := w.UpdateGroup(ctx, r.c.TargetGroupID, spec); err != nil {
		q.done(r)
		return e.settle(ctx, clog, r.c, failed("", fmt.Errorf("move aside to a temporary name to break a rename cycle: %w", err)))
	}
	clog.Info("group moved aside to break a rename cycle", "target_group_id", r.c.TargetGroupID, "temporary_name", tmp)
	delete(q.holder, connectors.NormalizeName(r.current))
	r.current = tmp
	q.holder[connectors.NormalizeName(tmp)] = r
	return nil
}

// pushUpdate applies one update_group change (rename, description, visibility).
func (e *Engine) pushUpdate(ctx context.Context, log *slog.Logger, w connectors.Writer, r *rename) error {
	c := r.c
	if !r.inFlight {
		if err := e.o.Store.MarkInFlight(ctx, []int64{c.ID}); err != nil {
			return err
		}
	}
	clog := log.With("change_id", c.ID, "operation", c.Operation, "group", c.Payload.Name)
	g, err := w.UpdateGroup(ctx, c.TargetGroupID, specOf(c))
	var o outcome
	switch {
	case errors.Is(err, connectors.ErrNameTaken):
		o = failed("name_conflict", err)
	case err != nil:
		o = failed("", err)
	default:
		o = e.recordWritten(ctx, clog, c, g, "group updated")
	}
	return e.settle(ctx, clog, c, o)
}

// memberBatches cuts a page into runs of the same group of at most size changes. The link
// is compared too: the changes of groups this run creates all have no target group id
// yet, and each takes its own group's id once created (memberGates).
func memberBatches(page []state.Change, size int) [][]state.Change {
	var out [][]state.Change
	for i := 0; i < len(page); {
		j := i + 1
		for j < len(page) && j-i < size && page[j].TargetGroupID == page[i].TargetGroupID && page[j].LinkID == page[i].LinkID {
			j++
		}
		out = append(out, page[i:j])
		i = j
	}
	return out
}

// pushBatch sends one batch and records its outcome; the error is one that stops the target.
func (e *Engine) pushBatch(ctx context.Context, log *slog.Logger, w connectors.Writer, op string, batch []state.Change) error {
	gid := batch[0].TargetGroupID
	if gid == "" {
		// The group was to be created by this run and was not.
		return e.fail(ctx, batch, "group_not_created", errors.New("target group was not created"))
	}
	ids := make([]int64, len(batch))
	for k, c := range batch {
		ids[k] = c.ID
	}
	if err := e.o.Store.MarkInFlight(ctx, ids); err != nil {
		return err
	}
	err := writeMembers(ctx, w, op, gid, batch)
	switch {
	case err == nil:
		if err := e.recordMembers(ctx, op, batch); err != nil {
			return err
		}
		log.Debug("member changes applied", "operation", op, "target_group_id", gid, "members", len(batch))
		return nil
	case len(batch) > 1 && splittable(err):
		log.Info("member batch refused: splitting it to find the members the target refuses", "operation", op,
			"target_group_id", gid, "members", len(batch), "error", err)
		return e.bisectMembers(ctx, log, w, op, gid, batch, err)
	default:
		log.Warn("member changes failed", "operation", op, "target_group_id", gid, "members", len(batch), "error", err)
		return e.fail(ctx, batch, "", err)
	}
}

// writeMembers sends one add or remove call for the batch.
func writeMembers(ctx context.Context, w connectors.Writer, op, gid string, batch []state.Change) error {
	accounts := make([]string, len(batch))
	for k, c := range batch {
		accounts[k] = c.TargetAccountID
	}
	if op == "add_member" {
		return w.AddMembers(ctx, gid, accounts)
	}
	err := w.RemoveMembers(ctx, gid, accounts)
	if errors.Is(err, connectors.ErrNotFound) {
		return nil // not a member (or no group): the desired state holds
	}
	return err
}

// recordMembers records an applied batch. The target has the write: it is recorded even
// when a shutdown cancelled ctx meanwhile, or SIGTERM would leave an applied change in flight.
func (e *Engine) recordMembers(ctx context.Context, op string, batch []state.Change) error {
	rctx := context.WithoutCancel(ctx)
	var err error
	if op == "add_member" {
		err = e.o.Store.RecordMembersAdded(rctx, batch)
	} else {
		err = e.o.Store.RecordMembersRemoved(rctx, batch)
	}
	if err != nil {
		return err
	}
	e.applied(ctx, batch)
	return nil
}

// splittable reports whether a refused batch may hold members the target would take: the
// target refused the request itself (a 4xx about its content, e.g. one dead account id), not
// the group (gone), the credentials, or the moment (transient).
func splittable(err error) bool {
	return errors.Is(err, connectors.ErrPermanent) && !errors.Is(err, connectors.ErrNotFound) &&
		!errors.Is(err, connectors.ErrUnauthorized) && !connectors.IsTransient(err)
}

// refused is a part of a batch the target refused, with the refusal.
type refused struct {
	cs  []state.Change
	err error
}

// bisectMembers splits a batch the target refused as a whole (an all-or-nothing batch call
// with one bad member in it) until the good members are applied and each bad one fails alone
// with its own error. Calls are bounded by len(batch)+2·⌈log2 len(batch)⌉: a split costs 2
// calls and is only made while the budget left still covers one call per member not yet
// settled; past that, the rest goes one member per call.
func (e *Engine) bisectMembers(ctx context.Context, log *slog.Logger, w connectors.Writer, op, gid string, batch []state.Change, first error) error {
	budget := len(batch) + 2*bits.Len(uint(len(batch)-1))
	unsettled := len(batch)
	queue := []refused{{batch, first}}
	for len(queue) > 0 {
		part := queue[0]
		queue = queue[1:]
		if ctx.Err() != nil || len(part.cs) == 1 {
			unsettled -= len(part.cs)
			if err := e.failRefused(ctx, log, op, gid, part); err != nil {
				return e.failRest(ctx, queue, err)
			}
			continue
		}
		var parts [][]state.Change
		if budget-2 >= unsettled {
			half := len(part.cs) / 2
			parts = [][]state.Change{part.cs[:half], part.cs[half:]}
		} else {
			for k := range part.cs {
				parts = append(parts, part.cs[k:k+1])
			}
		}
		for _, p := range parts {
			budget--
			err := writeMembers(ctx, w, op, gid, p)
			switch {
			case err == nil:
				unsettled -= len(p)
				if err := e.recordMembers(ctx, op, p); err != nil {
					return e.failRest(ctx, queue, err)
				}
			case len(p) > 1 && splittable(err):
				queue = append(queue, refused{p, err})
			default:
				unsettled -= len(p)
				if err := e.failRefused(ctx, log, op, gid, refused{p, err}); err != nil {
					return e.failRest(ctx, queue, err)
				}
			}
		}
	}
	return nil
}

func (e *Engine) failRefused(ctx context.Context, log *slog.Logger, op, gid string, r refused) error {
	log.Warn("member changes failed", "operation", op, "target_group_id", gid, "members", len(r.cs),
		"account_id", r.cs[0].TargetAccountID, "error", r.err)
	return e.fail(ctx, r.cs, "", r.err)
}

// failRest fails the parts still queued (marked in flight) when the split stops early, and
// returns why it stopped.
func (e *Engine) failRest(ctx context.Context, queue []refused, stop error) error {
	for _, r := range queue {
		if err := e.fail(ctx, r.cs, "not_attempted", fmt.Errorf("not attempted: %w", stop)); err != nil && !errors.Is(err, stop) {
			return errors.Join(stop, err)
		}
	}
	return stop
}
