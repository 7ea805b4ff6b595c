package syncengine

import (
	"fmt"
	"path"

	"github.com/groupsync/groupsync/config"
)

// scope decides which source groups a flow syncs. It is evaluated in Go, once, so the
// pull (which members to fetch) and the plan (which groups to diff) agree exactly.
type scope struct {
	all      bool
	names    map[string]bool
	ids      map[string]bool
	patterns []string
	exclude  []string
	// only, when set, narrows the scope to these source groups (by id or name): a run of
	// one group on demand (sync --once --group).
	only map[string]bool
}

func newScope(s config.Scope) (*scope, error) {
	sc := &scope{all: s.All, names: map[string]bool{}, ids: map[string]bool{}, patterns: s.Patterns, exclude: s.ExcludePatterns}
	for _, n := range s.Names {
		sc.names[n] = true
	}
	for _, id := range s.IDs {
		sc.ids[id] = true
	}
	for _, p := range append(append([]string{}, s.Patterns...), s.ExcludePatterns...) {
		if _, err := path.Match(p, ""); err != nil {
			return nil, fmt.Errorf("scope pattern %q: %w", p, err)
		}
	}
	return sc, nil
}

// narrow keeps only the groups named or with ids in groups (nil keeps the scope whole).
func (s *scope) narrow(groups []string) {
	if len(groups) == 0 {
		return
	}
	s.only = map[string]bool{}
	for _, g := range groups {
		s.only[g] = true
	}
}

func (s *scope) contains(id, name string) bool {
	if s.only != nil && !s.only[id] && !s.only[name] {
		return false
	}
	for _, p := range s.exclude {
		if ok, _ := path.Match(p, name); ok {
			return false
		}
	}
	if s.all || s.names[name] || s.ids[id] {
		return true
	}
	for _, p := range s.patterns {
		if ok, _ := path.Match(p, name); ok {
			return true
		}
	}
	return false
}
