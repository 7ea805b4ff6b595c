package scim

import (
	"context"
	"errors"
	"fmt"

	"github.com/groupsync/groupsync/connectors"
)

// features are what discovery learnt about the provider.
type features struct {
	patch  bool
	filter bool
	// maxResults is filter.maxResults (0 when not announced): the most resources the
	// provider returns in one answer, so the page size is kept to it.
	maxResults int
	etag       bool
	// usersPath and groupsPath are the resource endpoints ("/Users", "/Groups" unless
	// /ResourceTypes says otherwise).
	usersPath  string
	groupsPath string
	// membersReadOnly is true when /Schemas marks the Group's members readOnly or immutable.
	membersReadOnly bool
	// spcMissing is true when /ServiceProviderConfig answered 404: the conservative
	// defaults (PUT, no filter, no ETag) are in use.
	spcMissing bool
}

// discover returns the provider's features, reading them on first use. A failed discovery
// is not kept: the next call tries again (the provider may have been down).
func (c *conn) discover(ctx context.Context) (*features, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.feat != nil {
		return c.feat, nil
	}
	f, err := c.readFeatures(ctx)
	if err != nil {
		return nil, err
	}
	c.feat = f
	c.log.InfoContext(ctx, "scim provider discovered", "patch", f.patch, "filter", f.filter,
		"max_results", f.maxResults, "etag", f.etag, "users", f.usersPath, "groups", f.groupsPath,
		"members_read_only", f.membersReadOnly, "write_mode", c.writeModeFor(f))
	return f, nil
}

// readFeatures reads the three discovery endpoints. /ServiceProviderConfig is REQUIRED by
// RFC 7644 §4, but a provider that answers it with 404 still speaks SCIM: it gets the
// defaults every provider must honour (PUT, no filter, no ETag). /ResourceTypes and
// /Schemas are as optional in practice; without them the RFC's endpoints and mutability
// apply. Any other failure (401, 5xx, a malformed body) fails discovery.
func (c *conn) readFeatures(ctx context.Context) (*features, error) {
	f := &features{usersPath: "/Users", groupsPath: "/Groups"}
	body, _, err := c.get(ctx, "/ServiceProviderConfig", epSPC, nil)
	switch {
	case errors.Is(err, connectors.ErrNotFound):
		f.spcMissing = true
		c.log.WarnContext(ctx, "scim provider has no /ServiceProviderConfig: writes use PUT, look-ups scan listings")
	case err != nil:
		return nil, fmt.Errorf("discovery: %w", err)
	default:
		spc, derr := decodeSPC(body)
		if derr != nil {
			return nil, c.badBody(epSPC, derr)
		}
		spc.usersPath, spc.groupsPath = f.usersPath, f.groupsPath
		*f = spc
	}
	body, _, err = c.get(ctx, "/ResourceTypes", epResourceTypes, nil)
	switch {
	case errors.Is(err, connectors.ErrNotFound):
	case err != nil:
		return nil, fmt.Errorf("discovery: %w", err)
	default:
		users, groups, derr := decodeResourceTypes(body)
		if derr != nil {
			return nil, c.badBody(epResourceTypes, derr)
		}
		if users != "" {
			f.usersPath = users
		}
		if groups != "" {
			f.groupsPath = groups
		}
	}
	body, _, err = c.get(ctx, "/Schemas", epSchemas, nil)
	switch {
	case errors.Is(err, connectors.ErrNotFound):
	case err != nil:
		return nil, fmt.Errorf("discovery: %w", err)
	default:
		writable, _, derr := decodeSchemas(body)
		if derr != nil {
			return nil, c.badBody(epSchemas, derr)
		}
		f.membersReadOnly = !writable
	}
	return f, nil
}

// writeModeFor is the write mode in force: the option when set, else PATCH where the
// provider supports it.
func (c *conn) writeModeFor(f *features) string {
	switch {
	case c.writeMode != WriteModeAuto:
		return c.writeMode
	case f.patch:
		return WriteModePatch
	}
	return WriteModePut
}

// filters reports whether look-ups may use filters.
func (c *conn) filters(f *features) bool { return f.filter && !c.noFilter }

// pageCount is the count asked per page: page_size, kept to the provider's maxResults.
func (c *conn) pageCount(f *features) int {
	if f.maxResults > 0 && f.maxResults < c.pageSize {
		return f.maxResults
	}
	return c.pageSize
}

// ProbeWrite runs discovery and lists one group: SCIM tokens are usually all-or-nothing,
// so a token that can read Groups can write them, and discovery says how writes will go.
func (c *conn) ProbeWrite(ctx context.Context) (string, error) {
	f, err := c.discover(ctx)
	if err != nil {
		return "", err
	}
	if _, err := c.listPage(ctx, f, f.groupsPath, epGroupsList, 1, 1, nil); err != nil {
		return "", err
	}
	detail := fmt.Sprintf("SCIM provider answered: writes by %s, filtering %v, ETags %v", c.writeModeFor(f), c.filters(f), f.etag)
	if f.membersReadOnly {
		detail += "; its Group schema makes members read-only: member writes will be refused"
	}
	return detail, nil
}
