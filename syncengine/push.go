package syncengine

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"

	"github.com/groupsync/groupsync/connectors"
	"github.com/groupsync/groupsync/state"
)

// pushOrder is the order operations are pushed in: groups exist before members are added
// to them, and removals come after additions so a failing run errs on the side of access.
var pushOrder = []string{"create_group", "update_group", "add_member", "remove_member", "archive_group", "delete_group"}

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
	reason := "not_attempted"
	if ctx.Err() != nil {
		reason = "interrupted"
		errs = append(errs, fmt.Errorf("push interrupted: %w", context.Cause(ctx)))
	}
	if _, err := e.o.Store.FailUnattempted(bg, runID, "", reason); err != nil {
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

// pushTarget applies one target's planned changes in pushOrder, page by page.
func (e *Engine) pushTarget(ctx context.Context, log *slog.Logger, runID int64, target string) error {
	conn := e.o.Connectors[target]
	w, _ := conn.(connectors.Writer)
	caps := conn.Capabilities()
	for _, op := range pushOrder {
		var after int64
		for {
			if err := ctx.Err(); err != nil {
				return nil // the caller records the interruption
			}
			page, err := e.o.Store.Changes(ctx, state.ChangeFilter{RunID: runID, TargetSystem: target, Operation: op,
				Status: state.ChangePlanned, AfterID: after, Limit: 500})
			if err != nil {
				return err
			}
			if len(page) == 0 {
				break
			}
			after = page[len(page)-1].ID
			if w == nil {
				if err := e.fail(ctx, page, "unsupported", connectors.ErrUnsupported); err != nil {
					return err
				}
				continue
			}
			var stop error
			switch op {
			case "add_member", "remove_member":
				stop = e.pushMembers(ctx, log, w, caps, op, page)
			default:
				for _, c := range page {
					if stop = e.pushGroup(ctx, log, conn, w, c); stop != nil {
						break
					}
				}
			}
			if stop != nil {
				return stop
			}
		}
	}
	return nil
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
	if e.o.Observer != nil && len(cs) > 0 {
		e.o.Observer.ChangeDone(cs[0].TargetSystem, cs[0].Operation, state.ChangeFailed, len(cs))
	}
	if fatalForTarget(cause) {
		return cause
	}
	return nil
}

func (e *Engine) applied(cs []state.Change) {
	if e.o.Observer != nil && len(cs) > 0 {
		e.o.Observer.ChangeDone(cs[0].TargetSystem, cs[0].Operation, state.ChangeApplied, len(cs))
	}
	if e.o.Progress != nil && len(cs) > 0 {
		e.o.Progress.Pushed(cs[0].TargetSystem, len(cs))
	}
}

// pushGroup applies one group change. A create first looks the name up, so a create whose
// earlier outcome was unknown adopts the group instead of duplicating it.
func (e *Engine) pushGroup(ctx context.Context, log *slog.Logger, conn connectors.Connector, w connectors.Writer, c state.Change) error {
	st := e.o.Store
	if err := st.MarkInFlight(ctx, []int64{c.ID}); err != nil {
		return err
	}
	spec := connectors.GroupSpec{Name: c.Payload.Name, Description: c.Payload.Description,
		Visibility: connectors.Visibility(c.Payload.Visibility)}
	clog := log.With("change_id", c.ID, "operation", c.Operation, "group", c.Payload.Name)
	var err error
	// Recording below uses context.WithoutCancel: once the target answered, a shutdown
	// must not leave the change in flight.
	switch c.Operation {
	case "create_group":
		var g connectors.Group
		g, err = conn.FindGroupByName(ctx, spec.Name)
		switch {
		case err == nil:
			clog.Info("group already exists in the target: adopted", "target_group_id", g.ID)
		case errors.Is(err, connectors.ErrNotFound):
			g, err = w.CreateGroup(ctx, spec)
			if err != nil && connectors.IsTransient(err) {
				// The create may have happened before the failure: look before anyone retries.
				if found, ferr := conn.FindGroupByName(ctx, spec.Name); ferr == nil {
					g, err = found, nil
				}
			}
		}
		if err == nil {
			err = st.RecordGroupWritten(context.WithoutCancel(ctx), c, g)
			if err != nil {
				return err
			}
			clog.Info("group created", "target_group_id", g.ID)
		}
	case "update_group":
		var g connectors.Group
		g, err = w.UpdateGroup(ctx, c.TargetGroupID, spec)
		if err == nil {
			if err = st.RecordGroupWritten(context.WithoutCancel(ctx), c, g); err != nil {
				return err
			}
			clog.Info("group updated", "target_group_id", c.TargetGroupID)
		}
	case "archive_group", "delete_group":
		mode := connectors.DeleteHard
		if c.Operation == "archive_group" {
			mode = connectors.DeleteArchive
		}
		err = w.DeleteGroup(ctx, c.TargetGroupID, mode)
		if errors.Is(err, connectors.ErrNotFound) {
			err = nil // already gone: the desired state holds
		}
		if err == nil {
			if err = st.RecordGroupDeleted(context.WithoutCancel(ctx), c, mode == connectors.DeleteArchive); err != nil {
				return err
			}
			clog.Info("group removed", "mode", mode, "target_group_id", c.TargetGroupID)
		}
	default:
		err = fmt.Errorf("unknown operation %q", c.Operation)
	}
	if err != nil {
		clog.Warn("change failed", "error", err)
		return e.fail(ctx, []state.Change{c}, "", err)
	}
	e.applied([]state.Change{c})
	return nil
}

// pushMembers applies member changes in batches of the target's per-call maximum, grouping
// consecutive changes of the same target group.
func (e *Engine) pushMembers(ctx context.Context, log *slog.Logger, w connectors.Writer, caps connectors.Capabilities, op string, page []state.Change) error {
	size := max(caps.MaxMembersPerWrite, 1)
	for i := 0; i < len(page); {
		j := i + 1
		for j < len(page) && j-i < size && page[j].TargetGroupID == page[i].TargetGroupID {
			j++
		}
		batch := page[i:j]
		i = j
		if ctx.Err() != nil {
			return nil
		}
		gid := batch[0].TargetGroupID
		if gid == "" {
			// The group was to be created by this run and was not.
			if err := e.fail(ctx, batch, "group_not_created", errors.New("target group was not created")); err != nil {
				return err
			}
			continue
		}
		ids := make([]int64, len(batch))
		accounts := make([]string, len(batch))
		for k, c := range batch {
			ids[k], accounts[k] = c.ID, c.TargetAccountID
		}
		if err := e.o.Store.MarkInFlight(ctx, ids); err != nil {
			return err
		}
		var err error
		if op == "add_member" {
			err = w.AddMembers(ctx, gid, accounts)
		} else {
			err = w.RemoveMembers(ctx, gid, accounts)
			if errors.Is(err, connectors.ErrNotFound) {
				err = nil // not a member (or no group): the desired state holds
			}
		}
		if err != nil {
			log.Warn("member changes failed", "operation", op, "target_group_id", gid, "members", len(batch), "error", err)
			if ferr := e.fail(ctx, batch, "", err); ferr != nil {
				return ferr
			}
			continue
		}
		// The target has the write: record it even when a shutdown cancelled ctx meanwhile,
		// or SIGTERM would leave an applied change in flight.
		rctx := context.WithoutCancel(ctx)
		if op == "add_member" {
			err = e.o.Store.RecordMembersAdded(rctx, batch)
		} else {
			err = e.o.Store.RecordMembersRemoved(rctx, batch)
		}
		if err != nil {
			return err
		}
		e.applied(batch)
		log.Debug("member changes applied", "operation", op, "target_group_id", gid, "members", len(batch))
	}
	return nil
}
