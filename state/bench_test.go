package state_test

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"testing"
	"time"

	"github.com/groupsync/groupsync/connectors"
	"github.com/groupsync/groupsync/state"
	"github.com/groupsync/groupsync/state/statetest"
	"github.com/jackc/pgx/v5"
)

const benchPerGroup = 100

// BenchmarkMembershipMerge merges 200k memberships (2k groups x 100 members, one page per
// group) and compares against a raw COPY of the same rows into an empty table with the
// same primary key (T_copy), measured in the same iteration:
//
//	first/copy  first load into an empty memberships table / T_copy   (target <= 1.5)
//	noop/copy   re-merge of identical rows / T_copy                    (target <= 1.0)
//	noop_tuples row versions written by the no-op re-merge, in memberships and in the
//	            history tables (membership_history, group_history, history_pulls) (target 0)
//	first_history_rows  rows the first load added to the history tables (1: its history_pulls
//	            row; the open intervals are the mirror rows themselves)
//
// The merges run as the pulls of a run (state.WithRunID), as the engine's do, so history
// is recorded as in production. stream-1M is the same at 1M memberships (10k groups).
//
// Run: go test ./state -run '^$' -bench MembershipMerge -benchtime 3x -v (-v logs each merge's phases)
func BenchmarkMembershipMerge(b *testing.B) {
	// stream is the production mode; per-page stages each Write with its own COPY; and
	// stream-staged turns off the first-load fast path (rows copied straight into
	// memberships), so the first load stages and classifies like any other merge.
	for _, mode := range []string{"stream", "per-page", "stream-staged"} {
		b.Run(mode, func(b *testing.B) { benchMembershipMerge(b, mode, 2000) })
	}
	b.Run("stream-1M", func(b *testing.B) { benchMembershipMerge(b, "stream", 10000) })
}

func benchMembershipMerge(b *testing.B, mode string, benchGroups int) {
	ctx := context.WithoutCancel(b.Context())
	opts := state.Options{MaxConns: 2}
	if testing.Verbose() {
		opts.Logger = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	s := statetest.StoreWithOptions(b, opts)
	if mode == "per-page" {
		state.UsePerPageCopy(s)
	}
	if err := s.UpsertSystem(ctx, sys, "airtable", ""); err != nil {
		b.Fatal(err)
	}
	if mode == "stream-staged" {
		state.DisableFirstLoadFastPath(s)
	}
	run, err := s.CreateRun(ctx, state.NewRun{Flow: "bench", Trigger: "once"})
	if err != nil {
		b.Fatal(err)
	}
	ctx = state.WithRunID(ctx, run)
	gw, err := s.BeginGroupMerge(ctx, sys)
	if err != nil {
		b.Fatal(err)
	}
	pages := make([][]connectors.Member, benchGroups)
	gs := make([]connectors.Group, benchGroups)
	for g := range benchGroups {
		gid := fmt.Sprintf("grp%05d", g)
		gs[g] = connectors.Group{ID: gid, Name: "Group " + gid, Hash: gid}
		page := make([]connectors.Member, benchPerGroup)
		for k := range page {
			n := g*benchPerGroup + k
			page[k] = connectors.Member{GroupID: gid, AccountID: fmt.Sprintf("usr%07d", n), Type: "user",
				Role: "member", Email: fmt.Sprintf("user%07d@example.com", n)}
		}
		pages[g] = page
	}
	if err := gw.Write(ctx, gs); err != nil {
		b.Fatal(err)
	}
	if _, err := gw.Commit(ctx, true); err != nil {
		b.Fatal(err)
	}

	var copyRows [][]any
	for _, p := range pages {
		for _, m := range p {
			copyRows = append(copyRows, []any{sys, m.GroupID, m.AccountID, m.Type, m.Role, m.Email})
		}
	}
	exec := func(sql string) {
		if _, err := s.Pool().Exec(ctx, sql); err != nil {
			b.Fatal(err)
		}
	}
	exec(`CREATE TABLE bench_copy (system text NOT NULL, group_id text NOT NULL, account_id text NOT NULL,
		member_type text NOT NULL, role text NOT NULL, email text NOT NULL, PRIMARY KEY (system, group_id, account_id))`)

	merge := func() state.MergeCounts {
		w, err := s.BeginMembershipMerge(ctx, sys)
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

	var tCopy, tFirst, tNoop time.Duration
	var noopTuples, firstHistory int64
	// written counts the row versions of the tables written since transaction xid before.
	written := func(before int64, tables ...string) int64 {
		var total int64
		for _, t := range tables {
			var n int64
			if err := s.Pool().QueryRow(ctx, `SELECT count(*) FROM `+t+` WHERE xmin::text::bigint > $1`, before).Scan(&n); err != nil {
				b.Fatal(err)
			}
			total += n
		}
		return total
	}
	xid := func() int64 {
		var x int64
		if err := s.Pool().QueryRow(ctx, `SELECT txid_current() % 4294967296`).Scan(&x); err != nil {
			b.Fatal(err)
		}
		return x
	}
	b.ResetTimer()
	for range b.N {
		b.StopTimer()
		exec(`TRUNCATE bench_copy`)
		exec(`TRUNCATE memberships, membership_history, history_pulls`)
		exec(`CHECKPOINT`) // each phase starts without the previous one's dirty buffers
		b.StartTimer()

		start := time.Now()
		if _, err := s.Pool().CopyFrom(ctx, pgx.Identifier{"bench_copy"},
			[]string{"system", "group_id", "account_id", "member_type", "role", "email"}, pgx.CopyFromRows(copyRows)); err != nil {
			b.Fatal(err)
		}
		tCopy += time.Since(start)

		b.StopTimer()
		exec(`CHECKPOINT`)
		before := xid()
		b.StartTimer()
		start = time.Now()
		if c := merge(); c.Inserted != int64(benchGroups*benchPerGroup) {
			b.Fatalf("first load counts %+v", c)
		}
		tFirst += time.Since(start)

		b.StopTimer()
		firstHistory += written(before, "membership_history", "group_history", "history_pulls")
		exec(`CHECKPOINT`)
		before = xid()
		b.StartTimer()
		start = time.Now()
		if c := merge(); c.Unchanged != int64(benchGroups*benchPerGroup) {
			b.Fatalf("no-op counts %+v", c)
		}
		tNoop += time.Since(start)
		b.StopTimer()
		noopTuples += written(before, "memberships", "membership_history", "group_history", "history_pulls")
		b.StartTimer()
	}
	b.StopTimer()
	nn := float64(b.N)
	b.ReportMetric(float64(tCopy.Milliseconds())/nn, "copy_ms")
	b.ReportMetric(float64(tFirst.Milliseconds())/nn, "first_ms")
	b.ReportMetric(float64(tNoop.Milliseconds())/nn, "noop_ms")
	b.ReportMetric(tFirst.Seconds()/tCopy.Seconds(), "first/copy")
	b.ReportMetric(tNoop.Seconds()/tCopy.Seconds(), "noop/copy")
	b.ReportMetric(float64(noopTuples)/nn, "noop_tuples")
	b.ReportMetric(float64(firstHistory)/nn, "first_history_rows")
}
