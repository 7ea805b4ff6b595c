package config_test

import (
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/sethvargo/go-envconfig"

	"github.com/groupsync/groupsync/config"
)

// FuzzLoad feeds arbitrary bytes to Load: whatever the file holds, Load returns a config or
// an error, never panics, and a returned config renders for `config show`.
func FuzzLoad(f *testing.F) {
	if b, err := os.ReadFile(examplePath); err == nil {
		f.Add(b)
	}
	f.Add([]byte(baseConfig))
	dir := f.TempDir()
	f.Fuzz(func(t *testing.T, data []byte) {
		path := filepath.Join(dir, "fuzz.yaml")
		if err := os.WriteFile(path, data, 0o600); err != nil {
			t.Fatal(err)
		}
		cfg, err := config.Load(path, envconfig.MapLookuper(nil))
		if err != nil {
			var ve *config.ValidationError
			if errors.As(err, &ve) && len(ve.Problems) == 0 {
				t.Fatal("validation error without problems")
			}
			return
		}
		if _, err := cfg.Redacted(); err != nil {
			t.Fatalf("valid config does not render: %v", err)
		}
	})
}
