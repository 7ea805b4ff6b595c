package syncengine

import (
	"cmp"
	"context"
	"log/slog"
	"slices"
	"sync"

	"github.com/groupsync/groupsync/connectors"
	"github.com/groupsync/groupsync/state"
)

// pushPageSize is how many changes one read of a target's plan takes: the push streams the
// plan (it is never loaded whole), and reads the next page while this one is being pushed.
const pushPageSize = 500

// targetPush is one target's push in progress. Every phase hands its work to one pool of
// PushWorkers workers, so a phase's pages, and the member additions of groups whose create
// has landed, go out without waiting for the rest of their phase: with 100–300 ms a call,
// a barrier per page or per operation leaves the target's rate unused while the last
// calls of one step finish and the first of the next are read.
type targetPush struct {
	runID  int64
	target string
	log    *slog.Logger
	conn   connectors.Connector
	w      connectors.Writer // nil: the target takes no writes
	caps   connectors.Capabilities
	pool   *pushPool
}

// pushPool runs pushes PushWorkers at a time until one returns an error that stops the
// target (recorded, and every later submit refused) or the run is halted. What was never
// started stays planned for pushAll to settle.
type pushPool struct {
	ctx  context.Context
	work chan func()
	wg   sync.WaitGroup

	mu   sync.Mutex
	stop error
}

func newPushPool(ctx context.Context, workers int) *pushPool {
	p := &pushPool{ctx: ctx, work: make(chan func())}
	for range max(workers, 1) {
		p.wg.Add(1)
		go func() {
			defer p.wg.Done()
			for fn := range p.work {
				fn()
			}
		}()
	}
	return p
}

// stopped reports whether nothing new may start: a push stopped the target, or the run is
// halted (shutdown, lease lost).
func (p *pushPool) stopped() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.stop != nil || halted(p.ctx)
}

// fail records err as what stops the target; the first one wins.
func (p *pushPool) fail(err error) {
	if err == nil {
		return
	}
	p.mu.Lock()
	p.stop = cmp.Or(p.stop, err)
	p.mu.Unlock()
}

func (p *pushPool) err() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.stop
}

// submit hands push to the next free worker (waiting for one), counted in phase so the
// phase can wait for its own pushes; it reports false, and runs nothing, once stopped.
func (p *pushPool) submit(phase *sync.WaitGroup, push func() error) bool {
	if p.stopped() {
		return false
	}
	phase.Add(1)
	p.work <- func() {
		defer phase.Done()
		if p.stopped() {
			return // stopped while queued: left planned
		}
		p.fail(push())
	}
	return true
}

// close ends the workers once every submitted push is done.
func (p *pushPool) close() {
	close(p.work)
	p.wg.Wait()
}

// eachPage reads op's planned changes of the target in pages and hands each to fn, until
// the plan is read or the target stopped.
func (e *Engine) eachPage(ctx context.Context, t *targetPush, op string, fn func([]state.Change) error) error {
	var after int64
	for !t.pool.stopped() {
		page, err := e.o.Store.Changes(ctx, state.ChangeFilter{RunID: t.runID, TargetSystem: t.target, Operation: op,
			Status: state.ChangePlanned, AfterID: after, Limit: pushPageSize})
		if err != nil || len(page) == 0 {
			return err
		}
		after = page[len(page)-1].ID
		if t.w == nil {
			if err := e.fail(ctx, page, "unsupported", connectors.ErrUnsupported); err != nil {
				return err
			}
			continue
		}
		if err := fn(page); err != nil {
			return err
		}
	}
	return nil
}

// pushGroupOp pushes op's group changes (creates, restores, deletions, archivals), each
// as soon as a worker is free, and returns once all of them are settled. They concern
// distinct groups (renames, which can collide, go through pushUpdates in order), so they
// need no order among themselves. landed, when set, is told each group that settled.
func (e *Engine) pushGroupOp(ctx context.Context, t *targetPush, op string, landed func(linkID int64)) {
	var phase sync.WaitGroup
	err := e.eachPage(ctx, t, op, func(page []state.Change) error {
		for _, c := range page {
			if !t.pool.submit(&phase, func() error {
				err := e.pushGroup(ctx, t.log, t.conn, t.w, t.caps, c)
				if landed != nil {
					landed(c.LinkID)
				}
				return err
			}) {
				break
			}
		}
		return nil
	})
	t.pool.fail(err)
	phase.Wait()
}

// pushTarget applies one target's planned changes under the order rules, streaming each
// operation's changes page by page:
//
//  1. deletions, all settled first: a group deleted and recreated under the same name at
//     the source has its old target group deleted (planned, and past the guard) before the
//     new one is created under the name it frees (the plan counts that name free), so it
//     converges in one run;
//  2. creates, then restores (as before: a create looking its name up finds a group still
//     archived, which it does not adopt, rather than one a restore just brought back), then
//     renames and other updates (pushUpdates, in their own order; after the restores, as
//     an archived group refuses changes: Socialcast). Meanwhile the member additions go
//     out, each batch as soon as its group exists (memberGates): one whose group this run
//     creates or restores waits for that change, any other goes at once;
//  3. removals, once every addition is settled: someone moved between two groups gains
//     the new one before losing the old, so a failing run errs on the side of access;
//  4. archivals, last.
//
// It returns what stopped the target (bad credentials, the database), if anything.
func (e *Engine) pushTarget(ctx context.Context, log *slog.Logger, runID int64, target string) error {
	conn := e.o.Connectors[target]
	w, _ := conn.(connectors.Writer)
	t := &targetPush{runID: runID, target: target, log: log, conn: conn, w: w, caps: conn.Capabilities(),
		pool: newPushPool(ctx, e.o.PushWorkers)}
	defer t.pool.close()
	e.pushGroupOp(ctx, t, "delete_group", nil)
	gates := newMemberGates()
	var wg sync.WaitGroup
	wg.Go(func() {
		e.pushGroupOp(ctx, t, "create_group", gates.landed)
		e.pushGroupOp(ctx, t, "restore_group", gates.landed)
		// Every create and restore is settled: additions read from now on see their group.
		gates.finish()
		if w != nil && !t.pool.stopped() {
			t.pool.fail(e.pushUpdates(ctx, log, runID, target, w, t.pool.stopped))
		}
	})
	e.pushMemberOp(ctx, t, "add_member", gates)
	wg.Wait()
	e.pushMemberOp(ctx, t, "remove_member", nil)
	e.pushGroupOp(ctx, t, "archive_group", nil)
	return t.pool.err()
}

// pushMemberOp pushes op's member changes in batches of the target's per-call maximum,
// each batch as soon as a worker is free and (with gates) its group exists. A batch cut
// short by the end of a page waits for the next page, so a group whose members straddle
// two pages still goes in full batches. It returns once every batch is settled.
func (e *Engine) pushMemberOp(ctx context.Context, t *targetPush, op string, gates *memberGates) {
	size := max(t.caps.MaxMembersPerWrite, 1)
	var phase sync.WaitGroup
	submit := func(b []state.Change) bool {
		return t.pool.submit(&phase, func() error { return e.pushBatch(ctx, t.log, t.w, op, b) })
	}
	// send submits batches read when every group had landed (landed) directly, the others
	// through the gates.
	send := func(batches [][]state.Change, landed bool) error {
		if landed {
			for _, b := range batches {
				if !submit(b) {
					break
				}
			}
			return nil
		}
		return gates.submitWhenLanded(ctx, e.o.Store, t, batches, submit)
	}
	// Whether every group had landed is taken before each page is read: the page then
	// carries the group id of every create. The carried tail was read before the page.
	landed := gates == nil || gates.done()
	var carry []state.Change
	err := e.eachPage(ctx, t, op, func(page []state.Change) error {
		batches := memberBatches(slices.Concat(carry, page), size)
		carry = nil
		if last := batches[len(batches)-1]; len(page) == pushPageSize && len(last) < size {
			carry, batches = last, batches[:len(batches)-1]
		}
		err := send(batches, landed)
		if len(carry) == 0 {
			landed = gates == nil || gates.done()
		}
		return err
	})
	if err == nil && len(carry) > 0 && !t.pool.stopped() {
		err = send([][]state.Change{carry}, landed) // the plan ended right after a full page
	}
	t.pool.fail(err)
	phase.Wait()
}

// memberGates holds member additions back until their group exists in the target: a batch
// whose group this run creates or restores waits until that change is settled, and then
// goes to the group the create recorded (or fails as group_not_created if it failed),
// while the additions to every other group go out meanwhile.
type memberGates struct {
	mu       sync.Mutex
	watched  map[int64]*gate // by link id
	finished bool
}

// gate is closed when its link's create or restore is settled.
type gate struct {
	settled chan struct{}
	refs    int
}

func newMemberGates() *memberGates { return &memberGates{watched: map[int64]*gate{}} }

// done reports whether every create and restore of the push is settled.
func (g *memberGates) done() bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.finished
}

// landed is told that link's create or restore is settled (its outcome recorded).
func (g *memberGates) landed(link int64) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if gt := g.watched[link]; gt != nil {
		close(gt.settled)
		delete(g.watched, link)
	}
}

// finish opens every gate: the creates and restores are all settled, or the push stopped
// and will not settle the rest (what waits then finds the pool stopped, or its group's
// change unsettled, and sends nothing to a group that does not exist).
func (g *memberGates) finish() {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.finished = true
	for link, gt := range g.watched {
		close(gt.settled)
		delete(g.watched, link)
	}
}

// watch registers for the links' gates before their changes are read, so that a settle
// between the read and the wait is not missed; release drops the registration.
func (g *memberGates) watch(links []int64) (gates map[int64]*gate, release func()) {
	g.mu.Lock()
	defer g.mu.Unlock()
	gates = make(map[int64]*gate, len(links))
	for _, l := range links {
		gt := g.watched[l]
		if gt == nil {
			gt = &gate{settled: make(chan struct{})}
			if g.finished {
				close(gt.settled)
			} else {
				g.watched[l] = gt
			}
		}
		gt.refs++
		gates[l] = gt
	}
	return gates, func() {
		g.mu.Lock()
		defer g.mu.Unlock()
		for l, gt := range gates {
			if gt.refs--; gt.refs == 0 && g.watched[l] == gt {
				delete(g.watched, l)
			}
		}
	}
}

// submitWhenLanded submits the batches in order, each once its group's create or restore
// of this run (if it has one) is settled, with the group id the create recorded. It stops
// early, leaving the rest planned, when the pool does.
func (g *memberGates) submitWhenLanded(ctx context.Context, st *state.Store, t *targetPush, batches [][]state.Change,
	submit func([]state.Change) bool) error {
	var links []int64
	for _, b := range batches {
		links = append(links, b[0].LinkID)
	}
	slices.Sort(links)
	links = slices.Compact(links)
	gates, release := g.watch(links)
	defer release()
	writes, err := st.GroupWrites(ctx, t.runID, t.target, links)
	if err != nil {
		return err
	}
	for _, b := range batches {
		link := b[0].LinkID
		if gw, ok := writes[link]; ok && gw.Pending() {
			select {
			case <-gates[link].settled:
			case <-ctx.Done():
				return nil // the caller records the interruption
			}
			if t.pool.stopped() {
				return nil
			}
			fresh, err := st.GroupWrites(ctx, t.runID, t.target, []int64{link})
			if err != nil {
				return err
			}
			writes[link] = fresh[link]
		}
		if gid := writes[link].TargetGroupID; b[0].TargetGroupID == "" && gid != "" {
			for k := range b {
				b[k].TargetGroupID = gid
			}
		}
		if !submit(b) {
			return nil
		}
	}
	return nil
}
