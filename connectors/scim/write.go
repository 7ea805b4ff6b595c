package scim

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"

	"github.com/groupsync/groupsync/connectors"
	"github.com/groupsync/groupsync/connectors/apiclient"
	"github.com/groupsync/groupsync/connectors/scim/scimwire"
)

func (c *conn) groupPath(f *features, id string) string {
	return f.groupsPath + "/" + url.PathEscape(id)
}

// CreateGroup creates an empty group (the engine adds members next). Description and
// visibility have no place in SCIM's core Group and are ignored. A create is not repeated
// after an unknown outcome: the engine looks the name up first, so a retry adopts instead
// of duplicating. A name in use (409 uniqueness) is ErrNameTaken.
func (c *conn) CreateGroup(ctx context.Context, spec connectors.GroupSpec) (connectors.Group, error) {
	if strings.TrimSpace(spec.Name) == "" {
		return connectors.Group{}, c.errorf(epGroupsCreate, connectors.ErrPermanent, "group name is empty")
	}
	f, err := c.discover(ctx)
	if err != nil {
		return connectors.Group{}, err
	}
	body, _, err := c.client.DoRaw(ctx, apiclient.Request{
		Method: http.MethodPost, Path: f.groupsPath, Endpoint: epGroupsCreate, ContentType: contentSCIM,
		Header: http.Header{"Accept": {acceptSCIM}},
		JSON:   map[string]any{"schemas": []string{schemaGroup}, "displayName": spec.Name},
	})
	if err != nil {
		return connectors.Group{}, nameTaken(err)
	}
	if len(bytes.TrimSpace(body)) == 0 {
		// RFC 7644 §3.3 says 201 with the resource; a provider that sends no body is asked.
		return c.FindGroupByName(ctx, spec.Name)
	}
	g, _, _, err := decodeGroup(body)
	if err != nil {
		// The group exists now, but without its id the engine must find it by name.
		return connectors.Group{}, c.badBody(epGroupsCreate, err)
	}
	return g, nil
}

// UpdateGroup renames the group: a PATCH replace of displayName, or a PUT of the group as
// read with the new name (members kept). Only the name exists to change.
func (c *conn) UpdateGroup(ctx context.Context, id string, spec connectors.GroupSpec) (connectors.Group, error) {
	if strings.TrimSpace(spec.Name) == "" {
		return connectors.Group{}, c.errorf(epGroupPatch, connectors.ErrPermanent, "group name is empty")
	}
	f, err := c.discover(ctx)
	if err != nil {
		return connectors.Group{}, err
	}
	if c.writeModeFor(f) == WriteModePatch {
		err = c.patch(ctx, f, id, []scimwire.PatchOp{{Op: "replace", Path: "displayName", Value: spec.Name}})
	} else {
		err = c.put(ctx, f, id, func(doc map[string]any) bool {
			doc["displayName"] = spec.Name
			return true
		})
	}
	if err != nil {
		return connectors.Group{}, nameTaken(err)
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
	if id == "" {
		return c.errorf(epGroupDelete, connectors.ErrPermanent, "empty group id")
	}
	f, err := c.discover(ctx)
	if err != nil {
		return err
	}
	_, _, err = c.client.DoRaw(ctx, apiclient.Request{Method: http.MethodDelete, Path: c.groupPath(f, id), Endpoint: epGroupDelete})
	if errors.Is(err, connectors.ErrNotFound) {
		c.log.DebugContext(ctx, "group already deleted", "group_id", id)
		return nil
	}
	return err
}

// AddMembers adds users: one PATCH add of the members (RFC 7644 §3.5.2.1, an array of
// {value}), or a PUT of the group with them appended. Adding a member who is there already
// changes nothing.
func (c *conn) AddMembers(ctx context.Context, groupID string, accountIDs []string) error {
	f, ids, err := c.memberWrite(ctx, accountIDs)
	if err != nil || len(ids) == 0 {
		return err
	}
	if c.writeModeFor(f) == WriteModePatch {
		refs := make([]scimwire.MemberRef, len(ids))
		for i, id := range ids {
			refs[i] = scimwire.MemberRef{Value: id}
		}
		return c.patch(ctx, f, groupID, []scimwire.PatchOp{{Op: "add", Path: "members", Value: refs}})
	}
	return c.put(ctx, f, groupID, func(doc map[string]any) bool {
		members, present := docMembers(doc)
		changed := false
		for _, id := range ids {
			if !present[id] {
				members = append(members, map[string]any{"value": id})
				present[id], changed = true, true
			}
		}
		doc["members"] = members
		return changed
	})
}

// RemoveMembers removes users: one PATCH with a filtered remove per member
// (members[value eq "…"]), or a PUT of the group without them. A PatchOp is all or nothing
// and RFC 7644 §3.5.2.2 lets a provider refuse a remove that matches nothing (noTarget);
// the connector then reads the members and removes those still there, so removing an
// absent member succeeds.
func (c *conn) RemoveMembers(ctx context.Context, groupID string, accountIDs []string) error {
	f, ids, err := c.memberWrite(ctx, accountIDs)
	if err != nil || len(ids) == 0 {
		return err
	}
	if c.writeModeFor(f) != WriteModePatch {
		return c.put(ctx, f, groupID, func(doc map[string]any) bool { return dropMembers(doc, ids) })
	}
	err = c.patch(ctx, f, groupID, removeOps(ids))
	var apiErr *connectors.Error
	if err == nil || !errors.As(err, &apiErr) || apiErr.Status != 400 || !strings.EqualFold(apiErr.Type, scimwire.NoTarget) {
		return err
	}
	_, ms, _, _, err := c.readGroup(ctx, f, groupID, nil)
	if err != nil {
		return err
	}
	present := make(map[string]bool, len(ms))
	for _, m := range ms {
		present[m.AccountID] = true
	}
	still := ids[:0]
	for _, id := range ids {
		if present[id] {
			still = append(still, id)
		}
	}
	c.log.DebugContext(ctx, "some members to remove were already absent", "group_id", groupID,
		"asked", len(ids), "present", len(still))
	if len(still) == 0 {
		return nil
	}
	return c.patch(ctx, f, groupID, removeOps(still))
}

func removeOps(ids []string) []scimwire.PatchOp {
	ops := make([]scimwire.PatchOp, len(ids))
	for i, id := range ids {
		ops[i] = scimwire.PatchOp{Op: "remove", Path: "members[value eq " + filterString(id) + "]"}
	}
	return ops
}

// memberWrite checks a member batch (size, empty ids, repeats) and that the provider lets
// members be written.
func (c *conn) memberWrite(ctx context.Context, accountIDs []string) (*features, []string, error) {
	if len(accountIDs) > MaxMembersPerWrite {
		return nil, nil, c.errorf(epGroupPatch, connectors.ErrPermanent, "%d members in one write, more than the %d allowed", len(accountIDs), MaxMembersPerWrite)
	}
	seen := make(map[string]bool, len(accountIDs))
	ids := make([]string, 0, len(accountIDs))
	for _, id := range accountIDs {
		if id == "" {
			return nil, nil, c.errorf(epGroupPatch, connectors.ErrPermanent, "empty account id")
		}
		if !seen[id] {
			seen[id] = true
			ids = append(ids, id)
		}
	}
	f, err := c.discover(ctx)
	if err != nil {
		return nil, nil, err
	}
	if f.membersReadOnly {
		return nil, nil, c.errorf(epGroupPatch, connectors.ErrUnsupported, "the provider's Group schema makes members read-only")
	}
	return f, ids, nil
}

// patch sends one PatchOp. Every operation the connector sends is idempotent in effect (an
// add of a present member, a replace of a name, a remove by value), so one whose outcome is
// unknown may be repeated.
func (c *conn) patch(ctx context.Context, f *features, groupID string, ops []scimwire.PatchOp) error {
	if groupID == "" {
		return c.errorf(epGroupPatch, connectors.ErrPermanent, "empty group id")
	}
	_, _, err := c.client.DoRaw(ctx, apiclient.Request{
		Method: http.MethodPatch, Path: c.groupPath(f, groupID), Endpoint: epGroupPatch, Idempotent: true,
		ContentType: contentSCIM, Header: http.Header{"Accept": {acceptSCIM}},
		JSON: scimwire.PatchRequest{Schemas: []string{schemaPatchOp}, Operations: ops},
	})
	return err
}

// put changes a group by read-modify-write: it reads the whole group, lets change edit it
// (change reports whether anything changed; nothing is sent otherwise) and PUTs it back.
// Where the provider offers ETags the PUT carries If-Match with the version read, so a
// change someone made in between is not overwritten: a 412 reads again, a few times.
func (c *conn) put(ctx context.Context, f *features, groupID string, change func(doc map[string]any) bool) error {
	for attempt := 1; ; attempt++ {
		_, _, version, body, err := c.readGroup(ctx, f, groupID, nil)
		if err != nil {
			return err
		}
		doc, err := putDocument(body)
		if err != nil {
			return c.badBody(epGroupGet, err)
		}
		if !change(doc) {
			return nil
		}
		req := apiclient.Request{Method: http.MethodPut, Path: c.groupPath(f, groupID), Endpoint: epGroupPut,
			ContentType: contentSCIM, Header: http.Header{"Accept": {acceptSCIM}}, JSON: doc}
		if f.etag && version != "" {
			req.Header.Set("If-Match", version)
		}
		_, _, err = c.client.DoRaw(ctx, req)
		if !isStatus(err, http.StatusPreconditionFailed) || attempt >= maxPreconditionRetries {
			return err
		}
		c.log.DebugContext(ctx, "group changed between read and write; reading again", "group_id", groupID, "attempt", attempt)
	}
}

// putDocument turns a group as read into the body of its PUT: every attribute kept
// (PUT replaces the whole resource, RFC 7644 §3.5.1), the read-only id and meta left out,
// numbers kept as written.
func putDocument(body []byte) (map[string]any, error) {
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.UseNumber()
	var doc map[string]any
	if err := dec.Decode(&doc); err != nil {
		return nil, err
	}
	if doc == nil {
		return nil, errors.New("group: null")
	}
	delete(doc, "id")
	delete(doc, "meta")
	if _, ok := doc["schemas"]; !ok {
		doc["schemas"] = []string{schemaGroup}
	}
	return doc, nil
}

// docMembers returns a PUT document's members and the values present.
func docMembers(doc map[string]any) ([]any, map[string]bool) {
	members, _ := doc["members"].([]any)
	present := make(map[string]bool, len(members))
	for _, m := range members {
		if obj, ok := m.(map[string]any); ok {
			present[memberValue(obj)] = true
		}
	}
	return members, present
}

// dropMembers removes ids from a PUT document's members and reports whether any was there.
func dropMembers(doc map[string]any, ids []string) bool {
	drop := make(map[string]bool, len(ids))
	for _, id := range ids {
		drop[id] = true
	}
	members, _ := docMembers(doc)
	kept := make([]any, 0, len(members))
	for _, m := range members {
		if obj, ok := m.(map[string]any); ok && drop[memberValue(obj)] {
			continue
		}
		kept = append(kept, m)
	}
	doc["members"] = kept
	return len(kept) != len(members)
}

// memberValue is a member's value as a string (a number keeps its literal).
func memberValue(obj map[string]any) string {
	switch v := obj["value"].(type) {
	case string:
		return v
	case json.Number:
		return v.String()
	}
	return ""
}

// nameTaken marks SCIM's 409 (uniqueness) as ErrNameTaken.
func nameTaken(err error) error {
	if isStatus(err, http.StatusConflict) {
		return fmt.Errorf("%w: %w", connectors.ErrNameTaken, err)
	}
	return err
}

func isStatus(err error, status int) bool {
	var e *connectors.Error
	return errors.As(err, &e) && e.Status == status
}
