package config

import (
	"fmt"
	"reflect"
	"slices"
	"strings"

	"github.com/agnivade/levenshtein"
)

// envIgnoredPrefixes are GROUPSYNC_* variables of the project's own tests and benchmarks,
// never read by a running groupsync and never worth a warning.
var envIgnoredPrefixes = []string{EnvPrefix + "TEST_", EnvPrefix + "BENCH_"}

// systemEnvKeys are the per-system variable suffixes applyEnv reads.
var systemEnvKeys = []string{"BASE_URL", "USERNAME", "TOKEN", "TOKEN_FILE", "PASSWORD", "PASSWORD_FILE",
	"JWT_SECRET", "JWT_SECRET_FILE"}

// KnownEnv lists every GROUPSYNC_* variable the configuration reads, for cfg's systems.
func KnownEnv(cfg *Config) []string {
	known := []string{EnvPrefix + "CONFIG"}
	t := reflect.TypeFor[fixedEnv]()
	for i := range t.NumField() {
		known = append(known, EnvPrefix+t.Field(i).Tag.Get("env"))
	}
	for name := range cfg.Systems {
		for _, k := range systemEnvKeys {
			known = append(known, SystemEnvPrefix(name)+k)
		}
	}
	slices.Sort(known)
	return known
}

// UnknownEnv returns one warning for each GROUPSYNC_* variable of environ (KEY=value
// entries, as os.Environ gives) that the configuration does not read: a misspelt name, or a
// system's variable for a system the file does not have (compose's *-prod names for
// systems named otherwise). Each names the closest variable it does read. Values are never
// quoted: they may be secrets.
func UnknownEnv(environ []string, cfg *Config) []string {
	known := KnownEnv(cfg)
	var warnings []string
	for _, kv := range environ {
		name, _, _ := strings.Cut(kv, "=")
		if !strings.HasPrefix(name, EnvPrefix) || slices.Contains(known, name) || ignoredEnv(name) {
			continue
		}
		w := fmt.Sprintf("environment variable %s is not read by groupsync", name)
		if closest := closestName(name, known); closest != "" {
			w += fmt.Sprintf(": did you mean %s?", closest)
		}
		if strings.HasPrefix(name, EnvPrefix+"SYSTEMS_") {
			w += fmt.Sprintf(" (system variables are %s<NAME>_<KEY> for the systems in the file: %s)",
				EnvPrefix+"SYSTEMS_", strings.Join(sortedKeys(cfg.Systems), ", "))
		}
		warnings = append(warnings, w)
	}
	slices.Sort(warnings)
	return warnings
}

func ignoredEnv(name string) bool {
	for _, p := range envIgnoredPrefixes {
		if strings.HasPrefix(name, p) {
			return true
		}
	}
	return false
}

// closestName is the known name nearest to name, if within a third of its length.
func closestName(name string, known []string) string {
	best, bestD := "", 0
	for _, k := range known {
		if d := levenshtein.ComputeDistance(name, k); best == "" || d < bestD {
			best, bestD = k, d
		}
	}
	if bestD > max(2, len(best)/3) {
		return ""
	}
	return best
}
