package scim

import (
	"context"

	"github.com/groupsync/groupsync/connectors"
	"github.com/groupsync/groupsync/connectors/scim/scimclient"
)

// The writes go through scimclient, the SCIM write client Airtable's SCIM writes use too;
// what is the scim connector's own is the target (discovery's answer, target) and the
// shape of the groups it hands the engine (decodeGroup, GetGroup).

// target is how the provider takes writes, from discovery: PATCH where it is supported
// (or the write_mode option says so), else PUT; If-Match where ETags are announced.
func (c *conn) target(ctx context.Context) (scimclient.Target, error) {
	f, err := c.discover(ctx)
	if err != nil {
		return scimclient.Target{}, err
	}
	return scimclient.Target{GroupsPath: f.groupsPath, Put: c.writeModeFor(f) != WriteModePatch,
		ETags: f.etag, MembersReadOnly: f.membersReadOnly}, nil
}

// CreateGroup creates an empty group (the engine adds members next). Description and
// visibility have no place in SCIM's core Group and are ignored. A create is not repeated
// after an unknown outcome: the engine looks the name up first, so a retry adopts instead
// of duplicating. A name in use (409 uniqueness) is ErrNameTaken.
func (c *conn) CreateGroup(ctx context.Context, spec connectors.GroupSpec) (connectors.Group, error) {
	sg, err := c.groups.Create(ctx, spec.Name)
	if err != nil {
		return connectors.Group{}, err
	}
	if sg.ID == "" {
		// RFC 7644 §3.3 says 201 with the resource; a provider that sends no body is asked.
		return c.FindGroupByName(ctx, spec.Name)
	}
	g, _, _, err := decodeGroup(sg.Body)
	if err != nil {
		// The group exists now, but without its id the engine must find it by name.
		return connectors.Group{}, c.badBody(epGroupsCreate, err)
	}
	return g, nil
}

// UpdateGroup renames the group: a PATCH replace of displayName, or a PUT of the group as
// read with the new name (members kept). Only the name exists to change.
func (c *conn) UpdateGroup(ctx context.Context, id string, spec connectors.GroupSpec) (connectors.Group, error) {
	if _, err := c.groups.Rename(ctx, id, spec.Name); err != nil {
		return connectors.Group{}, err
	}
	// Read back in the listing's shape, so the next pull finds no change (echo suppression).
	return c.GetGroup(ctx, id)
}

// DeleteGroup deletes the group (its users are kept). SCIM has no archive. A group already
// gone counts as deleted.
func (c *conn) DeleteGroup(ctx context.Context, id string, mode connectors.DeleteMode) error {
	if mode != connectors.DeleteHard {
		return c.errorf(epGroupDelete, connectors.ErrUnsupported, "delete mode %q: SCIM groups cannot be archived", mode)
	}
	return c.groups.Delete(ctx, id)
}

// AddMembers adds users: one PATCH add of the members (RFC 7644 §3.5.2.1, an array of
// {value}), or a PUT of the group with them appended. Adding a member who is there already
// changes nothing.
func (c *conn) AddMembers(ctx context.Context, groupID string, accountIDs []string) error {
	return c.groups.AddMembers(ctx, groupID, accountIDs)
}

// RemoveMembers removes users: one PATCH with a filtered remove per member, or a PUT of
// the group without them. Removing an absent member succeeds, whether the provider
// ignores it or refuses the PatchOp with noTarget (the client then removes those still
// there).
func (c *conn) RemoveMembers(ctx context.Context, groupID string, accountIDs []string) error {
	return c.groups.RemoveMembers(ctx, groupID, accountIDs)
}
