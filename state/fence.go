package state

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// ErrFenced is returned by every status write of a run whose lease moved on (another
// replica took it over, or it expired) or whose local deadline passed. Such a write changes
// nothing. errors.As with *FencedError tells why.
var ErrFenced = errors.New("fenced out")

// FencedError says why a run was fenced out. It matches ErrFenced with errors.Is.
type FencedError struct {
	Flow string
	// Term is the fenced run's lease term.
	Term int64
	// By and ByTerm name the lease's holder when the database showed it taken over; By is
	// empty otherwise.
	By     string
	ByTerm int64
	// Why is the cause when the lease was not taken over: "expired", "not renewed before
	// its local deadline", "gone".
	Why string
}

func (e *FencedError) Error() string {
	if e.By != "" {
		return fmt.Sprintf("fenced out: lease of flow %q (term %d) taken over by %s (term %d)", e.Flow, e.Term, e.By, e.ByTerm)
	}
	return fmt.Sprintf("fenced out: lease of flow %q (term %d) %s", e.Flow, e.Term, e.Why)
}

// Is makes errors.Is(err, ErrFenced) hold.
func (e *FencedError) Is(target error) bool { return target == ErrFenced }

// Fence is a run's right to write: the lease (flow, holder, term) it runs under and a local
// deadline, the lease's expiry as last confirmed minus a safety margin, measured from when
// the confirming request was sent. Past the deadline the run must assume the lease lost even
// if the database cannot say so (unreachable, or this process was paused): the deadline is
// checked on this process's clock before the database is asked, and once passed it stays
// passed. A Fence is safe for concurrent use.
type Fence struct {
	Flow   string
	Holder string
	Term   int64
	// maxIdle bounds how long a fenced transaction may sit idle (a process paused inside
	// it) while it holds the lease row: a takeover waits for it at most this long.
	maxIdle time.Duration
	now     func() time.Time

	mu       sync.Mutex
	deadline time.Time
	lost     error
}

// NewFence returns the fence of a lease whose expiry is to be assumed at deadline (on now's
// clock; with time.Now that comparison uses the monotonic clock). ttl is the lease's TTL; a
// fenced transaction that stays idle for a quarter of it is ended by the database. now nil
// means time.Now.
func NewFence(l Lease, deadline time.Time, ttl time.Duration, now func() time.Time) *Fence {
	if now == nil {
		now = time.Now
	}
	return &Fence{Flow: l.Flow, Holder: l.Holder, Term: l.Term, deadline: deadline,
		maxIdle: max(ttl/4, 100*time.Millisecond), now: now}
}

// Extend moves the local deadline to deadline after a renewal. A deadline that already
// passed is not revived: the run may have stopped writing at it, and a run that passed its
// deadline writes nothing more.
func (f *Fence) Extend(deadline time.Time) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.lost == nil && !f.passedLocked() && deadline.After(f.deadline) {
		f.deadline = deadline
	}
}

// Deadline is the current local deadline.
func (f *Fence) Deadline() time.Time {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.deadline
}

// Lose marks the fence lost for good with err (a *FencedError, normally).
func (f *Fence) Lose(err error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.lost == nil {
		f.lost = err
	}
}

// Check returns nil while the run may still write, else an error matching ErrFenced. It
// does not ask the database: it is cheap enough to run before every request to a target.
func (f *Fence) Check() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.passedLocked()
	return f.lost
}

// passedLocked records and reports a passed deadline.
func (f *Fence) passedLocked() bool {
	if f.lost == nil && !f.now().Before(f.deadline) {
		f.lost = &FencedError{Flow: f.Flow, Term: f.Term, Why: "not renewed before its local deadline"}
	}
	return f.lost != nil
}

type fenceKey struct{}

// WithFence returns ctx carrying f: every status write made with it (and its children,
// context.WithoutCancel included) is conditioned on f.
func WithFence(ctx context.Context, f *Fence) context.Context {
	return context.WithValue(ctx, fenceKey{}, f)
}

// FenceFrom returns the fence ctx carries, or nil.
func FenceFrom(ctx context.Context) *Fence {
	f, _ := ctx.Value(fenceKey{}).(*Fence)
	return f
}

// checkFence is the one fencing check: every status write of changes.go and runs.go runs it
// first in its transaction. Without a fence in ctx (tools, tests) it allows the write. With
// one, it checks the local deadline, then locks the lease row FOR SHARE and checks that it
// still names this holder and term and has not expired: a takeover (which updates that row)
// waits until the transaction ends, so no write of the old term lands after it. The same
// statement bounds the transaction's idle time, so a process paused inside it cannot hold
// the row past the lease.
func (s *Store) checkFence(ctx context.Context, tx pgx.Tx) error {
	f := FenceFrom(ctx)
	if f == nil {
		return nil
	}
	if err := f.Check(); err != nil {
		return err
	}
	var holder string
	var term int64
	var live bool
	err := tx.QueryRow(ctx, `SELECT holder, term, expires_at > now(),
		       set_config('idle_in_transaction_session_timeout', $2, true)
		  FROM `+pgx.Identifier{s.schema, "leases"}.Sanitize()+` WHERE flow = $1 FOR SHARE`,
		f.Flow, strconv.FormatInt(f.maxIdle.Milliseconds(), 10)).Scan(&holder, &term, &live, nil)
	switch {
	case errors.Is(err, pgx.ErrNoRows):
		err = &FencedError{Flow: f.Flow, Term: f.Term, Why: "gone"}
	case err != nil:
		return fmt.Errorf("state: check lease of flow %q: %w", f.Flow, err)
	case holder != f.Holder || term != f.Term:
		err = &FencedError{Flow: f.Flow, Term: f.Term, By: holder, ByTerm: term}
	case !live:
		err = &FencedError{Flow: f.Flow, Term: f.Term, Why: "expired"}
	default:
		return nil
	}
	f.Lose(err)
	return err
}

// dbtx is what a status write needs of a pool or a transaction.
type dbtx interface {
	execer
	Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
}

// beginFenced returns where a status write runs: the pool when ctx carries no fence, else a
// transaction whose fence was checked. The caller ends it with end(err), which commits on a
// nil err, rolls back otherwise, and returns the outcome.
func (s *Store) beginFenced(ctx context.Context) (db dbtx, end func(error) error, err error) {
	f := FenceFrom(ctx)
	if f == nil {
		return s.pool, func(err error) error { return err }, nil
	}
	if err := f.Check(); err != nil {
		return nil, nil, err // before the database is asked: it may be unreachable
	}
	tx, err := s.pool.Begin(ctx)
	if err != nil {
		return nil, nil, fmt.Errorf("state: begin fenced write: %w", err)
	}
	if err := s.checkFence(ctx, tx); err != nil {
		_ = tx.Rollback(context.WithoutCancel(ctx))
		return nil, nil, err
	}
	return tx, func(err error) error {
		if err != nil {
			_ = tx.Rollback(context.WithoutCancel(ctx))
			return err
		}
		if err := tx.Commit(ctx); err != nil {
			return fmt.Errorf("state: commit fenced write: %w", err)
		}
		return nil
	}, nil
}

// RecordFenced records that a run was fenced out, the one write such a run still makes and
// only to what is its own: its run row becomes failed with the reason, its changes still
// planned fail with reason fenced (never sent), and those it left in_flight fail as
// interrupted, exactly as the next holder's ReconcileInterrupted would fail them (their
// outcome is unknown; the next pull reconciles). A run row the next holder already closed
// gets the precise reason. It returns the error recorded: cause, or the takeover when the
// lease names a new holder.
func (s *Store) RecordFenced(ctx context.Context, runID int64, f *Fence, cause error) (reported, err error) {
	reported = cause
	var holder string
	var term int64
	if err := s.pool.QueryRow(ctx, `SELECT holder, term FROM leases WHERE flow = $1`, f.Flow).Scan(&holder, &term); err == nil &&
		(holder != f.Holder || term != f.Term) {
		reported = &FencedError{Flow: f.Flow, Term: f.Term, By: holder, ByTerm: term}
	}
	reason := reported.Error()
	err = pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `UPDATE runs SET status = 'failed', finished_at = coalesce(finished_at, now()), error = $2
			WHERE id = $1 AND status IN ('running', 'failed')`, runID, reason); err != nil {
			return err
		}
		_, err := tx.Exec(ctx, `UPDATE changes SET status = 'failed', updated_at = now(),
			reason = CASE status WHEN 'planned' THEN 'fenced' ELSE 'interrupted' END,
			last_error = CASE status WHEN 'planned' THEN 'not sent: ' || $2
			                 ELSE 'interrupted between send and record; reconciled by the next pull' END
			WHERE run_id = $1 AND status IN ('planned', 'in_flight')`, runID, reason)
		return err
	})
	if err != nil {
		return reported, fmt.Errorf("state: record run %d fenced out: %w", runID, err)
	}
	return reported, nil
}

// fencedExec runs one statement as a fenced write (beginFenced): with a fence in ctx it
// changes nothing once the run's lease moved on.
func (s *Store) fencedExec(ctx context.Context, sql string, args ...any) (tag pgconn.CommandTag, err error) {
	db, end, err := s.beginFenced(ctx)
	if err != nil {
		return tag, err
	}
	defer func() { err = end(err) }()
	return db.Exec(ctx, sql, args...)
}
