package syncengine

import (
	"context"
	"errors"
	"sync"
	"time"

	"github.com/groupsync/groupsync/state"
)

// Graceful shutdown (SIGTERM, a deploy). The caller's context ending is a request to stop,
// not an abort: the run starts nothing new (no next change, no next page of a pull), the
// change in flight finishes and is recorded, and the run is recorded interrupted, not
// failed: the next run carries on from the mirror. Only when the grace period passes with a
// request still in flight is it cancelled (ErrShutdownGrace); the engine's interrupted-change
// reconciliation then covers a write whose outcome is unknown.

// DefaultShutdownGrace is how long a run's request in flight may take after a shutdown is
// requested. It fits Kubernetes' default terminationGracePeriodSeconds (30s) with room to
// record the run; `docker stop` needs --time 30 (compose.yaml sets stop_grace_period).
const DefaultShutdownGrace = 20 * time.Second

// ErrShutdownGrace is the cause of a run's context when the grace period after a shutdown
// request passed with a request still in flight.
var ErrShutdownGrace = errors.New("shutdown grace period over: the request in flight was cancelled")

// errInterrupted is the error of a run interrupted by a shutdown.
var errInterrupted = errors.New("interrupted by shutdown before it finished; the next run carries on")

// stopKey holds, in a run's context, the caller's context whose end asks the run to stop.
type stopKey struct{}

// graceful returns the context a run works under: ctx's values, but not its end. When ctx
// ends, stopRequested is true at once and the returned context is cancelled grace later.
// release frees the timer; call it when the run is over.
func graceful(ctx context.Context, grace time.Duration) (context.Context, func()) {
	run, cancel := context.WithCancelCause(context.WithValue(context.WithoutCancel(ctx), stopKey{}, ctx))
	var (
		mu    sync.Mutex
		timer *time.Timer
		done  bool
	)
	stopWatch := context.AfterFunc(ctx, func() {
		mu.Lock()
		defer mu.Unlock()
		if !done {
			timer = time.AfterFunc(grace, func() { cancel(ErrShutdownGrace) })
		}
	})
	return run, func() {
		stopWatch()
		mu.Lock()
		done = true
		if timer != nil {
			timer.Stop()
		}
		mu.Unlock()
		cancel(nil)
	}
}

// stopRequested reports whether the run was asked to stop (its caller's context ended).
func stopRequested(ctx context.Context) bool {
	soft, _ := ctx.Value(stopKey{}).(context.Context)
	return soft != nil && soft.Err() != nil
}

// halted reports whether the run must start nothing new: a shutdown was requested, or its
// context ended (grace over, lease lost).
func halted(ctx context.Context) bool { return ctx.Err() != nil || stopRequested(ctx) }

// untilStop returns ctx, also cancelled when a shutdown is requested: for the pulls, which
// write nothing outside the mirror and need not finish.
func untilStop(ctx context.Context) (context.Context, context.CancelFunc) {
	c, cancel := context.WithCancelCause(ctx)
	soft, _ := ctx.Value(stopKey{}).(context.Context)
	if soft == nil {
		return c, func() { cancel(nil) }
	}
	stop := context.AfterFunc(soft, func() { cancel(errInterrupted) })
	return c, func() { stop(); cancel(nil) }
}

// interruptedOutcome turns the outcome of a run asked to stop into an interrupted run:
// what it did not finish is not a failure. A run that finished anyway keeps its status.
func interruptedOutcome(ctx context.Context, status string, err error) (string, error) {
	if !stopRequested(ctx) || (status != state.RunFailed && status != state.RunPartial) {
		return status, err
	}
	if err == nil || errors.Is(err, context.Canceled) || errors.Is(err, errInterrupted) {
		return state.RunInterrupted, errInterrupted
	}
	return state.RunInterrupted, errors.Join(errInterrupted, err)
}
