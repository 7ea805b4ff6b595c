package main

import (
	"context"
	"fmt"
	"maps"
	"os"
	"regexp"
	"slices"
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
	// Four refusals: the connector tries both SCIM members forms before a form has worked,
	// so a batch and then its first member each cost two, and that member fails.
	e.airtable.Faults().StatusNext("PATCH /scim/v2/Groups/{groupId}", 4, 400)
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

// readmeQuery returns the sql block of README.md that follows the sentence lead, so a test
// can check what one documented query answers.
func readmeQuery(t *testing.T, lead string) string {
	t.Helper()
	b, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	_, after, ok := strings.Cut(string(b), lead)
	if !ok {
		t.Fatalf("README.md has no %q", lead)
	}
	m := sqlBlock.FindStringSubmatch(after)
	if m == nil {
		t.Fatalf("README.md has no sql block after %q", lead)
	}
	return m[1]
}

// twoFlows splits the environment's flow in two: people pushes devrev to airtable and
// people-community pushes the same devrev groups to community, so every group is linked by
// two flows.
func (e *opsEnv) twoFlows() {
	e.t.Helper()
	b, err := os.ReadFile(e.path)
	if err != nil {
		e.t.Fatal(err)
	}
	cfg := strings.Replace(string(b), "targets: [airtable, community]", "targets: [airtable]", 1)
	second := strings.Replace(opsFlowYAML, "flows:\n  people:", "  people-community:", 1)
	second = strings.Replace(second, "targets: [airtable, community]", "targets: [community]", 1)
	cfg += fmt.Sprintf(second, "@every 1h")
	if err := os.WriteFile(e.path, []byte(cfg), 0o600); err != nil {
		e.t.Fatal(err)
	}
}

// TestGroupOverviewCountsMissingMembers: two of the source's people have no account in
// the targets, so the groups they are in are not the same there although every group row
// was written successfully. group_overview must say so, name every flow of a group in one
// row, and no README query may repeat a row when a group is in two flows.
func TestGroupOverviewCountsMissingMembers(t *testing.T) {
	e := newOpsEnv(t, "@every 1h", "")
	e.twoFlows()
	e.airtable.Seed(simkit.Tenant{People: e.people[:10]})
	e.community.Seed(simkit.Tenant{People: e.people[:10]})
	e.exec("sync", "--once").want(t, 0, "succeeded", "")
	conn := e.connect()

	// What the source says: per devrev group, how many of its members have no account in
	// the targets (each is missing in both).
	rows, err := conn.Query(t.Context(), `
		SELECT l.link_id, 2 * count(*) FILTER (WHERE e.email = ANY($1))
		  FROM links l JOIN member_emails e ON e.system = l.system AND e.group_id = l.external_id
		 WHERE l.system = 'devrev' GROUP BY l.link_id`, []string{e.people[10].Email, e.people[11].Email})
	if err != nil {
		t.Fatal(err)
	}
	want := map[int64]int64{}
	for rows.Next() {
		var link, n int64
		if err := rows.Scan(&link, &n); err != nil {
			t.Fatal(err)
		}
		want[link] = n
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	rows, err = conn.Query(t.Context(), `SELECT link_id, in_sync, members_missing, flows FROM group_overview`)
	if err != nil {
		t.Fatal(err)
	}
	var outOfSync, inSync int
	for rows.Next() {
		var link, missing int64
		var ok bool
		var flows []string
		if err := rows.Scan(&link, &ok, &missing, &flows); err != nil {
			t.Fatal(err)
		}
		if missing != want[link] || ok != (missing == 0) {
			t.Errorf("group_overview link %d: in_sync %v, members_missing %d; the source has %d members missing in the targets",
				link, ok, missing, want[link])
		}
		if !slices.Equal(flows, []string{"people", "people-community"}) {
			t.Errorf("group_overview link %d: flows %v, want both flows", link, flows)
		}
		if ok {
			inSync++
		} else {
			outOfSync++
		}
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	if len(want) != 4 || outOfSync == 0 {
		t.Fatalf("want 4 groups, some with members missing: %d groups, %d in sync, %d not", len(want), inSync, outOfSync)
	}

	// Every README query on this mirror: no row twice.
	b, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	for i, m := range sqlBlock.FindAllStringSubmatch(string(b), -1) {
		rows, err := conn.Query(t.Context(), m[1])
		if err != nil {
			t.Errorf("README sql block %d fails: %v", i+1, err)
			continue
		}
		seen := map[string]bool{}
		for rows.Next() {
			v, err := rows.Values()
			if err != nil {
				t.Fatal(err)
			}
			row := fmt.Sprint(v)
			if seen[row] {
				t.Errorf("README sql block %d returns %s twice:\n%s", i+1, row, m[1])
			}
			seen[row] = true
		}
		if err := rows.Err(); err != nil {
			t.Errorf("README sql block %d fails: %v", i+1, err)
		}
	}

	// What groupsync wrote: only the targets, never the source it read from, and as many
	// records as it applied changes for.
	rows, err = conn.Query(t.Context(), readmeQuery(t, "What groupsync wrote per system"))
	if err != nil {
		t.Fatal(err)
	}
	wrote := map[string]int64{}
	for rows.Next() {
		v, err := rows.Values()
		if err != nil {
			t.Fatal(err)
		}
		system, _ := v[0].(string)
		n, _ := v[3].(int64)
		wrote[system] += n
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	var applied map[string]int64
	one := func(q string, dst ...any) {
		t.Helper()
		if err := conn.QueryRow(t.Context(), q).Scan(dst...); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}
	var at, co int64
	one(`SELECT count(*) FILTER (WHERE target_system = 'airtable'), count(*) FILTER (WHERE target_system = 'community')
	       FROM changes WHERE status = 'applied'`, &at, &co)
	applied = map[string]int64{"airtable": at, "community": co}
	if !maps.Equal(wrote, applied) || at == 0 {
		t.Errorf("README \"what groupsync wrote\" = %v, want the applied changes per target %v (nothing in the source devrev)", wrote, applied)
	}
}

// TestGroupOverviewHeldByABlock: a blocked run holds back the removal of every member of
// one group and the creation of a new one. Neither group's rows show a failure (nothing was
// written), yet neither is in step: group_overview must not call them in sync.
func TestGroupOverviewHeldByABlock(t *testing.T) {
	e := newOpsEnv(t, "@every 1h", "")
	gen := simkit.Generate(simkit.GenOptions{Groups: 4, People: 12, MembersPerGroup: 4, Seed: 11})
	e.exec("sync", "--once").want(t, 0, "succeeded", "")

	// Emptying one group removes 4 of each target's 16 members (25%, above the flow's 20%),
	// so the guard blocks; a new source group waits for its creation meanwhile.
	emptied := gen.Groups[0].Name
	gen.Groups[0].Members = nil
	gen.Groups = append(gen.Groups, simkit.TenantGroup{Name: "Held 0004", Members: []int32{0, 1, 2, 3}})
	e.devrev.Seed(gen)
	e.exec("sync", "--once").want(t, 3, "BLOCKED", "")

	conn := e.connect()
	rows, err := conn.Query(t.Context(), `SELECT name, in_sync, changes_held FROM group_overview ORDER BY name`)
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]string{}
	for rows.Next() {
		var name string
		var ok bool
		var held int64
		if err := rows.Scan(&name, &ok, &held); err != nil {
			t.Fatal(err)
		}
		got[name] = fmt.Sprintf("in_sync=%v held=%v", ok, held > 0)
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	want := map[string]string{}
	for _, g := range gen.Groups {
		want[g.Name] = "in_sync=true held=false"
	}
	want[emptied] = "in_sync=false held=true"
	want["Held 0004"] = "in_sync=false held=true"
	if !maps.Equal(got, want) {
		t.Errorf("group_overview after a block:\n got %v\nwant %v", got, want)
	}
}
