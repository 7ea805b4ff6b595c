package state

import (
	"regexp"
	"strings"
	"testing"
	"testing/fstest"
)

func TestParseMigrations(t *testing.T) {
	file := func(s string) *fstest.MapFile { return &fstest.MapFile{Data: []byte(s)} }
	good := fstest.MapFS{
		"m/002_more.sql":   file("SELECT 2"),
		"m/001_mirror.sql": file("SELECT 1"),
	}
	got, err := parseMigrations(good, "m")
	if err != nil {
		t.Fatalf("parseMigrations: %v", err)
	}
	if len(got) != 2 || got[0].Version != 1 || got[0].Name != "mirror" || got[1].Version != 2 || got[1].SQL != "SELECT 2" {
		t.Fatalf("parseMigrations = %+v, want 001_mirror then 002_more", got)
	}

	refused := map[string]struct {
		fs   fstest.MapFS
		want string
	}{
		"two digits":      {fstest.MapFS{"m/01_mirror.sql": file("")}, `"01_mirror.sql": name must look like 001_name.sql`},
		"upper case":      {fstest.MapFS{"m/001_Mirror.sql": file("")}, `"001_Mirror.sql": name must look like`},
		"no name":         {fstest.MapFS{"m/001.sql": file("")}, `"001.sql": name must look like`},
		"wrong extension": {fstest.MapFS{"m/001_mirror.up.sql": file("")}, `"001_mirror.up.sql": name must look like`},
		"stray file":      {fstest.MapFS{"m/001_mirror.sql": file(""), "m/README": file("")}, `"README": name must look like`},
		"version zero":    {fstest.MapFS{"m/000_init.sql": file("")}, "versions start at 001"},
		"duplicate":       {fstest.MapFS{"m/001_a.sql": file(""), "m/001_b.sql": file("")}, "same version 1"},
		"gap":             {fstest.MapFS{"m/001_a.sql": file(""), "m/003_c.sql": file("")}, "expected version 002"},
	}
	for name, tc := range refused {
		t.Run(name, func(t *testing.T) {
			_, err := parseMigrations(tc.fs, "m")
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("parseMigrations error = %v, want it to contain %q", err, tc.want)
			}
		})
	}
}

func TestEmbeddedMigrationsParse(t *testing.T) {
	ms, err := embeddedMigrations()
	if err != nil {
		t.Fatalf("embedded migrations: %v", err)
	}
	if len(ms) == 0 || ms[0].Name != "mirror" {
		t.Fatalf("embedded migrations = %+v, want 001_mirror first", ms)
	}
	for _, m := range ms {
		if regexp.MustCompile(`\b` + DefaultSchema + `\.[a-z_"]`).MatchString(m.SQL) {
			t.Errorf("migration %03d_%s names the schema %q; it must run in whatever schema is configured", m.Version, m.Name, DefaultSchema)
		}
	}
}
