package state_test

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/groupsync/groupsync/connectors"
	"github.com/groupsync/groupsync/state"
	"github.com/groupsync/groupsync/state/statetest"
)

// BenchmarkPlan plans n add_member changes (every source member missing from its linked,
// empty target group) for a flow that already has a history of 3 × n old change rows of
// the same subjects (two pushed runs that failed, then a skipped run), in two shapes: one
// group of n members, and n/100 groups of 100. Every planned change carries the attempts
// of its intent (the pushed runs recorded their intents), so the carry is measured at full
// size. It reports ns/change: linear planning keeps that figure the same at 10k and 100k
// changes. With -v it logs each plan statement's rows and duration.
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
	times := &stepTimes{}
	// One connection, so every statement runs in one backend whose CPU time can be read.
	s := statetest.StoreWithOptions(b, state.Options{Logger: slog.New(times), MaxConns: 1})
	f := &factory{tb: b, ctx: context.WithoutCancel(b.Context()), s: s, db: s.Pool()}
	scope := seedPlanBench(b, f, n, perGroup)
	caps := connectors.Capabilities{CreateGroup: true, UpdateGroup: true, AddMember: true, RemoveMember: true}
	var total, cpu time.Duration
	var pid int
	if err := f.db.QueryRow(f.ctx, `SELECT pg_backend_pid()`).Scan(&pid); err != nil {
		b.Fatal(err)
	}
	times.reset()
	b.ResetTimer()
	for range b.N {
		b.StopTimer()
		run := f.run("f", "schedule", "running")
		b.StartTimer()
		times.mark(pid)
		start, cpu0 := time.Now(), backendCPU(pid)
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
		cpu += backendCPU(pid) - cpu0
		b.StopTimer()
		var planned, carried int
		if err := f.db.QueryRow(f.ctx, `SELECT count(*), count(*) FILTER (WHERE attempts = 2 AND status = 'planned')
			FROM changes WHERE run_id = $1 AND operation = 'add_member'`, run).Scan(&planned, &carried); err != nil {
			b.Fatal(err)
		}
		if planned != n || carried != n {
			b.Fatalf("planned %d add_member changes, %d carrying 2 attempts, want %d", planned, carried, n)
		}
		f.exec(`DELETE FROM changes WHERE run_id = $1`, run)
		b.StartTimer()
	}
	b.ReportMetric(float64(total.Nanoseconds())/float64(b.N)/float64(n), "ns/change")
	if cpu > 0 {
		b.ReportMetric(float64(cpu.Nanoseconds())/float64(b.N)/float64(n), "pg-cpu-ns/change")
	}
	times.log(b)
}

// seedPlanBench writes BenchmarkPlan's mirror and history and returns the flow's scope.
func seedPlanBench(b *testing.B, f *factory, n, perGroup int) []string {
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
		// The failed runs were pushed: the engine recorded their intents.
		if status == "failed" {
			if err := f.s.RecordIntents(f.ctx, "f", run, []string{"tgt"}); err != nil {
				b.Fatal(err)
			}
		}
	}
	// Only this schema's tables: a bare ANALYZE walks every table in the database, other
	// tests' schemas included, and can deadlock with their DROP TABLE.
	f.exec(`ANALYZE groups, links, accounts, memberships, runs, changes`)
	scope := make([]string, groups)
	for i := range scope {
		scope[i] = fmt.Sprintf("g%d", i+1)
	}
	return scope
}

// backendCPU is the CPU time Postgres backend pid has used, read from /proc when the
// database runs on this host (0 otherwise). On a machine shared with other work, wall
// time swings with the load; the backend's CPU time much less.
func backendCPU(pid int) time.Duration {
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0
	}
	// Fields after the parenthesized command: state is field 3, utime 14, stime 15.
	rest := string(stat)
	if i := strings.LastIndexByte(rest, ')'); i >= 0 {
		rest = rest[i+1:]
	}
	f := strings.Fields(rest)
	if len(f) < 13 {
		return 0
	}
	utime, err1 := strconv.ParseInt(f[11], 10, 64)
	stime, err2 := strconv.ParseInt(f[12], 10, 64)
	if err1 != nil || err2 != nil {
		return 0
	}
	const ticksPerSecond = 100 // USER_HZ on Linux
	return time.Duration(utime+stime) * time.Second / ticksPerSecond
}

// stepTimes is a slog handler that sums the plan statements' durations by step (the
// store logs each at debug level), for BenchmarkPlan -v.
type stepTimes struct {
	mu    sync.Mutex
	order []string
	total map[string]time.Duration
	rows  map[string]int64
	// With a backend pid, the backend's CPU time since the previous statement is
	// charged to each statement (the pool has one connection, statements run in turn).
	pid     int
	lastCPU time.Duration
	cpu     map[string]time.Duration
}

func (h *stepTimes) Enabled(context.Context, slog.Level) bool { return true }
func (h *stepTimes) WithAttrs([]slog.Attr) slog.Handler       { return h }
func (h *stepTimes) WithGroup(string) slog.Handler            { return h }

func (h *stepTimes) Handle(_ context.Context, r slog.Record) error {
	if r.Message != "plan statement" {
		return nil
	}
	var step string
	var rows int64
	var d time.Duration
	r.Attrs(func(a slog.Attr) bool {
		switch a.Key {
		case "step":
			step = a.Value.String()
		case "rows":
			rows = a.Value.Int64()
		case "duration":
			d = a.Value.Duration()
		}
		return true
	})
	h.mu.Lock()
	defer h.mu.Unlock()
	if _, ok := h.total[step]; !ok {
		h.order = append(h.order, step)
	}
	h.total[step] += d
	h.rows[step] += rows
	if h.pid != 0 {
		now := backendCPU(h.pid)
		h.cpu[step] += now - h.lastCPU
		h.lastCPU = now
	}
	return nil
}

// mark starts charging backend pid's CPU time from now.
func (h *stepTimes) mark(pid int) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.pid, h.lastCPU = pid, backendCPU(pid)
}

func (h *stepTimes) reset() {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.order, h.total, h.rows, h.cpu = nil, map[string]time.Duration{}, map[string]int64{}, map[string]time.Duration{}
}

// log prints the steps in the order they first ran, with the slowest marked, when -v.
func (h *stepTimes) log(b *testing.B) {
	if !testing.Verbose() {
		return
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	var sum time.Duration
	for _, d := range h.total {
		sum += d
	}
	var out strings.Builder
	fmt.Fprintf(&out, "plan statements (%d runs, %s in all):\n", b.N, sum.Round(time.Millisecond))
	slowest := slices.Clone(h.order)
	slices.SortFunc(slowest, func(x, y string) int { return int(h.total[y] - h.total[x]) })
	for _, step := range h.order {
		mark := ""
		if len(slowest) > 0 && step == slowest[0] {
			mark = "  ← slowest"
		}
		fmt.Fprintf(&out, "  %-24s %8d rows %10s  cpu %6s%s\n", step, h.rows[step], h.total[step].Round(100*time.Microsecond),
			h.cpu[step], mark)
	}
	b.Log(out.String())
}
