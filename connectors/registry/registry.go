// Package registry maps each connector kind to its opener: the one place that knows every
// connector package, so adding a system is one line here.
package registry

import (
	"fmt"
	"maps"
	"slices"

	"github.com/groupsync/groupsync/connectors"
	"github.com/groupsync/groupsync/connectors/airtable"
	"github.com/groupsync/groupsync/connectors/devrev"
	"github.com/groupsync/groupsync/connectors/scim"
	"github.com/groupsync/groupsync/connectors/sciminbound"
	"github.com/groupsync/groupsync/connectors/selfcommunity"
	"github.com/groupsync/groupsync/connectors/socialcast"
)

// Openers are the known kinds.
var Openers = map[connectors.Kind]connectors.Opener{
	connectors.KindAirtable:      airtable.Open,
	connectors.KindDevRev:        devrev.Open,
	connectors.KindSelfCommunity: selfcommunity.Open,
	connectors.KindSocialcast:    socialcast.Open,
	connectors.KindSCIM:          scim.Open,
	connectors.KindSCIMInbound:   sciminbound.Open,
}

// Kinds lists the known kinds, sorted.
func Kinds() []connectors.Kind { return slices.Sorted(maps.Keys(Openers)) }

// Open opens the connector of cfg.Kind.
func Open(cfg connectors.SystemConfig, deps connectors.Deps) (connectors.Connector, error) {
	open, ok := Openers[cfg.Kind]
	if !ok {
		return nil, fmt.Errorf("system %q: unknown kind %q (known: %v)", cfg.Name, cfg.Kind, Kinds())
	}
	if cfg.MatchBy == connectors.MatchByExtID && !cfg.Kind.MatchesByExtID() {
		return nil, fmt.Errorf("system %q: kind %s has no external id to match accounts by (match_by: ext_id)", cfg.Name, cfg.Kind)
	}
	c, err := open(cfg, deps)
	if err != nil {
		return nil, fmt.Errorf("system %q: %w", cfg.Name, err)
	}
	return c, nil
}
