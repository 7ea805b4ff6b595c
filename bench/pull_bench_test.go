// Package bench holds groupsync's load benchmarks: generated tenants in the simulators
// (zero latency) against a real Postgres, each figure reported next to a raw COPY of the
// same rows measured in the same run (T_copy), the physical limit of the mirror write.
//
//	go test -run '^$' -bench . ./bench/ -benchtime 1x
package bench

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/groupsync/groupsync/connectors"
	"github.com/groupsync/groupsync/connectors/registry"
	"github.com/groupsync/groupsync/connectors/simkit"
	"github.com/groupsync/groupsync/connectors/simorg"
	"github.com/groupsync/groupsync/state"
	"github.com/groupsync/groupsync/state/statetest"
)

// size is one tenant shape.
type size struct {
	name            string
	groups, members int
	people          int
}

var pullSizes = []size{
	{"200k", 2000, 100, 100_000},
	{"1M", 10_000, 100, 100_000},
}

// pageSize is DevRev's list page size the benchmarks ask for: one member page per group of
// 100, so "requests per list = minimum pages" is checked against an exact count.
const pageSize = 100

// source is a DevRev simulator holding a generated tenant, and a connector to it.
type source struct {
	org    *simorg.Org
	sim    simkit.Sim
	cfg    connectors.SystemConfig
	tenant simkit.Tenant
}

func newSource(b *testing.B, sz size) *source {
	b.Helper()
	org, err := simorg.Start(simorg.Spec{Name: "devrev", Kind: connectors.KindDevRev})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(org.Close)
	s := org.Systems["devrev"]
	tn := simkit.Generate(simkit.GenOptions{Groups: sz.groups, People: sz.people, MembersPerGroup: sz.members, Seed: 7})
	s.Sim.Seed(tn)
	cfg := s.Config
	// The simulator answers at once; the client's published-rate limiter would make this
	// a benchmark of the limiter.
	cfg.RateLimit, cfg.Burst, cfg.PageSize = 1e6, 1000, pageSize
	return &source{org: org, sim: s.Sim, cfg: cfg, tenant: tn}
}

func (s *source) open(b *testing.B) connectors.Connector {
	c, err := registry.Open(s.cfg, connectors.Deps{Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		b.Fatal(err)
	}
	return c
}

// minPages is the fewest list requests that can read the tenant: group pages plus, per
// group, its member pages (an empty group still costs one request).
func minPages(tn simkit.Tenant) (groups, members int) {
	groups = max(1, (len(tn.Groups)+pageSize-1)/pageSize)
	for _, g := range tn.Groups {
		members += max(1, (len(g.Members)+pageSize-1)/pageSize)
	}
	return groups, members
}

// pull is the engine's pull path for one system, end to end: list groups into a group
// merge, list each group's members (workers in parallel, as the engine does) into one
// membership merge, commit both. It is HTTP + decode + hash + write.
func pull(ctx context.Context, st *state.Store, conn connectors.Connector, system string, workers int) (state.MergeCounts, error) {
	if err := st.UpsertSystem(ctx, system, string(conn.Kind()), ""); err != nil {
		return state.MergeCounts{}, err
	}
	gm, err := st.BeginGroupMerge(ctx, system)
	if err != nil {
		return state.MergeCounts{}, err
	}
	defer gm.Rollback(context.WithoutCancel(ctx))
	var ids []string
	l, err := conn.ListGroups(ctx, func(page []connectors.Group) error {
		for _, g := range page {
			ids = append(ids, g.ID)
		}
		return gm.Write(ctx, page)
	})
	if err != nil || !l.Complete {
		return state.MergeCounts{}, fmt.Errorf("bench: list groups: complete=%v: %w", l.Complete, err)
	}
	if _, err := gm.Commit(ctx, true); err != nil {
		return state.MergeCounts{}, err
	}
	mm, err := st.BeginMembershipMerge(ctx, system)
	if err != nil {
		return state.MergeCounts{}, err
	}
	defer mm.Rollback(context.WithoutCancel(ctx))
	var mu sync.Mutex
	var firstErr error
	work := make(chan string)
	var wg sync.WaitGroup
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for id := range work {
				l, err := conn.ListMembers(ctx, id, func(page []connectors.Member) error {
					mu.Lock()
					defer mu.Unlock()
					return mm.Write(ctx, page)
				})
				mu.Lock()
				if err == nil && l.Complete {
					mm.CompleteGroup(id)
				} else if firstErr == nil {
					firstErr = fmt.Errorf("bench: members of %s: complete=%v: %w", id, l.Complete, err)
				}
				mu.Unlock()
			}
		}()
	}
	for _, id := range ids {
		work <- id
	}
	close(work)
	wg.Wait()
	if firstErr != nil {
		return state.MergeCounts{}, firstErr
	}
	return mm.Commit(ctx)
}

// db is the benchmark's mirror schema with a separate session for statistics.
type db struct {
	schema string
	admin  *state.Store
}

// openStore opens a fresh pool on the schema; closing it ends its backends, which flushes
// their table statistics (Postgres 15 keeps them per backend until then or a timer).
func (d *db) openStore(b *testing.B) *state.Store {
	return d.open(b, "gsb-w-"+d.schema)
}

func (d *db) open(b *testing.B, app string) *state.Store {
	u := statetest.URL()
	sep := "?"
	if strings.Contains(u, "?") {
		sep = "&"
	}
	s, err := state.Open(b.Context(), u+sep+"application_name="+app, state.Options{Schema: d.schema, MaxConns: 4,
		Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		b.Fatalf("bench: open the mirror: %v (start Postgres on 127.0.0.1:5432 or set GROUPSYNC_TEST_DATABASE_URL)", err)
	}
	return s
}

// tupleWrites is n_tup_ins, n_tup_upd, n_tup_del of one table.
type tupleWrites struct{ ins, upd, del int64 }

func (t tupleWrites) total() int64 { return t.ins + t.upd + t.del }

func (t tupleWrites) sub(o tupleWrites) tupleWrites {
	return tupleWrites{t.ins - o.ins, t.upd - o.upd, t.del - o.del}
}

// stats reads the cumulative tuple writes of the schema's tables. The callers close every
// writing pool first and wait for its backends to be gone, so the counts are flushed.
func (d *db) stats(b *testing.B) map[string]tupleWrites {
	ctx := context.WithoutCancel(b.Context())
	conn, err := d.admin.Pool().Acquire(ctx)
	if err != nil {
		b.Fatal(err)
	}
	defer conn.Release()
	if _, err := conn.Exec(ctx, `SELECT pg_stat_force_next_flush(), pg_stat_clear_snapshot()`); err != nil {
		b.Fatal(err)
	}
	rows, err := conn.Query(ctx, `SELECT relname, n_tup_ins, n_tup_upd, n_tup_del FROM pg_stat_user_tables WHERE schemaname = $1`, d.schema)
	if err != nil {
		b.Fatal(err)
	}
	out := map[string]tupleWrites{}
	for rows.Next() {
		var name string
		var t tupleWrites
		if err := rows.Scan(&name, &t.ins, &t.upd, &t.del); err != nil {
			b.Fatal(err)
		}
		out[name] = t
	}
	if err := rows.Err(); err != nil {
		b.Fatal(err)
	}
	return out
}

// closeAndFlush closes a pool and waits until its backends have exited (and so flushed
// their statistics).
func (d *db) closeAndFlush(b *testing.B, s *state.Store) {
	s.Close()
	ctx := context.WithoutCancel(b.Context())
	deadline := time.Now().Add(10 * time.Second)
	for {
		var n int
		if err := d.admin.Pool().QueryRow(ctx, `SELECT count(*) FROM pg_stat_activity WHERE application_name = $1`,
			"gsb-w-"+d.schema).Scan(&n); err != nil {
			b.Fatal(err)
		}
		if n == 0 || time.Now().After(deadline) {
			return
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// repull pulls the source into the mirror again and returns how long the pull took, its
// counts and the tuples it wrote.
func (d *db) repull(b *testing.B, conn connectors.Connector) (time.Duration, state.MergeCounts, map[string]tupleWrites) {
	before := d.stats(b)
	st := d.openStore(b)
	execSQL(b, d.admin, `CHECKPOINT`)
	start := time.Now()
	c, err := pull(context.WithoutCancel(b.Context()), st, conn, "devrev", 4)
	took := time.Since(start)
	if err != nil {
		b.Fatal(err)
	}
	d.closeAndFlush(b, st)
	return took, c, delta(d.stats(b), before)
}

func delta(after, before map[string]tupleWrites) map[string]tupleWrites {
	out := map[string]tupleWrites{}
	for k, v := range after {
		if d := v.sub(before[k]); d.total() != 0 {
			out[k] = d
		}
	}
	return out
}

func describe(d map[string]tupleWrites) string {
	var parts []string
	for k, v := range d {
		parts = append(parts, fmt.Sprintf("%s ins=%d upd=%d del=%d", k, v.ins, v.upd, v.del))
	}
	if len(parts) == 0 {
		return "none"
	}
	return strings.Join(parts, "; ")
}

func execSQL(b *testing.B, s *state.Store, sql string, args ...any) {
	b.Helper()
	if _, err := s.Pool().Exec(context.WithoutCancel(b.Context()), sql, args...); err != nil {
		b.Fatalf("%s: %v", sql, err)
	}
}

// BenchmarkPull syncs a generated DevRev tenant into an empty mirror and again, and
// reports against T_copy measured in the same iteration:
//
//	copy_ms           raw COPY of the same membership rows into an empty table with the same key
//	e2e/copy          full pull (HTTP + decode + hash + write) into an empty mirror / T_copy   (target <= 3)
//	first/copy        mirror write alone (the same rows from memory, empty table) / T_copy     (target <= 1.5)
//	noop/copy         mirror write of identical rows / T_copy                                    (target <= 1.0)
//	noop_e2e/copy     full no-op re-pull / T_copy
//	noop_tuples       tuples written by the no-op re-pull in the mirror's tables, the systems row
//	                  and the merge_stages registry left out                                       (target 0)
//	change_tuples     membership tuples written by a re-pull after 1% of memberships changed    (target = changed)
//	few_tuples        membership tuples written by a re-pull after 1% of groups changed by one
//	                  member each (target = few_rows); few_e2e/copy is its time / T_copy
//	group_reqs/min, member_reqs/min   list requests / minimum pages                               (target 1)
func BenchmarkPull(b *testing.B) {
	for _, sz := range pullSizes {
		b.Run(sz.name, func(b *testing.B) { benchPull(b, sz) })
	}
}

func benchPull(b *testing.B, sz size) {
	ctx := context.WithoutCancel(b.Context())
	src := newSource(b, sz)
	conn := src.open(b)
	memberships := src.tenant.Memberships()
	for range b.N {
		b.StopTimer()
		d := &db{schema: statetest.Schema(b)}
		d.admin = d.open(b, "gsb-admin")
		if _, err := d.admin.Migrate(ctx); err != nil {
			b.Fatal(err)
		}
		// The floor: the same six columns the mirror stores per membership, the same primary
		// key, nothing else (the mirror's table also carries defaults, a second index and a
		// foreign key; those are part of what is measured against this floor).
		execSQL(b, d.admin, `CREATE TABLE bench_copy (system text NOT NULL, group_id text NOT NULL, account_id text NOT NULL,
			member_type text NOT NULL, role text NOT NULL, email text NOT NULL, PRIMARY KEY (system, group_id, account_id))`)

		// 1. Full pull into an empty mirror.
		src.sim.Counter().Reset()
		st := d.openStore(b)
		execSQL(b, d.admin, `CHECKPOINT`)
		b.StartTimer()
		start := time.Now()
		c, err := pull(ctx, st, conn, "devrev", 4)
		tE2E := time.Since(start)
		b.StopTimer()
		if err != nil {
			b.Fatal(err)
		}
		if c.Inserted != int64(memberships) {
			b.Fatalf("first pull counts %+v, want %d inserted", c, memberships)
		}
		gMin, mMin := minPages(src.tenant)
		groupReqs, memberReqs := src.sim.Counter().Count("groups.list"), src.sim.Counter().Count("groups.members.list")
		st.Close()

		// 2. Raw COPY of the same rows (read back from the mirror) into an empty table with
		// the same key: the floor any mirror write is measured against.
		rows := readMemberships(b, d.admin)
		execSQL(b, d.admin, `CHECKPOINT`)
		start = time.Now()
		if _, err := d.admin.Pool().CopyFrom(ctx, pgx.Identifier{"bench_copy"}, membershipColumns, pgx.CopyFromRows(rows)); err != nil {
			b.Fatal(err)
		}
		tCopy := time.Since(start)

		// 3. Mirror write alone: the same rows from memory into an emptied memberships table.
		pages := pagesOf(rows)
		execSQL(b, d.admin, `TRUNCATE memberships`)
		execSQL(b, d.admin, `CHECKPOINT`)
		st = d.openStore(b)
		start = time.Now()
		if c := mergePages(b, st, pages); c.Inserted != int64(memberships) {
			b.Fatalf("mirror write counts %+v", c)
		}
		tFirst := time.Since(start)
		execSQL(b, d.admin, `CHECKPOINT`)
		start = time.Now()
		if c := mergePages(b, st, pages); c.Unchanged != int64(memberships) {
			b.Fatalf("no-op mirror write counts %+v", c)
		}
		tNoop := time.Since(start)
		d.closeAndFlush(b, st)

		// 4. Full no-op re-pull: nothing may be written.
		tNoopE2E, c, noop := d.repull(b, conn)
		if c.Unchanged != int64(memberships) {
			b.Fatalf("no-op pull counts %+v", c)
		}

		// 5. 1% of memberships change: half leave, half join, one change per group. At both sizes
		// that is every group (2,000 and 10,000), so no group is left out by its digest: the worst case
		// for the membership merge, not a typical day (where a few groups change).
		tn, changed := changeMembers(src, src.tenant, src.tenant.Memberships()/200)
		tChange, c, change := d.repull(b, conn)
		b.Logf("%s: no-op writes: %s", sz.name, describe(noop))
		b.Logf("%s: 1%% change (%d rows) writes: %s; counts %+v", sz.name, changed, describe(change), c)

		// 6. A typical day on top of that: 1% of the groups change by one member each, so the
		// other 99% are left out by their digests.
		_, fewChanged := changeMembers(src, tn, len(src.tenant.Groups)/200)
		tFew, c, few := d.repull(b, conn)
		b.Logf("%s: 1%% of groups change (%d rows) writes: %s; counts %+v", sz.name, fewChanged, describe(few), c)
		restoreTenant(src)

		var noopMirror int64
		for table, w := range noop {
			// Not the mirror: the systems row's last-pull times and counts, and the staging
			// registry (each merge inserts and deletes its area's row and touches it). The
			// staging tables themselves are dropped by then, so they are not listed.
			if table != "systems" && table != "merge_stages" {
				noopMirror += w.total()
			}
		}
		b.ReportMetric(float64(tCopy.Milliseconds()), "copy_ms")
		b.ReportMetric(float64(tE2E.Milliseconds()), "e2e_ms")
		b.ReportMetric(tE2E.Seconds()/tCopy.Seconds(), "e2e/copy")
		b.ReportMetric(tFirst.Seconds()/tCopy.Seconds(), "first/copy")
		b.ReportMetric(tNoop.Seconds()/tCopy.Seconds(), "noop/copy")
		b.ReportMetric(tNoopE2E.Seconds()/tCopy.Seconds(), "noop_e2e/copy")
		b.ReportMetric(float64(noopMirror), "noop_tuples")
		b.ReportMetric(float64(change["memberships"].total()), "change_tuples")
		b.ReportMetric(float64(changed), "changed_rows")
		b.ReportMetric(tChange.Seconds()/tCopy.Seconds(), "change_e2e/copy")
		b.ReportMetric(float64(few["memberships"].total()), "few_tuples")
		b.ReportMetric(float64(fewChanged), "few_rows")
		b.ReportMetric(tFew.Seconds()/tCopy.Seconds(), "few_e2e/copy")
		b.ReportMetric(float64(groupReqs)/float64(gMin), "group_reqs/min")
		b.ReportMetric(float64(memberReqs)/float64(mMin), "member_reqs/min")
		b.ReportMetric(float64(memberships)/tE2E.Seconds(), "memberships/s")
		d.admin.Close()
	}
}

var membershipColumns = []string{"system", "group_id", "account_id", "member_type", "role", "email"}

func readMemberships(b *testing.B, s *state.Store) [][]any {
	rows, err := s.Pool().Query(context.WithoutCancel(b.Context()),
		`SELECT system, group_id, account_id, member_type, role, email FROM memberships ORDER BY group_id, account_id`)
	if err != nil {
		b.Fatal(err)
	}
	defer rows.Close()
	var out [][]any
	for rows.Next() {
		var a, g, acc, mt, r, e string
		if err := rows.Scan(&a, &g, &acc, &mt, &r, &e); err != nil {
			b.Fatal(err)
		}
		out = append(out, []any{a, g, acc, mt, r, e})
	}
	if err := rows.Err(); err != nil {
		b.Fatal(err)
	}
	return out
}

// pagesOf groups copy rows into one member page per group.
func pagesOf(rows [][]any) [][]connectors.Member {
	var pages [][]connectors.Member
	var cur []connectors.Member
	for _, r := range rows {
		m := connectors.Member{GroupID: r[1].(string), AccountID: r[2].(string), Type: r[3].(string), Role: r[4].(string), Email: r[5].(string)}
		if len(cur) > 0 && cur[0].GroupID != m.GroupID {
			pages = append(pages, cur)
			cur = nil
		}
		cur = append(cur, m)
	}
	if len(cur) > 0 {
		pages = append(pages, cur)
	}
	return pages
}

func mergePages(b *testing.B, st *state.Store, pages [][]connectors.Member) state.MergeCounts {
	ctx := context.WithoutCancel(b.Context())
	w, err := st.BeginMembershipMerge(ctx, "devrev")
	if err != nil {
		b.Fatal(err)
	}
	defer w.Rollback(ctx)
	for _, p := range pages {
		if err := w.Write(ctx, p); err != nil {
			b.Fatal(err)
		}
		w.CompleteGroup(p[0].GroupID)
	}
	c, err := w.Commit(ctx)
	if err != nil {
		b.Fatal(err)
	}
	return c
}

// changeMembers reseeds the source with base changed by 2k memberships: the first k groups
// each lose their last member and the next k each gain one. It returns the tenant seeded
// and 2k.
func changeMembers(src *source, base simkit.Tenant, k int) (simkit.Tenant, int) {
	tn := base
	tn.Groups = append([]simkit.TenantGroup(nil), base.Groups...)
	for i := range k {
		g := &tn.Groups[i%len(tn.Groups)]
		g.Members = g.Members[:len(g.Members)-1]
	}
	for i := range k {
		g := &tn.Groups[(k+i)%len(tn.Groups)]
		// Someone not yet in the group: the members are a window with a stride, so the
		// person just after the window's last one is new unless the window wraps onto it.
		next := (g.Members[len(g.Members)-1] + 1) % int32(len(tn.People))
		for contains32(g.Members, next) {
			next = (next + 1) % int32(len(tn.People))
		}
		g.Members = append(append([]int32(nil), g.Members...), next)
	}
	src.sim.Seed(tn)
	return tn, 2 * k
}

func restoreTenant(src *source) { src.sim.Seed(src.tenant) }

func contains32(s []int32, v int32) bool {
	for _, x := range s {
		if x == v {
			return true
		}
	}
	return false
}
