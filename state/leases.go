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

// RenewLease extends a held lease; ErrLeaseHeld if it was taken over meanwhile.
func (s *Store) RenewLease(ctx context.Context, l Lease, ttl time.Duration) (Lease, error) {
	err := s.pool.QueryRow(ctx, `
		UPDATE leases SET expires_at = now() + $4 * interval '1 millisecond'
		 WHERE flow = $1 AND holder = $2 AND term = $3
		RETURNING expires_at`, l.Flow, l.Holder, l.Term, ttl.Milliseconds()).Scan(&l.Expires)
	if errors.Is(err, pgx.ErrNoRows) {
		return l, ErrLeaseHeld
	}
	if err != nil {
		return l, fmt.Errorf("state: renew lease of flow %q: %w", l.Flow, err)
	}
	return l, nil
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
