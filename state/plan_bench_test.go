package state_test

import (
	"fmt"
	"testing"
	"time"

	"github.com/groupsync/groupsync/connectors"
	"github.com/groupsync/groupsync/state"
)

// BenchmarkPlan plans n add_member changes (every source member missing from its linked,
// empty target group) for a flow that already has a history of 3 × n old change rows of
// the same subjects (failed, applied and skipped runs), in two shapes: one group of n
// members, and n/100 groups of 100. It reports ns/change: linear planning keeps that figure
// the same at 10k and 100k changes.
//
// Run: go test ./state -run '^$' -bench Plan -benchtime 1x
func BenchmarkPlan(b *testing.B) {
	for _, n := range []int{10_000, 100_000} {
		for _, shape := range []string{"one-group", "many-groups"} {
			b.Run(fmt.Sprintf("%s/%d", shape, n), func(b *testing.B) {
				perGroup := n
				if shape == "many-groups" {
					perGroup = 100
				}
				benchPlan(b, n, perGroup)
			})
		}
	}
}

func benchPlan(b *testing.B, n, perGroup int) {
	f := newFactory(b)
	f.systems("src", "tgt")
	groups := n / perGroup
	// Source groups g1..gN with members, their target twins t1..tN (empty), linked.
	f.exec(`INSERT INTO groups (system, external_id, name, hash)
		SELECT s.sys, s.pfx || i, 'group ' || i, 'h' FROM generate_series(1, $1) i,
		       (VALUES ('src', 'g'), ('tgt', 't')) s(sys, pfx)`, groups)
	f.exec(`INSERT INTO links (link_id, system, external_id, flow)
		SELECT i, s.sys, s.pfx || i, 'f' FROM generate_series(1, $1) i, (VALUES ('src', 'g'), ('tgt', 't')) s(sys, pfx)`, groups)
	f.exec(`SELECT setval('link_id_seq', $1)`, groups)
	f.exec(`INSERT INTO accounts (system, external_id, email, hash)
		SELECT s.sys, s.sys || i, 'user' || i || '@example.com', 'h'
		  FROM generate_series(1, $1) i, (VALUES ('src'), ('tgt')) s(sys)`, n)
	f.exec(`INSERT INTO memberships (system, group_id, account_id)
		SELECT 'src', 'g' || ((i - 1) / $2 + 1), 'src' || i FROM generate_series(1, $1) i`, n, perGroup)
	// History: three earlier runs that planned the same adds (failed twice, then skipped).
	for k, status := range []string{"failed", "failed", "skipped"} {
		run := f.run("f", "schedule", "partial")
		f.exec(`INSERT INTO changes (run_id, flow, target_system, operation, link_id, source_system, source_group_id,
		        target_group_id, account_email, source_account_id, target_account_id, status, attempts, last_error)
			SELECT $1, 'f', 'tgt', 'add_member', (i - 1) / $3 + 1, 'src', 'g' || ((i - 1) / $3 + 1),
			       't' || ((i - 1) / $3 + 1), 'user' || i || '@example.com', 'src' || i, 'tgt' || i, $4, $5, 'boom'
			  FROM generate_series(1, $2) i`, run, n, perGroup, status, k+1)
	}
	// Only this schema's tables: a bare ANALYZE walks every table in the database, other
	// tests' schemas included, and can deadlock with their DROP TABLE.
	f.exec(`ANALYZE groups, links, accounts, memberships, runs, changes`)
	scope := make([]string, groups)
	for i := range scope {
		scope[i] = fmt.Sprintf("g%d", i+1)
	}
	caps := connectors.Capabilities{CreateGroup: true, UpdateGroup: true, AddMember: true, RemoveMember: true}
	var total time.Duration
	b.ResetTimer()
	for range b.N {
		b.StopTimer()
		run := f.run("f", "schedule", "running")
		b.StartTimer()
		start := time.Now()
		if err := f.s.LinkFlow(f.ctx, state.LinkInput{RunID: run, Flow: "f", Source: "src", Targets: []string{"tgt"},
			ScopeIDs: scope}); err != nil {
			b.Fatal(err)
		}
		if _, err := f.s.PlanFlow(f.ctx, state.PlanInput{RunID: run, Flow: "f", Source: "src", ScopeIDs: scope,
			Targets: []state.PlanTarget{{System: "tgt", Caps: caps}}, Mirror: true, CreateGroups: true,
			DeletePolicy: "never", MaxAttempts: 10}); err != nil {
			b.Fatal(err)
		}
		total += time.Since(start)
		b.StopTimer()
		var planned int
		if err := f.db.QueryRow(f.ctx, `SELECT count(*) FROM changes WHERE run_id = $1 AND operation = 'add_member'`, run).Scan(&planned); err != nil {
			b.Fatal(err)
		}
		if planned != n {
			b.Fatalf("planned %d add_member changes, want %d", planned, n)
		}
		f.exec(`DELETE FROM changes WHERE run_id = $1`, run)
		b.StartTimer()
	}
	b.ReportMetric(float64(total.Nanoseconds())/float64(b.N)/float64(n), "ns/change")
}
