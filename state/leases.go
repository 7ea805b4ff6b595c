package state

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
)

// Lease is a replica's right to run one flow until Expires. Term grows with every change
// of holder, so a replica that paused past its expiry can tell it lost the lease.
type Lease struct {
	Flow    string
	Holder  string
	Term    int64
	Expires time.Time
}

// ErrLeaseHeld is returned when another replica holds a live lease, or already started the
// same scheduled tick.
var ErrLeaseHeld = errors.New("lease held by another replica")

// AcquireLease takes the flow's lease for holder for ttl. With tick set, it also refuses a
// tick that some replica already started, so replicas waking for the same schedule run it
// once even when the first finished before the second woke. The row is created on first use.
// A live lease is re-entered only by the very same holder string, which names one process
// start (syncengine's default holder carries a random id), with a new term; any other
// holder waits for its expiry. A takeover waits for fenced writes in progress (checkFence).
func (s *Store) AcquireLease(ctx context.Context, flow, holder string, ttl time.Duration, tick *time.Time) (Lease, error) {
	l := Lease{Flow: flow, Holder: holder}
	err := s.pool.QueryRow(ctx, `
		INSERT INTO leases AS l (flow, holder, term, acquired_at, expires_at, last_tick)
		VALUES ($1, $2, 1, now(), now() + $3 * interval '1 millisecond', $4)
		ON CONFLICT (flow) DO UPDATE
		   SET holder = excluded.holder,
		       term = l.term + 1,
		       acquired_at = now(),
		       expires_at = excluded.expires_at,
		       last_tick = coalesce(excluded.last_tick, l.last_tick)
		 WHERE (l.expires_at < now() OR l.holder = excluded.holder)
		   AND ($4::timestamptz IS NULL OR l.last_tick IS NULL OR l.last_tick < $4::timestamptz)
		RETURNING term, expires_at`, flow, holder, ttl.Milliseconds(), tick).Scan(&l.Term, &l.Expires)
	if errors.Is(err, pgx.ErrNoRows) {
		return l, ErrLeaseHeld
	}
	if err != nil {
		return l, fmt.Errorf("state: acquire lease of flow %q: %w", flow, err)
	}
	return l, nil
}

// RenewLease extends a held lease; an error matching ErrFenced if it was taken over
// meanwhile. A lease still naming this holder and term is renewed even when it expired
// without a takeover: nobody else wrote under it, because taking it bumps the term.
func (s *Store) RenewLease(ctx context.Context, l Lease, ttl time.Duration) (Lease, error) {
	return s.renew(ctx, s.pool, l, ttl)
}

// querier is a pool or a single connection.
type querier interface {
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
}

// renew runs the renewal on q. Its SQL is schema-qualified, so it runs the same on a
// connection of its own that has no search_path (Renewer).
func (s *Store) renew(ctx context.Context, q querier, l Lease, ttl time.Duration) (Lease, error) {
	leases := pgx.Identifier{s.schema, "leases"}.Sanitize()
	var expires *time.Time
	var holder string
	var term int64
	err := q.QueryRow(ctx, `
		WITH renewed AS (
			UPDATE `+leases+` SET expires_at = now() + $4 * interval '1 millisecond'
			 WHERE flow = $1 AND holder = $2 AND term = $3
			RETURNING expires_at)
		SELECT (SELECT expires_at FROM renewed), holder, term FROM `+leases+` WHERE flow = $1`,
		l.Flow, l.Holder, l.Term, ttl.Milliseconds()).Scan(&expires, &holder, &term)
	switch {
	case errors.Is(err, pgx.ErrNoRows):
		return l, &FencedError{Flow: l.Flow, Term: l.Term, Why: "gone"}
	case err != nil:
		return l, fmt.Errorf("state: renew lease of flow %q: %w", l.Flow, err)
	case expires == nil:
		return l, &FencedError{Flow: l.Flow, Term: l.Term, By: holder, ByTerm: term}
	}
	l.Expires = *expires
	return l, nil
}

// Renewer renews leases on a database connection of its own, so that pushes and merges
// holding every pooled connection cannot delay a renewal past the lease's expiry. It
// connects on first use and again after any failure. Not safe for concurrent use: each run
// keeps its own.
type Renewer struct {
	s    *Store
	conn *pgx.Conn
}

// NewRenewer returns a Renewer for s's leases; Close it when done.
func (s *Store) NewRenewer() *Renewer { return &Renewer{s: s} }

// Renew is RenewLease on the Renewer's connection; ctx bounds the connect and the renewal.
func (r *Renewer) Renew(ctx context.Context, l Lease, ttl time.Duration) (Lease, error) {
	if r.conn == nil {
		conn, err := pgx.ConnectConfig(ctx, r.s.pool.Config().ConnConfig.Copy())
		if err != nil {
			return l, fmt.Errorf("state: connect to renew lease of flow %q: %w", l.Flow, err)
		}
		r.conn = conn
	}
	nl, err := r.s.renew(ctx, r.conn, l, ttl)
	var fenced *FencedError
	if err != nil && !errors.As(err, &fenced) {
		// A timed-out or broken connection is not reused: the next renewal reconnects.
		r.Close()
	}
	return nl, err
}

// Close closes the Renewer's connection, if open.
func (r *Renewer) Close() {
	if r.conn != nil {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		_ = r.conn.Close(ctx)
		r.conn = nil
	}
}

// ReleaseLease frees a held lease at once (it stays recorded with its last tick).
func (s *Store) ReleaseLease(ctx context.Context, l Lease) error {
	_, err := s.pool.Exec(ctx, `UPDATE leases SET expires_at = now() WHERE flow = $1 AND holder = $2 AND term = $3`,
		l.Flow, l.Holder, l.Term)
	if err != nil {
		return fmt.Errorf("state: release lease of flow %q: %w", l.Flow, err)
	}
	return nil
}

// LeaseHolder returns who holds the flow's lease and whether it is still live; ErrNotFound
// if the flow never had one.
func (s *Store) LeaseHolder(ctx context.Context, flow string) (holder string, live bool, err error) {
	err = s.pool.QueryRow(ctx, `SELECT holder, expires_at > now() FROM leases WHERE flow = $1`, flow).Scan(&holder, &live)
	if errors.Is(err, pgx.ErrNoRows) {
		return "", false, ErrNotFound
	}
	if err != nil {
		return "", false, fmt.Errorf("state: lease of flow %q: %w", flow, err)
	}
	return holder, live, nil
}

// ExpireLease ends the flow's lease if holder still holds it: for a holder known to be dead.
func (s *Store) ExpireLease(ctx context.Context, flow, holder string) error {
	_, err := s.pool.Exec(ctx, `UPDATE leases SET expires_at = now() WHERE flow = $1 AND holder = $2`, flow, holder)
	if err != nil {
		return fmt.Errorf("state: expire lease of flow %q: %w", flow, err)
	}
	return nil
}
