package airtable

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/url"

	"github.com/groupsync/groupsync/connectors"
	"github.com/groupsync/groupsync/connectors/apiclient"
	"github.com/groupsync/groupsync/connectors/scim/scimclient"
)

// The writes go through scimclient, the SCIM write client the scim connector uses too,
// configured in Open with what is Airtable's own: its SCIM base, its endpoint labels, the
// single-object members value its example shows (with the RFC's array as the fallback),
// and the shared limiter and 30 s lockout of c.scim. What stays here is what only
// Airtable has: the read-back through the meta API.

func (c *conn) unsupported(op, why string) error {
	return &connectors.Error{System: c.name, Op: op, Class: connectors.ErrUnsupported, Message: why}
}

// CreateGroup creates an empty group through SCIM (SCIM never creates members with the
// group; the engine adds them next). Description and visibility do not exist in Airtable
// and are ignored. Create is not retried after an unknown outcome: the engine looks the
// name up first (FindGroupByName) so a retry adopts instead of duplicating. A name in use
// fails with ErrNameTaken and ErrPermanent (SCIM 409 uniqueness).
func (c *conn) CreateGroup(ctx context.Context, spec connectors.GroupSpec) (connectors.Group, error) {
	sg, err := c.groups.Create(ctx, spec.Name)
	if err != nil {
		return connectors.Group{}, err
	}
	if sg.ID == "" {
		// Airtable answers a create with the group; an empty answer was cut short, and the
		// engine's retry finds the group by name.
		return connectors.Group{}, c.badBody(epSCIMCreate, fmt.Errorf("empty answer: %w", io.ErrUnexpectedEOF))
	}
	return c.readBack(ctx, sg, spec.Name), nil
}

// readBack returns the group as the meta API shows it, so Raw and Hash match what the next
// pull reads and the mirror sees no change (echo suppression). If that read fails the
// write still happened: the SCIM answer stands in, and the next pull corrects the row.
func (c *conn) readBack(ctx context.Context, sg scimclient.Group, name string) connectors.Group {
	g, err := c.GetGroup(ctx, sg.ID)
	if err == nil {
		return g
	}
	c.log.DebugContext(ctx, "reading back written group failed; using the SCIM answer", "group_id", sg.ID, "error", err)
	if sg.DisplayName != nil {
		name = *sg.DisplayName
	}
	raw := json.RawMessage(bytes.Clone(sg.Body))
	hash, herr := connectors.ContentHash(raw, "members")
	if herr != nil {
		raw, hash = nil, ""
	}
	return connectors.Group{ID: sg.ID, Name: name, State: "active", Raw: raw, Hash: hash}
}

// UpdateGroup renames the group with a PatchOp replace of displayName (PUT would also
// replace the member list). Only the name can change in Airtable.
func (c *conn) UpdateGroup(ctx context.Context, id string, spec connectors.GroupSpec) (connectors.Group, error) {
	sg, err := c.groups.Rename(ctx, id, spec.Name)
	if err != nil {
		return connectors.Group{}, err
	}
	return c.readBack(ctx, sg, spec.Name), nil
}

// DeleteGroup deletes the group through SCIM (members' accounts are kept). Airtable has no
// archive. Deleting a group that is already gone succeeds: the outcome asked for holds.
func (c *conn) DeleteGroup(ctx context.Context, id string, mode connectors.DeleteMode) error {
	if mode != connectors.DeleteHard {
		return c.unsupported(epSCIMDelete, fmt.Sprintf("delete mode %q: Airtable groups cannot be archived", mode))
	}
	return c.groups.Delete(ctx, id)
}

// AddMembers adds accounts in one PatchOp. Adding a member who is already there changes
// nothing and succeeds. It sends the form Airtable documents (one add operation per
// member, a single object each) and, when the server refuses that with a 400 and has not
// taken it before, the RFC's array form once; whichever the server takes is kept for the
// connection (scimclient's NegotiateAddForm).
func (c *conn) AddMembers(ctx context.Context, groupID string, accountIDs []string) error {
	return c.groups.AddMembers(ctx, groupID, accountIDs)
}

// RemoveMembers removes accounts in one PatchOp, one filtered remove per member. SCIM may
// refuse the whole PatchOp when one member is already absent (noTarget); the client then
// reads the current members and removes those still present, so removing an absent member
// succeeds.
func (c *conn) RemoveMembers(ctx context.Context, groupID string, accountIDs []string) error {
	return c.groups.RemoveMembers(ctx, groupID, accountIDs)
}

var _ connectors.WriteProber = (*conn)(nil)

// ProbeWrite lists one SCIM group: SCIM answers only an enterprise admin's token with the
// enterprise.scim.usersAndGroups:manage scope, which every write here goes through, while
// the meta API that pulls use needs other scopes. A token missing it is refused (403) by
// this read as it would be by the first write.
func (c *conn) ProbeWrite(ctx context.Context) (string, error) {
	_, _, err := c.scim.DoRaw(ctx, apiclient.Request{
		Method: "GET", Path: c.scimPath("/Groups"), Endpoint: epSCIMList,
		Query: url.Values{"count": {"1"}},
	})
	if err != nil {
		return "", err
	}
	return "SCIM API answered (the writes' scope)", nil
}
