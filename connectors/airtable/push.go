package airtable

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"strings"

	"github.com/groupsync/groupsync/connectors"
	"github.com/groupsync/groupsync/connectors/apiclient"
	"github.com/groupsync/groupsync/connectors/scim/scimwire"
)

// scimString renders s as a SCIM filter string literal: a JSON string, with only the
// escapes JSON requires (no \u003c for '<'), so names with quotes, backslashes and HTML
// reach the server as written.
func scimString(s string) string {
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	_ = enc.Encode(s) // encoding a string cannot fail
	return strings.TrimSuffix(b.String(), "\n")
}

func groupPath(id string) string { return "/Groups/" + url.PathEscape(id) }

func (c *conn) unsupported(op, why string) error {
	return &connectors.Error{System: c.name, Op: op, Class: connectors.ErrUnsupported, Message: why}
}

func (c *conn) permanent(op, msg string) error {
	return &connectors.Error{System: c.name, Op: op, Class: connectors.ErrPermanent, Message: msg}
}

// CreateGroup creates an empty group through SCIM (SCIM never creates members with the
// group; the engine adds them next). Description and visibility do not exist in Airtable
// and are ignored. Create is not retried after an unknown outcome: the engine looks the
// name up first (FindGroupByName) so a retry adopts instead of duplicating. A name in use
// fails with ErrPermanent (SCIM 409 uniqueness).
func (c *conn) CreateGroup(ctx context.Context, spec connectors.GroupSpec) (connectors.Group, error) {
	if strings.TrimSpace(spec.Name) == "" {
		return connectors.Group{}, c.permanent(epSCIMCreate, "group name is empty")
	}
	body, _, err := c.scim.DoRaw(ctx, apiclient.Request{
		Method: "POST", Path: c.scimPath("/Groups"), Endpoint: epSCIMCreate,
		JSON: map[string]any{"schemas": []string{scimwire.SchemaGroup}, "displayName": spec.Name},
	})
	if err != nil {
		return connectors.Group{}, nameTaken(err)
	}
	sg, err := decodeSCIMGroup(body)
	if err != nil {
		// The group exists now, but without its id the engine must find it by name.
		return connectors.Group{}, c.badBody(epSCIMCreate, err)
	}
	return c.readBack(ctx, sg, body, spec.Name), nil
}

// readBack returns the group as the meta API shows it, so Raw and Hash match what the next
// pull reads and the mirror sees no change (echo suppression). If that read fails the
// write still happened: the SCIM answer stands in, and the next pull corrects the row.
func (c *conn) readBack(ctx context.Context, sg scimGroupJSON, scimBody []byte, name string) connectors.Group {
	g, err := c.GetGroup(ctx, string(sg.ID))
	if err == nil {
		return g
	}
	c.log.DebugContext(ctx, "reading back written group failed; using the SCIM answer", "group_id", string(sg.ID), "error", err)
	if sg.DisplayName != nil {
		name = *sg.DisplayName
	}
	raw := json.RawMessage(bytes.Clone(scimBody))
	hash, herr := connectors.ContentHash(raw, "members")
	if herr != nil {
		raw, hash = nil, ""
	}
	return connectors.Group{ID: string(sg.ID), Name: name, State: "active", Raw: raw, Hash: hash}
}

// UpdateGroup renames the group with a PatchOp replace of displayName (PUT would also
// replace the member list). Only the name can change in Airtable.
func (c *conn) UpdateGroup(ctx context.Context, id string, spec connectors.GroupSpec) (connectors.Group, error) {
	if strings.TrimSpace(spec.Name) == "" {
		return connectors.Group{}, c.permanent(epSCIMPatch, "group name is empty")
	}
	body, err := c.patch(ctx, id, []scimwire.PatchOp{{Op: "replace", Path: "displayName", Value: spec.Name}})
	if err != nil {
		return connectors.Group{}, nameTaken(err)
	}
	sg, err := decodeSCIMGroup(body)
	if err != nil {
		sg = scimGroupJSON{ID: apiclient.ID(id)}
	}
	return c.readBack(ctx, sg, body, spec.Name), nil
}

// DeleteGroup deletes the group through SCIM (members' accounts are kept). Airtable has no
// archive. Deleting a group that is already gone succeeds: the outcome asked for holds.
func (c *conn) DeleteGroup(ctx context.Context, id string, mode connectors.DeleteMode) error {
	if mode != connectors.DeleteHard {
		return c.unsupported(epSCIMDelete, fmt.Sprintf("delete mode %q: Airtable groups cannot be archived", mode))
	}
	if id == "" {
		return c.permanent(epSCIMDelete, "empty group id")
	}
	_, _, err := c.scim.DoRaw(ctx, apiclient.Request{Method: "DELETE", Path: c.scimPath(groupPath(id)), Endpoint: epSCIMDelete})
	if errors.Is(err, connectors.ErrNotFound) {
		c.log.DebugContext(ctx, "group already deleted", "group_id", id)
		return nil
	}
	return err
}

// Forms of the members value of a SCIM add: Airtable's example sends one object per add
// operation ({"value": "usr…"}); RFC 7644 §3.5.2.1 an array of them.
const (
	formObject int32 = 1 + iota
	formArray
)

// AddMembers adds accounts in one PatchOp. Adding a member who is already there changes
// nothing and succeeds (SCIM add semantics on a multi-valued attribute). It sends the form
// Airtable documents (one add operation per member, a single object each) and, when the
// server refuses that with a 400 and has not taken it before, the RFC's array form once;
// whichever the server takes is kept for the connection.
func (c *conn) AddMembers(ctx context.Context, groupID string, accountIDs []string) error {
	ids, err := c.memberBatch(accountIDs)
	if err != nil || len(ids) == 0 {
		return err
	}
	form := c.memberForm.Load()
	if form == 0 {
		form = formObject
	}
	_, err = c.patch(ctx, groupID, addOps(ids, form))
	if err != nil && c.memberForm.Load() == 0 && isStatus(err, 400) {
		other := formArray + formObject - form
		if _, oerr := c.patch(ctx, groupID, addOps(ids, other)); oerr == nil {
			c.log.InfoContext(ctx, "SCIM add: the server takes the other members value form", "form", formName(other))
			c.memberForm.Store(other)
			return nil
		}
	}
	if err == nil {
		c.memberForm.CompareAndSwap(0, form)
	}
	return err
}

// addOps is the PatchOp of an add of ids in form.
func addOps(ids []string, form int32) []scimwire.PatchOp {
	if form == formArray {
		refs := make([]scimwire.MemberRef, len(ids))
		for i, id := range ids {
			refs[i] = scimwire.MemberRef{Value: id}
		}
		return []scimwire.PatchOp{{Op: "add", Path: "members", Value: refs}}
	}
	ops := make([]scimwire.PatchOp, len(ids))
	for i, id := range ids {
		ops[i] = scimwire.PatchOp{Op: "add", Path: "members", Value: scimwire.MemberRef{Value: id}}
	}
	return ops
}

func formName(f int32) string {
	if f == formArray {
		return "array"
	}
	return "object"
}

func isStatus(err error, status int) bool {
	var e *connectors.Error
	return errors.As(err, &e) && e.Status == status
}

// RemoveMembers removes accounts in one PatchOp, one filtered remove per member. SCIM may
// refuse the whole PatchOp when one member is already absent (noTarget); the connector then
// reads the current members and removes those still present, so removing an absent member
// succeeds.
func (c *conn) RemoveMembers(ctx context.Context, groupID string, accountIDs []string) error {
	ids, err := c.memberBatch(accountIDs)
	if err != nil || len(ids) == 0 {
		return err
	}
	_, err = c.patch(ctx, groupID, removeOps(ids))
	var apiErr *connectors.Error
	if err == nil || !errors.As(err, &apiErr) || apiErr.Status != 400 || apiErr.Type != scimwire.NoTarget {
		return err
	}
	present, err := c.scimMembers(ctx, groupID)
	if err != nil {
		return err
	}
	still := ids[:0]
	for _, id := range ids {
		if present[id] {
			still = append(still, id)
		}
	}
	c.log.DebugContext(ctx, "some members to remove were already absent", "group_id", groupID,
		"asked", len(accountIDs), "present", len(still))
	if len(still) == 0 {
		return nil
	}
	_, err = c.patch(ctx, groupID, removeOps(still))
	return err
}

// nameTaken marks SCIM's 409 uniqueness answer (displayName in use) as ErrNameTaken.
func nameTaken(err error) error {
	var apiErr *connectors.Error
	if errors.As(err, &apiErr) && apiErr.Status == 409 {
		return fmt.Errorf("%w: %w", connectors.ErrNameTaken, err)
	}
	return err
}

func removeOps(ids []string) []scimwire.PatchOp {
	ops := make([]scimwire.PatchOp, len(ids))
	for i, id := range ids {
		ops[i] = scimwire.PatchOp{Op: "remove", Path: "members[value eq " + scimString(id) + "]"}
	}
	return ops
}

// memberBatch checks a member batch against MaxMembersPerWrite and drops repeats.
func (c *conn) memberBatch(accountIDs []string) ([]string, error) {
	if len(accountIDs) > MaxMembersPerWrite {
		return nil, c.permanent(epSCIMPatch, fmt.Sprintf("%d members in one write, more than the %d allowed", len(accountIDs), MaxMembersPerWrite))
	}
	seen := make(map[string]bool, len(accountIDs))
	out := make([]string, 0, len(accountIDs))
	for _, id := range accountIDs {
		if id == "" {
			return nil, c.permanent(epSCIMPatch, "empty account id")
		}
		if !seen[id] {
			seen[id] = true
			out = append(out, id)
		}
	}
	return out, nil
}

// patch sends one PatchOp. Each operation the connector sends is idempotent in effect
// (add of a present member, replace of a name), so a PatchOp whose outcome is unknown may be
// repeated.
func (c *conn) patch(ctx context.Context, groupID string, ops []scimwire.PatchOp) ([]byte, error) {
	if groupID == "" {
		return nil, c.permanent(epSCIMPatch, "empty group id")
	}
	body, _, err := c.scim.DoRaw(ctx, apiclient.Request{
		Method: "PATCH", Path: c.scimPath(groupPath(groupID)), Endpoint: epSCIMPatch, Idempotent: true,
		JSON: scimwire.PatchRequest{Schemas: []string{scimwire.SchemaPatchOp}, Operations: ops},
	})
	return body, err
}

// scimMembers reads a group's current member ids through SCIM.
func (c *conn) scimMembers(ctx context.Context, groupID string) (map[string]bool, error) {
	body, _, err := c.scim.DoRaw(ctx, apiclient.Request{Method: "GET", Path: c.scimPath(groupPath(groupID)), Endpoint: epSCIMGet})
	if err != nil {
		return nil, err
	}
	sg, err := decodeSCIMGroup(body)
	if err != nil {
		return nil, c.badBody(epSCIMGet, err)
	}
	present := make(map[string]bool, len(sg.Members))
	for _, m := range sg.Members {
		present[string(m.Value)] = true
	}
	return present, nil
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
