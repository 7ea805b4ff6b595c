package state_test

import (
	"context"
	"github.com/groupsync/groupsync/connectors"
	"testing"

	"github.com/groupsync/groupsync/state"
	"github.com/groupsync/groupsync/state/statetest"
)

// factory inserts exactly the mirror rows a planner case needs (systems, groups, accounts,
// memberships, links, runs, changes), after riverqueue/river's rivershared/testfactory:
// each helper writes one row with defaults for every column the case does not care about.
type factory struct {
	tb  testing.TB
	ctx context.Context
	s   *state.Store
	db  *state.DB
}

func newFactory(tb testing.TB) *factory {
	tb.Helper()
	s := statetest.Store(tb)
	return &factory{tb: tb, ctx: context.WithoutCancel(tb.Context()), s: s, db: s.Pool()}
}

func (f *factory) exec(sql string, args ...any) {
	f.tb.Helper()
	if _, err := f.db.Exec(f.ctx, sql, args...); err != nil {
		f.tb.Fatalf("factory: %v\n%s", err, sql)
	}
}

// systems registers systems by name (kind airtable: the kind does not matter to the planner).
func (f *factory) systems(names ...string) {
	f.tb.Helper()
	for _, n := range names {
		f.exec(`INSERT INTO systems (name, kind) VALUES ($1, 'airtable') ON CONFLICT DO NOTHING`, n)
	}
}

// groupOpt changes one column of a group row.
type groupOpt func(*groupRow)

type groupRow struct {
	description, visibility, state string
	deleted, managed               bool
}

func gone(g *groupRow)              { g.deleted = true }
func archived(g *groupRow)          { g.state = "archived" }
func managed(g *groupRow)           { g.managed = true }
func visibility(v string) groupOpt  { return func(g *groupRow) { g.visibility = v } }
func description(d string) groupOpt { return func(g *groupRow) { g.description = d } }
func (f *factory) group(sys, id, name string, opts ...groupOpt) {
	f.tb.Helper()
	g := groupRow{visibility: "public"}
	for _, o := range opts {
		o(&g)
	}
	// name_key as a merge stores it: the Go normalizer's key, computed at ingest.
	f.exec(`INSERT INTO groups (system, external_id, name, name_key, description, visibility, state, membership_managed, hash, deleted_at)
		VALUES ($1, $2, $3, $9, $4, $5, $6, $7, 'h', CASE WHEN $8 THEN now() END)
		ON CONFLICT (system, external_id) DO UPDATE SET name = excluded.name, name_key = excluded.name_key,
		       description = excluded.description,
		       visibility = excluded.visibility, state = excluded.state, deleted_at = excluded.deleted_at`,
		sys, id, name, g.description, g.visibility, g.state, g.managed, g.deleted, connectors.NormalizeName(name))
}

// account inserts an account; deleted tombstones it.
func (f *factory) account(sys, id, email string, deleted bool) {
	f.tb.Helper()
	f.exec(`INSERT INTO accounts (system, external_id, email, hash, deleted_at)
		VALUES ($1, $2, $3, 'h', CASE WHEN $4 THEN now() END)`, sys, id, email, deleted)
}

// member inserts a live user membership; email is the inline email (” when none).
func (f *factory) member(sys, gid, aid, email string) {
	f.tb.Helper()
	f.exec(`INSERT INTO memberships (system, group_id, account_id, email) VALUES ($1, $2, $3, $4)`, sys, gid, aid, email)
}

// goneMember inserts a tombstoned membership.
func (f *factory) goneMember(sys, gid, aid, email string) {
	f.tb.Helper()
	f.exec(`INSERT INTO memberships (system, group_id, account_id, email, deleted_at) VALUES ($1, $2, $3, $4, now())`,
		sys, gid, aid, email)
}

// link ties (sys, id) to link (0 = a new link id) for flow and returns the link id.
func (f *factory) link(link int64, sys, id, flow string) int64 {
	f.tb.Helper()
	if link == 0 {
		if err := f.db.QueryRow(f.ctx, `SELECT nextval('link_id_seq')`).Scan(&link); err != nil {
			f.tb.Fatal(err)
		}
	}
	f.exec(`INSERT INTO links (link_id, system, external_id, flow) VALUES ($1, $2, $3, $4)`, link, sys, id, flow)
	return link
}

// run inserts a finished run of flow with status (dry_run set for dry_run and planned).
func (f *factory) run(flow, trigger, status string) int64 {
	f.tb.Helper()
	var id int64
	if err := f.db.QueryRow(f.ctx, `INSERT INTO runs (flow, trigger, status, dry_run)
		VALUES ($1, $2, $3, $3 IN ('dry_run', 'planned')) RETURNING id`, flow, trigger, status).Scan(&id); err != nil {
		f.tb.Fatal(err)
	}
	return id
}

// linkOf returns the link id of (sys, id), 0 when unlinked.
func (f *factory) linkOf(sys, id string) int64 {
	f.tb.Helper()
	var l int64
	err := f.db.QueryRow(f.ctx, `SELECT coalesce((SELECT link_id FROM links WHERE system = $1 AND external_id = $2), 0)`,
		sys, id).Scan(&l)
	if err != nil {
		f.tb.Fatal(err)
	}
	return l
}

// change is a change row as the tests assert it.
type change struct {
	Target, Op, Status, Reason string
	SourceGroup, TargetGroup   string
	Email, TargetAccount       string
	Attempts                   int
	LastError                  string
	Members                    int
	Name, Visibility           string
}

// changes returns the run's change rows in a stable order.
func (f *factory) changes(runID int64) []change {
	f.tb.Helper()
	rows, err := f.db.Query(f.ctx, `
		SELECT target_system, operation, status, coalesce(reason, ''), coalesce(source_group_id, ''),
		       coalesce(target_group_id, ''), coalesce(account_email, ''), coalesce(target_account_id, ''),
		       attempts, coalesce(last_error, ''), coalesce((payload->>'members')::int, 0),
		       coalesce(payload->>'name', ''), coalesce(payload->>'visibility', '')
		  FROM changes WHERE run_id = $1
		 ORDER BY target_system, operation, source_group_id, account_email, target_account_id, id`, runID)
	if err != nil {
		f.tb.Fatal(err)
	}
	defer rows.Close()
	var out []change
	for rows.Next() {
		var c change
		if err := rows.Scan(&c.Target, &c.Op, &c.Status, &c.Reason, &c.SourceGroup, &c.TargetGroup, &c.Email,
			&c.TargetAccount, &c.Attempts, &c.LastError, &c.Members, &c.Name, &c.Visibility); err != nil {
			f.tb.Fatal(err)
		}
		out = append(out, c)
	}
	if err := rows.Err(); err != nil {
		f.tb.Fatal(err)
	}
	return out
}

// fail records a failed push attempt of the run's planned changes matching op (what
// MarkInFlight and MarkFailed do in a real push).
func (f *factory) fail(runID int64, op, lastError string) {
	f.tb.Helper()
	var ids []int64
	rows, err := f.db.Query(f.ctx, `SELECT id FROM changes WHERE run_id = $1 AND operation = $2 AND status = 'planned'`, runID, op)
	if err != nil {
		f.tb.Fatal(err)
	}
	for rows.Next() {
		var id int64
		if err := rows.Scan(&id); err != nil {
			f.tb.Fatal(err)
		}
		ids = append(ids, id)
	}
	rows.Close()
	if err := f.s.MarkInFlight(f.ctx, ids); err != nil {
		f.tb.Fatal(err)
	}
	if err := f.s.MarkFailed(f.ctx, ids, "", lastError); err != nil {
		f.tb.Fatal(err)
	}
}
