package main

import (
	"context"
	"os"
	"regexp"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"

	"github.com/groupsync/groupsync/connectors/simkit"
	"github.com/groupsync/groupsync/state/statetest"
)

// sqlBlock matches a fenced ```sql block of the README.
var sqlBlock = regexp.MustCompile("(?s)```sql\n(.*?)```")

// TestReadmeQueries runs every SQL example of README.md against a mirror filled by real
// syncs over the simulators (a partial run with failing changes, then a blocked one), so the
// analyst's examples cannot rot. Each must run and return rows.
func TestReadmeQueries(t *testing.T) {
	b, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	blocks := sqlBlock.FindAllStringSubmatch(string(b), -1)
	if len(blocks) < 5 {
		t.Fatalf("README.md has %d sql blocks; the analyst section should have its examples", len(blocks))
	}

	e := newOpsEnv(t, "@every 1h", "")
	// Two of the source's people have no account in the targets: no_account skips.
	e.airtable.Seed(simkit.Tenant{People: e.people[:10]})
	e.community.Seed(simkit.Tenant{People: e.people[:10]})
	e.airtable.Faults().StatusNext("PATCH /scim/v2/Groups/{groupId}", 2, 400)
	e.exec("sync", "--once").want(t, 1, "partial", "")
	e.exec("sync", "--once").want(t, 0, "succeeded", "")
	e.devrev.Seed(simkit.Generate(simkit.GenOptions{Groups: 1, People: 12, MembersPerGroup: 4, Seed: 11}))
	e.exec("sync", "--once").want(t, 3, "BLOCKED", "")

	conn := e.connect()
	for i, m := range blocks {
		q := m[1]
		rows, err := conn.Query(t.Context(), q)
		if err != nil {
			t.Errorf("README sql block %d fails: %v\n%s", i+1, err, q)
			continue
		}
		n := 0
		for rows.Next() {
			n++
		}
		if err := rows.Err(); err != nil {
			t.Errorf("README sql block %d fails: %v\n%s", i+1, err, q)
			continue
		}
		if n == 0 {
			t.Errorf("README sql block %d returns no rows on a synced mirror:\n%s", i+1, q)
		}
	}
}

// connect opens a connection to the test mirror with its schema on the search path, as the
// README tells an analyst to.
func (e *opsEnv) connect() *pgx.Conn {
	e.t.Helper()
	cfg, err := pgx.ParseConfig(statetest.URL())
	if err != nil {
		e.t.Fatal(err)
	}
	cfg.RuntimeParams["search_path"] = e.schema
	conn, err := pgx.ConnectConfig(e.t.Context(), cfg)
	if err != nil {
		e.t.Fatalf("connect to the test database: %v (start Postgres on 127.0.0.1:5432 or set GROUPSYNC_TEST_DATABASE_URL)", err)
	}
	e.t.Cleanup(func() { _ = conn.Close(context.WithoutCancel(e.t.Context())) })
	return conn
}

// TestViewsOnASyncedMirror checks what the views say after known runs, and that every
// table and view of the mirror is documented with COMMENT ON.
func TestViewsOnASyncedMirror(t *testing.T) {
	e := newOpsEnv(t, "@every 1h", "")
	// Adds to one Airtable group fail (one PATCH carries all its members).
	e.airtable.Faults().StatusNext("PATCH /scim/v2/Groups/{groupId}", 1, 404)
	e.exec("sync", "--once").want(t, 1, "partial", "")
	conn := e.connect()
	one := func(q string, dst ...any) {
		t.Helper()
		if err := conn.QueryRow(t.Context(), q).Scan(dst...); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}

	var groups, inSync, systems int
	one(`SELECT count(*), count(*) FILTER (WHERE in_sync), min(system_count) FROM group_overview`, &groups, &inSync, &systems)
	if groups != 4 || systems != 3 {
		t.Errorf("group_overview: %d groups in at least %d systems, want 4 in 3", groups, systems)
	}
	var devrevID, airtableID string
	one(`SELECT per_system->'devrev'->>'id', per_system->'airtable'->>'id' FROM group_overview ORDER BY link_id LIMIT 1`, &devrevID, &airtableID)
	if !strings.HasPrefix(devrevID, "don:identity:") || !strings.HasPrefix(airtableID, "ugp") {
		t.Errorf("group_overview per_system ids = %q, %q", devrevID, airtableID)
	}

	// The failed adds are the drift: missing in Airtable, nowhere else.
	var failed, missing, missingElsewhere, extra int
	one(`SELECT count(*) FROM recent_failures WHERE target_system = 'airtable' AND operation = 'add_member' AND last_error <> ''`, &failed)
	one(`SELECT count(*) FILTER (WHERE target_system = 'airtable' AND drift = 'missing_in_target'),
	            count(*) FILTER (WHERE target_system <> 'airtable'),
	            count(*) FILTER (WHERE drift = 'extra_in_target') FROM membership_drift`, &missing, &missingElsewhere, &extra)
	if failed == 0 || missing != failed || missingElsewhere != 0 || extra != 0 {
		t.Errorf("recent_failures %d add_member; membership_drift missing in airtable %d, elsewhere %d, extra %d; want equal failures and drift, nothing else",
			failed, missing, missingElsewhere, extra)
	}
	if inSync != 3 {
		t.Errorf("group_overview: %d groups in sync, want 3 (the fourth has a failed write)", inSync)
	}

	var pending int
	one(`SELECT count(*) FROM pending_approvals`, &pending)
	if pending != 0 {
		t.Errorf("pending_approvals = %d before any block", pending)
	}

	rows, err := conn.Query(t.Context(), `
		SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
		 WHERE n.nspname = $1 AND c.relkind IN ('r', 'v') AND obj_description(c.oid, 'pg_class') IS NULL
		 ORDER BY 1`, e.schema)
	if err != nil {
		t.Fatal(err)
	}
	undocumented, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		t.Fatal(err)
	}
	if len(undocumented) > 0 {
		t.Errorf("tables and views without COMMENT ON: %v", undocumented)
	}
}
