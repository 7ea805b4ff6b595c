// Package statetest gives tests a migrated mirror of their own: a fresh, randomly named
// schema in the test database, dropped when the test ends.
package statetest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"os"
	"sync"
	"testing"

	"github.com/groupsync/groupsync/state"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

// DefaultURL is the test database used when GROUPSYNC_TEST_DATABASE_URL is unset.
const DefaultURL = "postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable"

const fix = "start Postgres on 127.0.0.1:5432 or set GROUPSYNC_TEST_DATABASE_URL"

// URL is the test database URL: GROUPSYNC_TEST_DATABASE_URL, else DefaultURL.
func URL() string {
	if u := os.Getenv("GROUPSYNC_TEST_DATABASE_URL"); u != "" {
		return u
	}
	return DefaultURL
}

var (
	adminOnce sync.Once
	adminPool *pgxpool.Pool
	adminErr  error
)

// admin is one pool per test binary for creating and dropping schemas.
func admin(ctx context.Context) (*pgxpool.Pool, error) {
	adminOnce.Do(func() {
		cfg, err := pgxpool.ParseConfig(URL())
		if err != nil {
			adminErr = err
			return
		}
		cfg.MaxConns = 2
		adminPool, adminErr = pgxpool.NewWithConfig(context.WithoutCancel(ctx), cfg)
		if adminErr == nil {
			adminErr = adminPool.Ping(ctx)
		}
	})
	return adminPool, adminErr
}

// Schema returns a fresh schema name and registers its drop in t.Cleanup. The schema itself
// is created by whoever migrates it (Store does).
func Schema(tb testing.TB) string {
	tb.Helper()
	pool, err := admin(tb.Context())
	if err != nil {
		tb.Fatalf("statetest: test database does not answer: %v; %s", err, fix)
	}
	var b [6]byte
	_, _ = rand.Read(b[:])
	schema := "groupsync_test_" + hex.EncodeToString(b[:])
	tb.Cleanup(func() {
		// The test's context is already cancelled when cleanups run.
		ctx := context.WithoutCancel(tb.Context())
		if _, err := pool.Exec(ctx, `DROP SCHEMA IF EXISTS `+pgx.Identifier{schema}.Sanitize()+` CASCADE`); err != nil {
			tb.Errorf("statetest: drop schema %s: %v", schema, err)
		}
	})
	return schema
}

// Store opens a store on a fresh schema, migrates it and closes it when the test ends.
func Store(tb testing.TB) *state.Store {
	tb.Helper()
	return StoreWithOptions(tb, state.Options{})
}

// StoreWithOptions is Store with options; Schema is replaced by a fresh one.
func StoreWithOptions(tb testing.TB, opts state.Options) *state.Store {
	tb.Helper()
	opts.Schema = Schema(tb)
	if opts.MaxConns == 0 {
		opts.MaxConns = 4
	}
	s, err := state.Open(tb.Context(), URL(), opts)
	if err != nil {
		tb.Fatalf("statetest: %v; %s", err, fix)
	}
	tb.Cleanup(s.Close) // runs before the schema drop (cleanups are LIFO)
	if _, err := s.Migrate(tb.Context()); err != nil {
		tb.Fatalf("statetest: migrate %s: %v", opts.Schema, err)
	}
	return s
}
