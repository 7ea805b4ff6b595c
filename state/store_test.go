package state_test

import (
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/groupsync/groupsync/state"
	"github.com/groupsync/groupsync/state/statetest"
)

func TestOpenRefusesBadSchemaName(t *testing.T) {
	for _, schema := range []string{"Groupsync", "group-sync", `x"; DROP`, "1abc"} {
		_, err := state.Open(t.Context(), statetest.URL(), state.Options{Schema: schema})
		if err == nil || !strings.Contains(err.Error(), "not a plain identifier") {
			t.Errorf("Open(schema %q) = %v, want refusal", schema, err)
		}
	}
}

func TestOpenUnreachableHintsAndHidesPassword(t *testing.T) {
	// Port 1 on loopback refuses connections at once.
	_, err := state.Open(t.Context(), "postgres://groupsync:s3cr3t-pw@127.0.0.1:1/mirror?sslmode=disable", state.Options{})
	if err == nil {
		t.Fatal("Open succeeded against a closed port")
	}
	msg := err.Error()
	if !strings.Contains(msg, "is Postgres running? set GROUPSYNC_DATABASE_URL") || !strings.Contains(msg, "127.0.0.1:1") {
		t.Errorf("error %q lacks the hint or the address", msg)
	}
	if strings.Contains(msg, "s3cr3t-pw") {
		t.Errorf("error leaks the password: %q", msg)
	}
	_, err = state.Open(t.Context(), "postgres://groupsync:s3cr3t-pw@127.0.0.1:notaport/x", state.Options{})
	if err == nil || strings.Contains(err.Error(), "s3cr3t-pw") || !strings.Contains(err.Error(), "GROUPSYNC_DATABASE_URL") {
		t.Errorf("unparsable URL error = %v", err)
	}
}

func TestMigrateFreshThenRerunIsNoop(t *testing.T) {
	schema := statetest.Schema(t)
	s, err := state.Open(t.Context(), statetest.URL(), state.Options{Schema: schema})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	cur, latest, err := s.MigrationStatus(t.Context())
	if err != nil || cur != 0 || latest < 1 {
		t.Fatalf("status before = %d/%d, %v", cur, latest, err)
	}
	applied, err := s.Migrate(t.Context())
	if err != nil || len(applied) != latest || applied[0] != 1 {
		t.Fatalf("first Migrate = %v, %v; want 1..%d", applied, err, latest)
	}
	applied, err = s.Migrate(t.Context())
	if err != nil || len(applied) != 0 {
		t.Fatalf("second Migrate = %v, %v; want nothing applied", applied, err)
	}
	if cur, latest2, err := s.MigrationStatus(t.Context()); err != nil || cur != latest || latest2 != latest {
		t.Fatalf("status after = %d/%d, %v", cur, latest2, err)
	}
	// Every table and view carries a comment.
	rows, err := s.Pool().Query(t.Context(), `SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
		WHERE n.nspname = $1 AND c.relkind IN ('r', 'v') AND obj_description(c.oid, 'pg_class') IS NULL`, schema)
	if err != nil {
		t.Fatal(err)
	}
	var bare []string
	for rows.Next() {
		var n string
		_ = rows.Scan(&n)
		bare = append(bare, n)
	}
	if rows.Err() != nil || len(bare) > 0 {
		t.Fatalf("tables without COMMENT: %v (err %v)", bare, rows.Err())
	}
}

func TestConcurrentMigrateAppliesOnce(t *testing.T) {
	schema := statetest.Schema(t)
	var wg sync.WaitGroup
	results := make([][]int, 2)
	errs := make([]error, 2)
	for i := range 2 {
		s, err := state.Open(t.Context(), statetest.URL(), state.Options{Schema: schema})
		if err != nil {
			t.Fatal(err)
		}
		defer s.Close()
		wg.Go(func() { results[i], errs[i] = s.Migrate(t.Context()) })
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Fatalf("Migrate %d: %v", i, err)
		}
	}
	all := slices.Concat(results[0], results[1])
	slices.Sort(all)
	if len(all) == 0 || all[0] != 1 || len(slices.Compact(all)) != len(all) {
		t.Fatalf("applied %v and %v: each version must be applied exactly once", results[0], results[1])
	}
}
