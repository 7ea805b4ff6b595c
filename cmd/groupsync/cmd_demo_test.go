package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"io"
	"net/http"
	"os"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/sethvargo/go-envconfig"

	"github.com/groupsync/groupsync/logctx/logtest"

	"github.com/groupsync/groupsync/demo"
	"github.com/groupsync/groupsync/state/statetest"
)

// demoSchema returns a fresh schema name the demo may drop, dropped again after the test.
func demoSchema(t *testing.T) (string, *pgx.Conn) {
	t.Helper()
	var b [6]byte
	_, _ = rand.Read(b[:])
	schema := demo.SchemaPrefix + "_test_" + hex.EncodeToString(b[:])
	conn, err := pgx.Connect(t.Context(), statetest.URL())
	if err != nil {
		t.Fatalf("test database does not answer: %v; start Postgres on 127.0.0.1:5432 or set GROUPSYNC_TEST_DATABASE_URL", err)
	}
	t.Cleanup(func() {
		ctx := context.WithoutCancel(t.Context())
		if _, err := conn.Exec(ctx, `DROP SCHEMA IF EXISTS `+pgx.Identifier{schema}.Sanitize()+` CASCADE`); err != nil {
			t.Errorf("drop schema %s: %v", schema, err)
		}
		_ = conn.Close(ctx)
	})
	return schema, conn
}

func TestDemoAgainstTheTestDatabase(t *testing.T) {
	t.Parallel()
	schema, conn := demoSchema(t)
	env := map[string]string{"GROUPSYNC_DATABASE_URL": statetest.URL()}
	r := execute(t, env, "demo", "--schema", schema)
	r.want(t, 0, "GROUPSYNC_DATABASE_URL", "")
	if t.Failed() {
		return
	}
	for _, flow := range demo.Flows {
		if !regexp.MustCompile(`(?m)^` + flow + ` +\d+ +succeeded `).MatchString(r.stdout) {
			t.Errorf("summary lacks a succeeded row for flow %s:\n%s", flow, r.stdout)
		}
	}
	// A second pass right after the first writes nothing.
	for _, want := range []string{"no_account=", "): no writes, the targets already match", `psql "`, schema + ".group_overview"} {
		if !strings.Contains(r.stdout, want) {
			t.Errorf("demo output lacks %q:\n%s", want, r.stdout)
		}
	}

	// The mirror holds every source group in each of its flow's targets, once.
	org := demo.SampleOrg()
	live := func(system string) []string {
		rows, err := conn.Query(t.Context(), `SELECT name FROM `+pgx.Identifier{schema, "groups"}.Sanitize()+
			` WHERE system = $1 AND deleted_at IS NULL ORDER BY name`, system)
		if err != nil {
			t.Fatal(err)
		}
		names, err := pgx.CollectRows(rows, pgx.RowTo[string])
		if err != nil {
			t.Fatal(err)
		}
		return names
	}
	expect := func(target string, sourceGroups []demo.Group, keep func(string) bool) {
		t.Helper()
		got := live(target)
		for _, g := range sourceGroups {
			if !keep(g.Name) {
				continue
			}
			if n := countOf(got, g.Name); n != 1 {
				t.Errorf("%s holds %d groups named %q, want 1 (all: %v)", target, n, g.Name, got)
			}
		}
	}
	isTeam := func(n string) bool { return !strings.HasPrefix(n, demo.CouncilPrefix) }
	isCouncil := func(n string) bool { return strings.HasPrefix(n, demo.CouncilPrefix) }
	all := func(string) bool { return true }
	expect(demo.SystemDevRev, org.Groups[demo.SystemAirtable], isTeam)
	expect(demo.SystemSelfCommunity, org.Groups[demo.SystemAirtable], isTeam)
	expect(demo.SystemAirtable, org.Groups[demo.SystemDevRev], isCouncil)
	expect(demo.SystemSelfCommunity, org.Groups[demo.SystemSocialcast], all)
	// The differently cased groups were adopted and renamed, not duplicated.
	for system, stale := range map[string]string{demo.SystemDevRev: "ENGINEERING", demo.SystemSelfCommunity: "book club"} {
		if slices.Contains(live(system), stale) {
			t.Errorf("%s still holds %q next to its renamed copy", system, stale)
		}
	}

	// The printed queries run as printed.
	for _, line := range strings.Split(r.stdout, "\n") {
		line = strings.TrimSpace(line)
		if !strings.HasPrefix(line, "psql ") {
			continue
		}
		_, sql, ok := strings.Cut(line, ` -c "`)
		if !ok || !strings.HasSuffix(sql, `"`) {
			t.Fatalf("unexpected psql line %q", line)
		}
		rows, err := conn.Query(t.Context(), strings.TrimSuffix(sql, `"`))
		if err == nil {
			for rows.Next() {
			}
			err = rows.Err()
		}
		if err != nil {
			t.Errorf("printed query fails: %v\n%s", err, line)
		}
	}
}

func countOf(names []string, name string) int {
	n := 0
	for _, x := range names {
		if x == name {
			n++
		}
	}
	return n
}

// TestDemoOnAPrivatePostgres forces the path of a machine without Postgres: the demo starts
// its own server from the PostgreSQL binaries and removes it afterwards.
func TestDemoOnAPrivatePostgres(t *testing.T) {
	t.Parallel()
	// The operator's database URL is ignored with --ephemeral-db.
	env := map[string]string{"GROUPSYNC_DATABASE_URL": "postgres://nobody@127.0.0.1:1/nothing"}
	cfgPath := t.TempDir() + "/demo.yaml"
	r := execute(t, env, "demo", "--ephemeral-db", "--config-out", cfgPath)
	r.want(t, 0, "private Postgres on 127.0.0.1:", "")
	m := regexp.MustCompile(`data in (\S+), removed on exit`).FindStringSubmatch(r.stdout)
	if m == nil {
		t.Fatalf("output does not say where the private Postgres lived:\n%s", r.stdout)
	}
	if _, err := os.Stat(m[1]); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the private Postgres directory %s survived the demo: %v", m[1], err)
	}
	for _, flow := range demo.Flows {
		if !strings.Contains(r.stdout, flow) {
			t.Errorf("summary lacks flow %s", flow)
		}
	}
	// The kept configuration validates on its own (the simulators are gone, but the file
	// is complete).
	execute(t, nil, "config", "validate", "--config", cfgPath).want(t, 0, "ok", "")
}

func TestDemoRefusesAForeignSchema(t *testing.T) {
	execute(t, nil, "demo", "--schema", "groupsync").want(t, 2, "", "--schema \"groupsync\"")
}

// TestDemoKeepRunningServesHealth: with --keep-running the demo stays up as a daemon does,
// answering /healthz, /readyz (the scheduler runs the flows) and /metrics with the demo's
// own runs, until Ctrl-C, after which the listener is gone.
func TestDemoKeepRunningServesHealth(t *testing.T) {
	t.Parallel()
	schema, _ := demoSchema(t)
	env := map[string]string{"GROUPSYNC_DATABASE_URL": statetest.URL()}
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	var stdout, stderr logtest.Buffer
	done := make(chan int, 1)
	go func() {
		done <- run(ctx, []string{"demo", "--schema", schema, "--keep-running", "--http-listen", "127.0.0.1:0"},
			environment{stdout: &stdout, stderr: &stderr, lookup: envconfig.MapLookuper(env)})
	}()
	addrRE := regexp.MustCompile(`Health and metrics: http://(\S+)/healthz`)
	var addr string
	// The demo runs every flow twice first: under -race, beside the parallel tests, that
	// takes longer than poll's 20 s.
	pollWithin(t, 3*time.Minute, func() bool {
		if m := addrRE.FindStringSubmatch(stdout.String()); m != nil {
			addr = m[1]
			return true
		}
		select {
		case code := <-done:
			t.Fatalf("demo exited %d before serving:\n%s\n%s", code, stdout.String(), stderr.String())
		default:
		}
		return false
	}, "the demo to print its health address")
	get := func(path string) (int, string) {
		resp, err := http.Get("http://" + addr + path)
		if err != nil {
			t.Fatalf("GET %s: %v", path, err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	if code, _ := get("/healthz"); code != http.StatusOK {
		t.Errorf("/healthz = %d", code)
	}
	poll(t, func() bool { code, _ := get("/readyz"); return code == http.StatusOK }, "/readyz to answer 200")
	_, metrics := get("/metrics")
	for _, flow := range demo.Flows {
		if want := `groupsync_runs_total{flow="` + flow + `",status="succeeded"} 2`; !strings.Contains(metrics, want) {
			t.Errorf("/metrics lacks %s (the demo's two passes)", want)
		}
	}
	if !strings.Contains(metrics, `groupsync_mirror_records{kind="groups",system="`+demo.SystemAirtable+`"}`) {
		t.Error("/metrics lacks the mirror gauges")
	}

	cancel() // Ctrl-C
	select {
	case code := <-done:
		if code != 0 {
			t.Errorf("demo exit %d after Ctrl-C, want 0:\n%s", code, stderr.String())
		}
	case <-time.After(30 * time.Second):
		t.Fatal("demo did not stop within 30s of Ctrl-C")
	}
	if _, err := http.Get("http://" + addr + "/healthz"); err == nil {
		t.Error("the health listener still answers after the demo stopped")
	}
}

// pollWithin calls cond until it holds or d passes.
func pollWithin(t *testing.T, d time.Duration, cond func() bool, what string) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", d, what)
		}
		time.Sleep(50 * time.Millisecond) // polling a process from outside: no event to wait on
	}
}
