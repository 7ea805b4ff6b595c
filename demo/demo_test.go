package demo

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"log/slog"
	"maps"
	"net"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/sethvargo/go-envconfig"

	"github.com/groupsync/groupsync/config"
	"github.com/groupsync/groupsync/connectors"
	"github.com/groupsync/groupsync/connectors/simkit"
	"github.com/groupsync/groupsync/state/statetest"
)

func TestSampleOrgIsDeterministicAndHasDifferences(t *testing.T) {
	a, b := SampleOrg(), SampleOrg()
	if !reflect.DeepEqual(a, b) {
		t.Fatal("two calls of SampleOrg differ")
	}
	c := a.Counts()
	if c.People < 200 || c.Groups < 24 || c.Groups > 60 || c.Memberships < 300 {
		t.Fatalf("sample organisation is not a few dozen groups and a few hundred people: %+v", c)
	}
	emails := map[string]bool{}
	for _, p := range a.People {
		if emails[p.Email] {
			t.Fatalf("email %s is used twice", p.Email)
		}
		emails[p.Email] = true
		if p.Email != strings.ToLower(p.Email) || strings.ContainsFunc(p.Email, func(r rune) bool { return r > 127 }) {
			t.Fatalf("email %q is not plain lower-case ASCII", p.Email)
		}
	}
	// Every source group is seeded in its system, members included.
	for system, groups := range a.Groups {
		tn := a.Tenant(system)
		if len(tn.Groups) != len(groups) || len(tn.People) != len(a.Accounts[system]) {
			t.Fatalf("%s tenant: %d groups, %d people; want %d, %d", system, len(tn.Groups), len(tn.People), len(groups), len(a.Accounts[system]))
		}
	}
	// The differences the demo promises to reconcile are there.
	has := func(system, name string) bool {
		return slices.ContainsFunc(a.Groups[system], func(g Group) bool { return g.Name == name })
	}
	for _, want := range [][2]string{{SystemDevRev, "ENGINEERING"}, {SystemSelfCommunity, "book club"}, {SystemAirtable, "DevRev Product Council"}} {
		if !has(want[0], want[1]) {
			t.Errorf("%s lacks the pre-existing group %q", want[0], want[1])
		}
	}
	if !has(SystemAirtable, "Office Zürich") || !slices.ContainsFunc(a.People, func(p simkit.Person) bool { return p.First == "Zoë" }) {
		t.Error("no unicode names in the sample organisation")
	}
	var missing []int
	for _, p := range a.Groups[SystemAirtable][len(teams)-1].Members {
		if !slices.Contains(a.Accounts[SystemDevRev], p) {
			missing = append(missing, p)
		}
	}
	if len(missing) == 0 {
		t.Error("Onboarding 2026 has no member without a DevRev account: no no_account to show")
	}
}

func TestConfigPassesValidation(t *testing.T) {
	sims, err := Start(SampleOrg())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(sims.Close)
	systems := map[string]connectors.SystemConfig{}
	for name, s := range sims.Systems {
		systems[name] = s.Config
	}
	dir := t.TempDir()

	path := filepath.Join(dir, "with-url.yaml")
	if err := WriteConfig(path, ConfigInputFor(systems, "postgres://postgres@127.0.0.1:5432/groupsync_demo?sslmode=disable", DefaultSchema)); err != nil {
		t.Fatal(err)
	}
	cfg, err := config.Load(path, envconfig.MapLookuper(nil))
	if err != nil {
		t.Fatalf("demo config does not load: %v", err)
	}
	if got := slices.Sorted(maps.Keys(cfg.Flows)); !slices.Equal(got, Flows) {
		t.Fatalf("flows = %v, want %v", got, Flows)
	}
	if cfg.Database.Schema != DefaultSchema || cfg.Systems[SystemSelfCommunity].BaseURL != sims.Systems[SystemSelfCommunity].Server.URL {
		t.Fatalf("schema %q, selfcommunity base_url %q", cfg.Database.Schema, cfg.Systems[SystemSelfCommunity].BaseURL)
	}
	// The health listener is part of the demo configuration: --keep-running serves it, and
	// the file is a start for a real one.
	if cfg.HTTP.Listen != DefaultHTTPListen {
		t.Errorf("http.listen = %q, want %q", cfg.HTTP.Listen, DefaultHTTPListen)
	}

	// Without a URL in the file, the environment supplies it; the file never holds a password.
	path = filepath.Join(dir, "env-url.yaml")
	if err := WriteConfig(path, ConfigInputFor(systems, "", DefaultSchema)); err != nil {
		t.Fatal(err)
	}
	if _, err := config.Load(path, envconfig.MapLookuper(map[string]string{"GROUPSYNC_DATABASE_URL": "postgres://u:pw@db/x"})); err != nil {
		t.Fatalf("demo config with the URL from the environment does not load: %v", err)
	}
	if _, err := config.Load(path, envconfig.MapLookuper(nil)); err == nil || !strings.Contains(err.Error(), "database.url") {
		t.Fatalf("a demo config without any database URL loaded: %v", err)
	}

	// A council without the excluded prefix would make the two Airtable/DevRev flows push
	// the same group both ways; the renderer refuses it before validation has to.
	in := ConfigInputFor(systems, "postgres://x@y/z", DefaultSchema)
	in.Councils = append(in.Councils, "Engineering")
	if _, err := ConfigYAML(in); err == nil {
		t.Fatal("a council outside the excluded prefix was accepted")
	}
}

func TestRedactURL(t *testing.T) {
	tests := []struct {
		in, want string
		password bool
	}{
		{"postgres://postgres@127.0.0.1:5432/x?sslmode=disable", "postgres://postgres@127.0.0.1:5432/x?sslmode=disable", false},
		{"postgres://gs:s3cr%40t@db:5432/gs", "postgres://gs:REDACTED@db:5432/gs", true},
		{"postgres://gs@db/gs?password=s3cret", "postgres://gs@db/gs?password=REDACTED", true},
		{"host=db user=gs password=s3cret dbname=gs", "host=db user=gs password=REDACTED dbname=gs", true},
		{"host=db password='s3 cret' dbname=gs", "host=db password=REDACTED dbname=gs", true},
		{"host=db dbname=gs", "host=db dbname=gs", false},
	}
	for _, tc := range tests {
		if got := RedactURL(tc.in); got != tc.want {
			t.Errorf("RedactURL(%q) = %q, want %q", tc.in, got, tc.want)
		}
		if got := HasPassword(tc.in); got != tc.password {
			t.Errorf("HasPassword(%q) = %v, want %v", tc.in, got, tc.password)
		}
	}
}

func TestEnvURLWins(t *testing.T) {
	db, err := OpenDatabase(t.Context(), DatabaseOptions{EnvURL: "postgres://gs:pw@db.invalid/gs"})
	if err != nil {
		t.Fatal(err)
	}
	if db.Source != SourceEnv || db.URL != "postgres://gs:pw@db.invalid/gs" || strings.Contains(db.Describe(), "pw@") {
		t.Fatalf("source %s, url %s, describe %s", db.Source, db.URL, db.Describe())
	}
}

func TestLocalDatabaseIsCreated(t *testing.T) {
	ctx := t.Context()
	var b [4]byte
	_, _ = rand.Read(b[:])
	name := "groupsync_demo_test_" + hex.EncodeToString(b[:])
	admin, err := pgx.Connect(ctx, statetest.URL())
	if err != nil {
		t.Fatalf("test database does not answer: %v; start Postgres on 127.0.0.1:5432 or set GROUPSYNC_TEST_DATABASE_URL", err)
	}
	t.Cleanup(func() {
		ctx := context.WithoutCancel(ctx)
		if _, err := admin.Exec(ctx, `DROP DATABASE IF EXISTS `+pgx.Identifier{name}.Sanitize()); err != nil {
			t.Errorf("drop database %s: %v", name, err)
		}
		_ = admin.Close(ctx)
	})
	for range 2 { // the second call finds it
		u, err := ensureLocalDatabase(ctx, statetest.URL(), name)
		if err != nil {
			t.Fatal(err)
		}
		conn, err := pgx.Connect(ctx, u)
		if err != nil {
			t.Fatalf("connect to the created database: %v", err)
		}
		var got string
		err = conn.QueryRow(ctx, `SELECT current_database()`).Scan(&got)
		_ = conn.Close(ctx)
		if err != nil || got != name {
			t.Fatalf("current_database() = %q, %v; want %s", got, err, name)
		}
	}
}

func TestResetSchemaRefusesForeignSchemas(t *testing.T) {
	err := ResetSchema(t.Context(), "postgres://nobody@127.0.0.1:1/x", "groupsync")
	if err == nil || !strings.Contains(err.Error(), "only schemas starting with groupsync_demo") {
		t.Fatalf("ResetSchema(groupsync) = %v, want a refusal before connecting", err)
	}
}

// TestFallbackToPrivatePostgres points the local probe at a closed port, so the demo
// starts its own server from the machine's binaries, as on a machine without Postgres.
func TestFallbackToPrivatePostgres(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closed := l.Addr().String()
	_ = l.Close()

	db, err := OpenDatabase(t.Context(), DatabaseOptions{LocalAdminURL: "postgres://postgres@" + closed + "/postgres?sslmode=disable&connect_timeout=2"})
	if err != nil {
		t.Fatalf("no private Postgres: %v", err)
	}
	t.Cleanup(func() { _ = db.Close() })
	e := db.Ephemeral()
	if db.Source != SourceEphemeral || e == nil || db.Fallback == "" {
		t.Fatalf("source %s, fallback %q: want the private Postgres after the local one failed", db.Source, db.Fallback)
	}
	if !strings.Contains(db.Describe(), e.Dir) {
		t.Errorf("Describe() = %q does not say where the data lives", db.Describe())
	}

	conn, err := pgx.Connect(t.Context(), db.URL)
	if err != nil {
		t.Fatalf("connect to the private Postgres: %v", err)
	}
	var dataDir string
	if err := conn.QueryRow(t.Context(), `SELECT current_setting('data_directory')`).Scan(&dataDir); err != nil {
		t.Fatal(err)
	}
	_ = conn.Close(t.Context())
	if !strings.HasPrefix(dataDir, e.Dir) {
		t.Fatalf("server data directory %s is not under %s", dataDir, e.Dir)
	}
	// As root, the server must run as an unprivileged account: it owns its data.
	fi, err := os.Stat(dataDir)
	if err != nil {
		t.Fatal(err)
	}
	owner := fi.Sys().(*syscall.Stat_t).Uid
	if os.Geteuid() == 0 && (owner == 0 || e.User == "") {
		t.Fatalf("running as root, the private Postgres runs as uid %d (account %q)", owner, e.User)
	}

	if err := db.Close(); err != nil {
		t.Fatalf("stop: %v", err)
	}
	if !e.Exited() {
		t.Fatal("the server still runs after Close")
	}
	if _, err := os.Stat(e.Dir); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("%s still exists after Close: %v", e.Dir, err)
	}
}

func TestNoBinariesSaysWhatToDo(t *testing.T) {
	_, err := StartEphemeral(t.Context(), EphemeralOptions{BinDir: t.TempDir()})
	if err == nil || !strings.Contains(err.Error(), "initdb") {
		t.Fatalf("StartEphemeral with an empty bin dir = %v, want an initdb failure", err)
	}
}

func TestAbandonedPrivatePostgresDirectoriesAreRemoved(t *testing.T) {
	tmp := t.TempDir()
	t.Setenv("TMPDIR", tmp)
	mk := func(name string, pid string, old bool) string {
		d := filepath.Join(tmp, ephemeralDirPrefix+name)
		if err := os.MkdirAll(filepath.Join(d, "data"), 0o700); err != nil {
			t.Fatal(err)
		}
		if pid != "" {
			if err := os.WriteFile(filepath.Join(d, "data", "postmaster.pid"), []byte(pid+"\n/x\n"), 0o600); err != nil {
				t.Fatal(err)
			}
		}
		if old {
			past := time.Now().Add(-time.Hour)
			if err := os.Chtimes(d, past, past); err != nil {
				t.Fatal(err)
			}
		}
		return d
	}
	abandoned := mk("abandoned", "", true)
	deadServer := mk("dead", "2147483646", true)
	running := mk("running", strconv.Itoa(os.Getpid()), true)
	starting := mk("starting", "", false)
	removeAbandoned(slog.New(slog.DiscardHandler))
	for d, gone := range map[string]bool{abandoned: true, deadServer: true, running: false, starting: false} {
		_, err := os.Stat(d)
		if exists := err == nil; exists == gone {
			t.Errorf("%s: exists=%v after cleanup, want exists=%v", filepath.Base(d), exists, !gone)
		}
	}
}
