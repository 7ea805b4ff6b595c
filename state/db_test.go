package state_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/groupsync/groupsync/state"
	"github.com/groupsync/groupsync/state/statetest"
)

// TestNoSessionStateOnPooledConnections: after the store used a connection, the
// connection itself carries none of the store's settings (what PgBouncer in transaction
// mode would hand to another client), yet the store's statements resolve in its schema.
func TestNoSessionStateOnPooledConnections(t *testing.T) {
	s := statetest.StoreWithOptions(t, state.Options{MaxConns: 1})
	ctx := t.Context()
	var n int64
	if err := s.Pool().QueryRow(ctx, `SELECT count(*) FROM runs`).Scan(&n); err != nil {
		t.Fatalf("unqualified query in the store's schema: %v", err)
	}
	conn, err := s.Pool().Acquire(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Release()
	var path, buffers string
	if err := conn.QueryRow(ctx, `SELECT current_setting('search_path'), current_setting('temp_buffers')`).Scan(&path, &buffers); err != nil {
		t.Fatal(err)
	}
	if strings.Contains(path, s.Schema()) {
		t.Errorf("the pooled connection's session search_path is %q: session state leaked", path)
	}
	if buffers == "32MB" {
		t.Errorf("temp_buffers was set at connection start (PgBouncer refuses that startup parameter)")
	}
	if conn.Conn().Config().DefaultQueryExecMode != pgx.QueryExecModeExec {
		t.Errorf("query exec mode %v, want exec (no server-side prepared statements)", conn.Conn().Config().DefaultQueryExecMode)
	}
}

// TestPoolAcquireTimesOutNamingTheSetting: with every connection held, a statement fails
// after the acquire timeout with an error that names database.max_conns, instead of hanging.
func TestPoolAcquireTimesOutNamingTheSetting(t *testing.T) {
	s := statetest.StoreWithOptions(t, state.Options{MaxConns: 1, AcquireTimeout: 200 * time.Millisecond})
	ctx := t.Context()
	tx, err := s.Pool().Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback(context.WithoutCancel(ctx))
	start := time.Now()
	_, err = s.Pool().Exec(ctx, `SELECT 1`)
	if !errors.Is(err, state.ErrPoolExhausted) || !strings.Contains(err.Error(), "database.max_conns") {
		t.Fatalf("Exec with the pool exhausted = %v, want ErrPoolExhausted naming database.max_conns", err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Fatalf("the acquire gave up after %s, want about 200ms", d)
	}
	if err := tx.Rollback(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Pool().Exec(ctx, `SELECT 1`); err != nil {
		t.Fatalf("after the connection came back: %v", err)
	}
}

// TestQueryRowsEndTheirTransaction: rows read to the end, or closed early, give their
// connection back (with MaxConns 1, the next statement would otherwise time out).
func TestQueryRowsEndTheirTransaction(t *testing.T) {
	s := statetest.StoreWithOptions(t, state.Options{MaxConns: 1, AcquireTimeout: time.Second})
	ctx := t.Context()
	for _, early := range []bool{false, true} {
		rows, err := s.Pool().Query(ctx, `SELECT g FROM generate_series(1, 3) g`)
		if err != nil {
			t.Fatal(err)
		}
		for rows.Next() {
			if early {
				break
			}
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			t.Fatal(err)
		}
		if _, err := s.Pool().Exec(ctx, `SELECT 1`); err != nil {
			t.Fatalf("early=%v: the connection was not given back: %v", early, err)
		}
	}
}
