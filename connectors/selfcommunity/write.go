package selfcommunity

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"strings"

	"github.com/groupsync/groupsync/connectors"
	"github.com/groupsync/groupsync/connectors/apiclient"
)

// CreateGroup sends `POST /api/v2/group/` with name, description, privacy and visible (the
// API requires privacy, and visible for a private group). A POST whose outcome is unknown
// (5xx, timeout) is not repeated here: names are unique, so the engine looks the group up
// by name and adopts it instead of risking a 400 "already exists" or a duplicate.
func (c *conn) CreateGroup(ctx context.Context, spec connectors.GroupSpec) (connectors.Group, error) {
	if spec.Name == "" {
		return connectors.Group{}, &connectors.Error{System: c.name, Op: epGroupCreate, Class: connectors.ErrPermanent, Message: "group name is empty"}
	}
	v := spec.Visibility
	if v == connectors.VisibilityUnknown {
		v = DefaultVisibility
	}
	privacy, visible, ok := privacyOf(v)
	if !ok {
		return connectors.Group{}, &connectors.Error{System: c.name, Op: epGroupCreate, Class: connectors.ErrPermanent,
			Message: fmt.Sprintf("visibility %q is not one SelfCommunity models", v)}
	}
	body := map[string]any{
		"name":        spec.Name,
		"description": spec.Description,
		"privacy":     privacy,
		"visible":     visible,
	}
	resp, _, err := c.api.DoRaw(ctx, apiclient.Request{Method: "POST", Path: "/api/v2/group/", JSON: body, Endpoint: epGroupCreate})
	if err != nil {
		return connectors.Group{}, nameTaken(err)
	}
	return c.groupFromBody(epGroupCreate, resp)
}

// UpdateGroup sends `PATCH /api/v2/group/{id}/` with name and description, and privacy and
// visible when the spec models visibility (VisibilityUnknown leaves them alone). PATCH with
// the same body is idempotent in effect, so it is retried after an unknown outcome.
func (c *conn) UpdateGroup(ctx context.Context, id string, spec connectors.GroupSpec) (connectors.Group, error) {
	if err := c.checkID(epGroupPatch, "group", id); err != nil {
		return connectors.Group{}, err
	}
	if spec.Name == "" {
		return connectors.Group{}, &connectors.Error{System: c.name, Op: epGroupPatch, Class: connectors.ErrPermanent, Message: "group name is empty"}
	}
	body := map[string]any{"name": spec.Name, "description": spec.Description}
	if spec.Visibility != connectors.VisibilityUnknown {
		privacy, visible, ok := privacyOf(spec.Visibility)
		if !ok {
			return connectors.Group{}, &connectors.Error{System: c.name, Op: epGroupPatch, Class: connectors.ErrPermanent,
				Message: fmt.Sprintf("visibility %q is not one SelfCommunity models", spec.Visibility)}
		}
		body["privacy"], body["visible"] = privacy, visible
	}
	resp, _, err := c.api.DoRaw(ctx, apiclient.Request{Method: "PATCH", Path: "/api/v2/group/" + id + "/", JSON: body,
		Endpoint: epGroupPatch, Idempotent: true})
	if err != nil {
		return connectors.Group{}, nameTaken(err)
	}
	return c.groupFromBody(epGroupPatch, resp)
}

// DeleteGroup hard-deletes with `DELETE /api/v2/group/{id}/`; a group already gone (404)
// counts as deleted. SelfCommunity has no archive call, so DeleteArchive is unsupported.
func (c *conn) DeleteGroup(ctx context.Context, id string, mode connectors.DeleteMode) error {
	if mode != connectors.DeleteHard {
		return &connectors.Error{System: c.name, Op: epGroupDelete, Class: connectors.ErrUnsupported,
			Message: fmt.Sprintf("delete mode %q: SelfCommunity groups can only be deleted", mode)}
	}
	if err := c.checkID(epGroupDelete, "group", id); err != nil {
		return err
	}
	_, _, err := c.api.DoRaw(ctx, apiclient.Request{Method: "DELETE", Path: "/api/v2/group/" + id + "/", Endpoint: epGroupDelete})
	if errors.Is(err, connectors.ErrNotFound) {
		c.log.DebugContext(ctx, "group already deleted", "group_id", id)
		return nil
	}
	if err == nil {
		c.rememberManager(id, "")
	}
	return err
}

// AddMembers sends `POST /api/v2/group/{id}/subscribe/` with {"users": [ids]} in batches
// of AddMembersBatchSize. This subscribes directly (the invite endpoint would only invite).
// Subscribing someone already subscribed changes nothing, so the call is retried after an
// unknown outcome.
func (c *conn) AddMembers(ctx context.Context, groupID string, accountIDs []string) error {
	if err := c.checkID(epMembersAdd, "group", groupID); err != nil {
		return err
	}
	users := make([]json.Number, 0, len(accountIDs))
	for _, id := range accountIDs {
		if err := c.checkID(epMembersAdd, "user", id); err != nil {
			return err
		}
		// json.Number keeps the id's digits as they are: no float64 round trip.
		users = append(users, json.Number(id))
	}
	for start := 0; start < len(users); start += AddMembersBatchSize {
		batch := users[start:min(start+AddMembersBatchSize, len(users))]
		_, _, err := c.api.DoRaw(ctx, apiclient.Request{Method: "POST", Path: "/api/v2/group/" + groupID + "/subscribe/",
			JSON: map[string]any{"users": batch}, Endpoint: epMembersAdd, Idempotent: true})
		if err != nil {
			return err
		}
	}
	return nil
}

// RemoveMembers sends `DELETE /api/v2/group/{id}/subscribe/?user={id}`, one call per user
// (there is no bulk remove). A 404 means the user or the membership is already gone, which
// is the state asked for.
func (c *conn) RemoveMembers(ctx context.Context, groupID string, accountIDs []string) error {
	if err := c.checkID(epMemberRemove, "group", groupID); err != nil {
		return err
	}
	for _, id := range accountIDs {
		if err := c.checkID(epMemberRemove, "user", id); err != nil {
			return err
		}
	}
	for _, id := range accountIDs {
		_, _, err := c.api.DoRaw(ctx, apiclient.Request{Method: "DELETE", Path: "/api/v2/group/" + groupID + "/subscribe/",
			Query: url.Values{"user": {id}}, Endpoint: epMemberRemove})
		if errors.Is(err, connectors.ErrNotFound) {
			c.log.DebugContext(ctx, "member already absent", "group_id", groupID, "account_id", id)
			continue
		}
		if err != nil {
			return err
		}
	}
	return nil
}

// nameTaken marks the 400 that refuses a name in use (field error on name, "group with this
// name already exists."; apis.md §1.8 leaves the exact status open, so 409 counts too) as
// ErrNameTaken.
func nameTaken(err error) error {
	var apiErr *connectors.Error
	if !errors.As(err, &apiErr) {
		return err
	}
	dup := apiErr.Status == 409 ||
		(apiErr.Status == 400 && strings.Contains(apiErr.Type, "name") && strings.Contains(apiErr.Message, "already exists"))
	if dup {
		return fmt.Errorf("%w: %w", connectors.ErrNameTaken, err)
	}
	return err
}
