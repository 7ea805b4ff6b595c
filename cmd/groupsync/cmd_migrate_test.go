package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

func testDatabaseURL() string {
	if u := os.Getenv("GROUPSYNC_TEST_DATABASE_URL"); u != "" {
		return u
	}
	return "postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable"
}

// freshSchema returns a schema name no other test uses and drops it when the test ends.
func freshSchema(t *testing.T) (string, *pgx.Conn) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, testDatabaseURL())
	if err != nil {
		t.Fatalf("connect to the test database: %v\nStart Postgres (127.0.0.1:5432, user postgres) or set GROUPSYNC_TEST_DATABASE_URL.", err)
	}
	b := make([]byte, 6)
	_, _ = rand.Read(b)
	schema := "gs_cmd_" + hex.EncodeToString(b)
	t.Cleanup(func() {
		// t.Context() is already canceled when cleanups run.
		ctx, cancel := context.WithTimeout(context.WithoutCancel(t.Context()), 10*time.Second)
		defer cancel()
		if _, err := conn.Exec(ctx, "DROP SCHEMA IF EXISTS "+pgx.Identifier{schema}.Sanitize()+" CASCADE"); err != nil {
			t.Errorf("drop schema %s: %v", schema, err)
		}
		_ = conn.Close(ctx)
	})
	return schema, conn
}

func TestMigrate(t *testing.T) {
	schema, conn := freshSchema(t)
	env := exampleEnv()
	env["GROUPSYNC_DATABASE_URL"] = testDatabaseURL()
	env["GROUPSYNC_DATABASE_SCHEMA"] = schema

	r := execute(t, env, "migrate", "--config", examplePath, "--log-format", "json")
	r.want(t, 0, "schema "+schema+" migrated to version", `"msg":"migrations applied"`)

	var applied int
	if err := conn.QueryRow(t.Context(), fmt.Sprintf("SELECT count(*) FROM %s.schema_migrations", pgx.Identifier{schema}.Sanitize())).Scan(&applied); err != nil {
		t.Fatalf("schema_migrations after migrate: %v", err)
	}
	if applied == 0 {
		t.Fatal("migrate recorded no migrations")
	}
	var tables int
	if err := conn.QueryRow(t.Context(), "SELECT count(*) FROM information_schema.tables WHERE table_schema = $1 AND table_name IN ('groups', 'runs', 'changes')", schema).Scan(&tables); err != nil {
		t.Fatal(err)
	}
	if tables != 3 {
		t.Errorf("found %d of the groups/runs/changes tables in %s", tables, schema)
	}

	execute(t, env, "migrate", "--config", examplePath).want(t, 0, "schema "+schema+" is up to date", "")
}

func TestMigrateUnreachableDatabase(t *testing.T) {
	env := exampleEnv()
	// Port 1 on localhost refuses connections at once.
	env["GROUPSYNC_DATABASE_URL"] = "postgres://gs:CANARY-pw@127.0.0.1:1/x?sslmode=disable&connect_timeout=2"
	r := execute(t, env, "migrate", "--config", examplePath, "--log-format", "json")
	r.want(t, 1, "", "groupsync: migrate: ")
	if !strings.Contains(r.stderr, "GROUPSYNC_DATABASE_URL") {
		t.Errorf("error should say how to point at a database:\n%s", r.stderr)
	}
	if strings.Contains(r.stdout+r.stderr, "CANARY-pw") {
		t.Errorf("the database password leaked:\n%s", r.stderr)
	}
}

// TestMigrateFromTheEnvironmentAlone: `GROUPSYNC_DATABASE_URL=… groupsync migrate` works on a
// machine without a configuration file; an explicit --config that is missing still fails.
func TestMigrateFromTheEnvironmentAlone(t *testing.T) {
	schema, _ := freshSchema(t)
	t.Chdir(t.TempDir())
	env := map[string]string{"GROUPSYNC_DATABASE_URL": testDatabaseURL(), "GROUPSYNC_DATABASE_SCHEMA": schema}
	execute(t, env, "migrate").want(t, 0, "schema "+schema+" migrated to version", "")
	execute(t, env, "migrate").want(t, 0, "is up to date", "")
	execute(t, env, "migrate", "--config", "missing.yaml").want(t, 1, "", "missing.yaml not found")
	execute(t, nil, "migrate").want(t, 1, "", "groupsync.yaml not found")
}
