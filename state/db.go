package state

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
)

// DB is the store's handle on its connection pool. It keeps no session state on any
// connection, so the mirror works the same straight against Postgres and behind a pooler
// in transaction mode (PgBouncer hands each transaction whichever server connection is
// free, so a session-level SET would leak into other clients and be missing on the next
// transaction):
//
//   - every statement runs inside a transaction that begins with SET LOCAL search_path, so
//     the unqualified SQL of this package resolves in the mirror schema and nowhere else;
//   - a free connection is waited for at most AcquireTimeout, and the error names the
//     setting to raise, instead of a replica hanging forever on an exhausted pool.
//
// Its methods mirror *pgxpool.Pool's, so the rest of the package (and tests through
// Store.Pool) use it as they would the pool.
type DB struct {
	pool           *pgxpool.Pool
	beginSQL       string // BEGIN; SET LOCAL search_path …: one round trip
	acquireTimeout time.Duration
}

// ErrPoolExhausted is returned (wrapped) when no connection came free within the acquire
// timeout.
var ErrPoolExhausted = errors.New("no database connection came free in time")

func newDB(pool *pgxpool.Pool, schema string, acquireTimeout time.Duration) *DB {
	return &DB{
		pool: pool,
		// A simple-protocol query may hold several statements; pgx sends BeginQuery that
		// way, so the transaction starts and scopes search_path in one round trip.
		beginSQL:       "BEGIN; SET LOCAL search_path TO " + pgx.Identifier{schema}.Sanitize(),
		acquireTimeout: acquireTimeout,
	}
}

// acquired maps a timeout of the acquire itself (the caller's context still live) to an
// error that says what to change.
func (d *DB) acquired(ctx context.Context, err error) error {
	if err == nil {
		return nil
	}
	if ctx.Err() == nil && errors.Is(err, context.DeadlineExceeded) {
		return fmt.Errorf("%w: waited %s with all %d connections in use (raise database.max_conns or database.acquire_timeout, or check for a stuck replica)",
			ErrPoolExhausted, d.acquireTimeout, d.pool.Config().MaxConns)
	}
	return err
}

// Begin starts a transaction scoped to the mirror schema.
func (d *DB) Begin(ctx context.Context) (pgx.Tx, error) {
	actx, cancel := context.WithTimeout(ctx, d.acquireTimeout)
	defer cancel()
	conn, err := d.pool.Acquire(actx)
	if err != nil {
		return nil, d.acquired(ctx, err)
	}
	tx, err := conn.BeginTx(ctx, pgx.TxOptions{BeginQuery: d.beginSQL})
	if err != nil {
		conn.Release()
		return nil, err
	}
	return &poolTx{Tx: tx, conn: conn}, nil
}

// poolTx is a transaction on an acquired connection, released when it ends.
type poolTx struct {
	pgx.Tx
	conn     *pgxpool.Conn
	released bool
}

func (t *poolTx) release() {
	if !t.released {
		t.released = true
		t.conn.Release()
	}
}

func (t *poolTx) Commit(ctx context.Context) error {
	err := t.Tx.Commit(ctx)
	t.release()
	return err
}

func (t *poolTx) Rollback(ctx context.Context) error {
	err := t.Tx.Rollback(ctx)
	t.release()
	return err
}

// Exec runs one statement in its own transaction.
func (d *DB) Exec(ctx context.Context, sql string, args ...any) (pgconn.CommandTag, error) {
	var tag pgconn.CommandTag
	err := pgx.BeginFunc(ctx, d, func(tx pgx.Tx) error {
		var err error
		tag, err = tx.Exec(ctx, sql, args...)
		return err
	})
	return tag, err
}

// QueryRow runs one query in its own transaction when the row is scanned.
func (d *DB) QueryRow(ctx context.Context, sql string, args ...any) pgx.Row {
	return rowFunc(func(dest ...any) error {
		return pgx.BeginFunc(ctx, d, func(tx pgx.Tx) error {
			return tx.QueryRow(ctx, sql, args...).Scan(dest...)
		})
	})
}

type rowFunc func(dest ...any) error

func (f rowFunc) Scan(dest ...any) error { return f(dest...) }

// Query runs one query in a transaction that ends when the rows are closed.
func (d *DB) Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error) {
	tx, err := d.Begin(ctx)
	if err != nil {
		return nil, err
	}
	rows, err := tx.Query(ctx, sql, args...)
	if err != nil {
		_ = tx.Rollback(context.WithoutCancel(ctx))
		return nil, err
	}
	return &txRows{Rows: rows, tx: tx, ctx: ctx}, nil
}

// txRows ends its transaction on Close: committed after a clean read, else rolled back.
type txRows struct {
	pgx.Rows
	tx     pgx.Tx
	ctx    context.Context
	closed bool
	err    error
}

func (r *txRows) Close() {
	if r.closed {
		return
	}
	r.closed = true
	r.Rows.Close()
	if r.err = r.Rows.Err(); r.err != nil {
		_ = r.tx.Rollback(context.WithoutCancel(r.ctx))
		return
	}
	r.err = r.tx.Commit(context.WithoutCancel(r.ctx))
}

func (r *txRows) Err() error {
	if r.closed && r.err != nil {
		return r.err
	}
	return r.Rows.Err()
}

func (r *txRows) Next() bool {
	if r.Rows.Next() {
		return true
	}
	r.Close()
	return false
}

// CopyFrom runs one COPY in its own transaction.
func (d *DB) CopyFrom(ctx context.Context, table pgx.Identifier, columns []string, src pgx.CopyFromSource) (int64, error) {
	var n int64
	err := pgx.BeginFunc(ctx, d, func(tx pgx.Tx) error {
		var err error
		n, err = tx.CopyFrom(ctx, table, columns, src)
		return err
	})
	return n, err
}

// Acquire hands out a raw pooled connection (no search_path: qualify names), for
// benchmarks and tests that need one connection for several statements.
func (d *DB) Acquire(ctx context.Context) (*pgxpool.Conn, error) {
	actx, cancel := context.WithTimeout(ctx, d.acquireTimeout)
	defer cancel()
	conn, err := d.pool.Acquire(actx)
	return conn, d.acquired(ctx, err)
}

// Ping checks that the database answers.
func (d *DB) Ping(ctx context.Context) error { return d.pool.Ping(ctx) }

// Config is the pool's configuration.
func (d *DB) Config() *pgxpool.Config { return d.pool.Config() }

// Stat reports the pool's connection counts.
func (d *DB) Stat() *pgxpool.Stat { return d.pool.Stat() }

// Close closes the pool.
func (d *DB) Close() { d.pool.Close() }
