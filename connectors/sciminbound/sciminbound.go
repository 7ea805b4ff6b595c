// Package sciminbound is the connector of kind scim_inbound: a system identity providers
// (Okta, Entra ID, any SCIM 2.0 client) push users and groups into through groupsync's own
// SCIM face (package scimface). The face keeps what it receives in the mirror database;
// this connector reads it back, so a flow pulls such a system like any other source and
// its removals pass the same guard (an IdP that unassigns everyone trips min_source_ratio).
//
// It is a source only: groupsync never writes to an identity provider through it.
package sciminbound

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"time"

	"github.com/groupsync/groupsync/connectors"
)

// Defaults of the face's trigger (options.debounce, options.max_delay).
const (
	// DefaultDebounce: an IdP pushes a change as a burst of requests (a user, then each
	// group it joins); the flows run once the burst has been quiet this long.
	DefaultDebounce = 10 * time.Second
	// DefaultMaxDelay: a provider that never pauses still has its writes carried this soon.
	DefaultMaxDelay = 5 * time.Minute
)

// Options are the kind's settings (systems.<name>.options).
type Options struct {
	// Debounce is how long writes must be quiet before the flows reading the system run.
	Debounce time.Duration
	// MaxDelay bounds how long a write waits for that quiet.
	MaxDelay time.Duration
}

// ParseOptions reads and checks the kind's options; unknown ones are refused.
func ParseOptions(opts map[string]string) (Options, error) {
	o := Options{Debounce: DefaultDebounce, MaxDelay: DefaultMaxDelay}
	for _, k := range slices.Sorted(maps.Keys(opts)) {
		v := opts[k]
		var dst *time.Duration
		switch k {
		case "debounce":
			dst = &o.Debounce
		case "max_delay":
			dst = &o.MaxDelay
		default:
			return o, fmt.Errorf("options.%s: unknown option for kind scim_inbound (known: debounce, max_delay)", k)
		}
		d, err := time.ParseDuration(v)
		if err != nil || d <= 0 {
			return o, fmt.Errorf("options.%s: %q is not a positive duration (e.g. 10s)", k, v)
		}
		*dst = d
	}
	if o.MaxDelay < o.Debounce {
		return o, fmt.Errorf("options.max_delay (%s) is shorter than options.debounce (%s)", o.MaxDelay, o.Debounce)
	}
	return o, nil
}

type conn struct {
	name string
	src  connectors.InboundSource
}

// Open opens the connector of a scim_inbound system.
func Open(cfg connectors.SystemConfig, deps connectors.Deps) (connectors.Connector, error) {
	if _, err := ParseOptions(cfg.Options); err != nil {
		return nil, err
	}
	src := deps.Inbound
	if src == nil {
		// Opened to check its configuration (groupsync config check): reads fail, saying why.
		src = noDatabase{}
	}
	return &conn{name: cfg.Name, src: src}, nil
}

func (c *conn) Name() string          { return c.name }
func (c *conn) Kind() connectors.Kind { return connectors.KindSCIMInbound }

// Capabilities: none; the system is written by its identity provider only.
func (c *conn) Capabilities() connectors.Capabilities { return connectors.Capabilities{} }

// ListGroups streams every group; the listing is a database read, complete when it ends.
func (c *conn) ListGroups(ctx context.Context, fn func([]connectors.Group) error) (connectors.Listing, error) {
	l := connectors.Listing{}
	err := c.src.InboundGroups(ctx, c.name, func(gs []connectors.Group) error {
		for i := range gs {
			h, err := connectors.ContentHash(gs[i].Raw)
			if err != nil {
				return fmt.Errorf("scim_inbound %s: group %s: %w", c.name, gs[i].ID, err)
			}
			gs[i].Hash = h
		}
		l.Pages++
		l.Items += len(gs)
		return fn(gs)
	})
	l.Complete = err == nil
	return l, err
}

// ListMembers streams a group's members with their identity keys inline.
func (c *conn) ListMembers(ctx context.Context, groupID string, fn func([]connectors.Member) error) (connectors.Listing, error) {
	l := connectors.Listing{}
	err := c.src.InboundMembers(ctx, c.name, groupID, func(ms []connectors.Member) error {
		l.Pages++
		l.Items += len(ms)
		return fn(ms)
	})
	l.Complete = err == nil
	return l, err
}

// ListAccounts streams users (all, or those ids names).
func (c *conn) ListAccounts(ctx context.Context, ids []string, fn func([]connectors.Account) error) (connectors.Listing, error) {
	l := connectors.Listing{}
	err := c.src.InboundAccounts(ctx, c.name, ids, func(as []connectors.Account) error {
		for i := range as {
			h, err := connectors.ContentHash(as[i].Raw)
			if err != nil {
				return fmt.Errorf("scim_inbound %s: user %s: %w", c.name, as[i].ID, err)
			}
			as[i].Hash = h
		}
		l.Pages++
		l.Items += len(as)
		return fn(as)
	})
	l.Complete = err == nil
	return l, err
}

func (c *conn) FindAccountByEmail(ctx context.Context, email string) (connectors.Account, error) {
	a, err := c.src.InboundAccountByKey(ctx, c.name, email)
	if err != nil {
		return a, err
	}
	a.Hash, err = connectors.ContentHash(a.Raw)
	return a, err
}

func (c *conn) FindGroupByName(ctx context.Context, name string) (connectors.Group, error) {
	return c.hashed(c.src.InboundGroupByName(ctx, c.name, name))
}

func (c *conn) GetGroup(ctx context.Context, id string) (connectors.Group, error) {
	return c.hashed(c.src.InboundGroup(ctx, c.name, id))
}

func (c *conn) hashed(g connectors.Group, err error) (connectors.Group, error) {
	if err != nil {
		return g, err
	}
	g.Hash, err = connectors.ContentHash(g.Raw)
	return g, err
}

// noDatabase is the source of a connector opened without the mirror.
type noDatabase struct{}

var errNoDatabase = fmt.Errorf("kind scim_inbound reads what its identity provider pushed from the mirror database, and this command opened none")

func (noDatabase) InboundGroups(context.Context, string, func([]connectors.Group) error) error {
	return errNoDatabase
}
func (noDatabase) InboundMembers(context.Context, string, string, func([]connectors.Member) error) error {
	return errNoDatabase
}
func (noDatabase) InboundAccounts(context.Context, string, []string, func([]connectors.Account) error) error {
	return errNoDatabase
}
func (noDatabase) InboundAccountByKey(context.Context, string, string) (connectors.Account, error) {
	return connectors.Account{}, errNoDatabase
}
func (noDatabase) InboundGroupByName(context.Context, string, string) (connectors.Group, error) {
	return connectors.Group{}, errNoDatabase
}
func (noDatabase) InboundGroup(context.Context, string, string) (connectors.Group, error) {
	return connectors.Group{}, errNoDatabase
}
