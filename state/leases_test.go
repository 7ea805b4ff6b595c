package state_test

import (
	"errors"
	"testing"
	"time"

	"github.com/groupsync/groupsync/state"
	"github.com/groupsync/groupsync/state/statetest"
)

func TestLeaseIsExclusiveAndExpires(t *testing.T) {
	st := statetest.Store(t)
	ctx := t.Context()
	a, err := st.AcquireLease(ctx, "f", "replica-a", time.Minute, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := st.AcquireLease(ctx, "f", "replica-b", time.Minute, nil); !errors.Is(err, state.ErrLeaseHeld) {
		t.Fatalf("second replica got a held lease: %v", err)
	}
	if _, err := st.AcquireLease(ctx, "other-flow", "replica-b", time.Minute, nil); err != nil {
		t.Fatalf("leases of different flows are independent: %v", err)
	}
	// A dead holder's lease is taken over once it expires, with a new term (fencing).
	if _, err := st.Pool().Exec(ctx, `UPDATE leases SET expires_at = now() - interval '1 second' WHERE flow = 'f'`); err != nil {
		t.Fatal(err)
	}
	b, err := st.AcquireLease(ctx, "f", "replica-b", time.Minute, nil)
	if err != nil || b.Term <= a.Term {
		t.Fatalf("takeover = %+v, %v; want a higher term than %d", b, err, a.Term)
	}
	if _, err := st.RenewLease(ctx, a, time.Minute); !errors.Is(err, state.ErrFenced) {
		t.Fatalf("the old holder renewed a lease taken over: %v", err)
	}
	if err := st.ReleaseLease(ctx, b); err != nil {
		t.Fatal(err)
	}
	if _, err := st.AcquireLease(ctx, "f", "replica-a", time.Minute, nil); err != nil {
		t.Fatalf("a released lease is free: %v", err)
	}
}

func TestLeaseRunsEachTickOnce(t *testing.T) {
	st := statetest.Store(t)
	ctx := t.Context()
	tick := time.Date(2026, 5, 1, 12, 0, 0, 0, time.UTC)
	l, err := st.AcquireLease(ctx, "f", "replica-a", time.Minute, &tick)
	if err != nil {
		t.Fatal(err)
	}
	if err := st.ReleaseLease(ctx, l); err != nil {
		t.Fatal(err)
	}
	// The lease is free, but this tick already ran.
	if _, err := st.AcquireLease(ctx, "f", "replica-b", time.Minute, &tick); !errors.Is(err, state.ErrLeaseHeld) {
		t.Fatalf("a replica waking late ran the same tick again: %v", err)
	}
	next := tick.Add(time.Minute)
	if _, err := st.AcquireLease(ctx, "f", "replica-b", time.Minute, &next); err != nil {
		t.Fatalf("the next tick: %v", err)
	}
}

// TestRenewerRenewsOnItsOwnConnection: the Renewer extends a held lease over a connection
// outside the pool (schema-qualified SQL, no search_path needed) and reports a takeover as
// ErrFenced naming the new holder.
func TestRenewerRenewsOnItsOwnConnection(t *testing.T) {
	st := statetest.Store(t)
	ctx := t.Context()
	l, err := st.AcquireLease(ctx, "f", "a", time.Second, nil)
	if err != nil {
		t.Fatal(err)
	}
	r := st.NewRenewer()
	defer r.Close()
	renewed, err := r.Renew(ctx, l, time.Hour)
	if err != nil || !renewed.Expires.After(l.Expires.Add(30*time.Minute)) {
		t.Fatalf("renewal = %+v, %v; want the expiry an hour out", renewed, err)
	}
	if _, err := st.Pool().Exec(ctx, `UPDATE leases SET expires_at = now() - interval '1 second'`); err != nil {
		t.Fatal(err)
	}
	if _, err := st.AcquireLease(ctx, "f", "b", time.Minute, nil); err != nil {
		t.Fatal(err)
	}
	var fe *state.FencedError
	if _, err := r.Renew(ctx, renewed, time.Hour); !errors.As(err, &fe) || fe.By != "b" {
		t.Fatalf("renewal after a takeover: %v; want fenced out, taken over by b", err)
	}
}
