package socialcast

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"

	"github.com/groupsync/groupsync/connectors"
	"github.com/groupsync/groupsync/connectors/apiclient"
)

// permissionMode maps a visibility to Socialcast's group[permission_mode]; "" leaves the
// field out (the API's default, public, on create; unchanged on update). Socialcast has
// no hidden groups: private is the closest it offers.
func permissionMode(v connectors.Visibility) string {
	switch v {
	case connectors.VisibilityPublic:
		return "public"
	case connectors.VisibilityPrivate, connectors.VisibilityHidden:
		return "private"
	}
	return ""
}

func groupForm(spec connectors.GroupSpec, create bool) url.Values {
	form := url.Values{}
	if create || spec.Name != "" {
		form.Set("group[name]", spec.Name)
	}
	// The spec is the desired state: an empty description clears the remote one.
	form.Set("group[description]", spec.Description)
	if pm := permissionMode(spec.Visibility); pm != "" {
		form.Set("group[permission_mode]", pm)
	}
	return form
}

// CreateGroup creates a group (POST /api/groups.json, answered 201 {"group": …}). The
// request is not retried after an answer that leaves its outcome unknown (5xx, timeout):
// the engine then adopts through FindGroupByName instead of risking a duplicate.
func (c *conn) CreateGroup(ctx context.Context, spec connectors.GroupSpec) (connectors.Group, error) {
	if strings.TrimSpace(spec.Name) == "" {
		return connectors.Group{}, c.permanent(endpointGroupsCreate, errors.New("group name is required"))
	}
	body, _, err := c.api.DoRaw(ctx, apiclient.Request{Method: http.MethodPost, Path: "/api/groups.json",
		Form: groupForm(spec, true), Endpoint: endpointGroupsCreate})
	if err != nil {
		return connectors.Group{}, nameTaken(err)
	}
	if len(bytes.TrimSpace(body)) == 0 {
		// A Rails 201 may come without a body; the group exists, so look it up.
		return c.FindGroupByName(ctx, spec.Name)
	}
	g, err := decodeGroup(body)
	if err != nil {
		return connectors.Group{}, c.malformed(endpointGroupsCreate, err)
	}
	return g, nil
}

// UpdateGroup updates a group's name, description and (when known) permission mode with
// PUT /api/groups/{id}.json. An archived group refuses changes (a permanent error).
func (c *conn) UpdateGroup(ctx context.Context, id string, spec connectors.GroupSpec) (connectors.Group, error) {
	path, err := groupPath(id, "")
	if err != nil {
		return connectors.Group{}, c.permanent(endpointGroupUpdate, err)
	}
	body, _, err := c.api.DoRaw(ctx, apiclient.Request{Method: http.MethodPut, Path: path,
		Form: groupForm(spec, false), Endpoint: endpointGroupUpdate})
	if err != nil {
		return connectors.Group{}, nameTaken(err)
	}
	if len(bytes.TrimSpace(body)) == 0 {
		// Rails' respond_with answers an update with 204 No Content.
		return c.GetGroup(ctx, id)
	}
	g, err := decodeGroup(body)
	if err != nil {
		return connectors.Group{}, c.malformed(endpointGroupUpdate, err)
	}
	return g, nil
}

// nameTaken marks Rails' 422 validation answer for a name in use ({"errors": {"name":
// ["has already been taken"]}}) as ErrNameTaken; 409 counts too (apis.md §2.5 lists it).
func nameTaken(err error) error {
	var apiErr *connectors.Error
	if !errors.As(err, &apiErr) {
		return err
	}
	if apiErr.Status == http.StatusConflict ||
		(apiErr.Status == http.StatusUnprocessableEntity && strings.Contains(apiErr.Message, "name has already been taken")) {
		return fmt.Errorf("%w: %w", connectors.ErrNameTaken, err)
	}
	return err
}

// DeleteGroup archives the group (DeleteArchive), or archives then destroys it
// (DeleteHard: Socialcast destroys only archived groups). Both are idempotent in effect:
// an already archived group counts as archived, a missing group as deleted.
func (c *conn) DeleteGroup(ctx context.Context, id string, mode connectors.DeleteMode) error {
	switch mode {
	case connectors.DeleteArchive, connectors.DeleteHard:
	default:
		return &connectors.Error{System: c.name, Op: "groups.delete", Class: connectors.ErrUnsupported,
			Message: fmt.Sprintf("delete mode %q", mode)}
	}
	if err := c.archive(ctx, id); err != nil {
		if errors.Is(err, connectors.ErrNotFound) {
			return nil
		}
		return err
	}
	if mode == connectors.DeleteArchive {
		return nil
	}
	path, err := groupPath(id, "")
	if err != nil {
		return c.permanent(endpointGroupDestroy, err)
	}
	err = c.api.Do(ctx, apiclient.Request{Method: http.MethodDelete, Path: path, Endpoint: endpointGroupDestroy}, nil)
	if errors.Is(err, connectors.ErrNotFound) {
		return nil
	}
	return err
}

// archive sends DELETE /api/groups/{id}/archive.json. Socialcast does not document what
// archiving an archived group answers; a refusal is checked against the group's state, so
// a retry after a lost answer, or a second run, is not reported as a failure.
func (c *conn) archive(ctx context.Context, id string) error {
	path, err := groupPath(id, "/archive")
	if err != nil {
		return c.permanent(endpointGroupArchive, err)
	}
	err = c.api.Do(ctx, apiclient.Request{Method: http.MethodDelete, Path: path, Endpoint: endpointGroupArchive}, nil)
	if err == nil || !errors.Is(err, connectors.ErrPermanent) {
		return err
	}
	g, getErr := c.GetGroup(ctx, id)
	if getErr == nil && g.State == "archived" {
		return nil
	}
	return err
}

// AddMembers is unsupported: Socialcast documents no endpoint that adds a group member
// (apis.md §2.8), and guessing one would write to a production community blind.
func (c *conn) AddMembers(_ context.Context, _ string, _ []string) error {
	return &connectors.Error{System: c.name, Op: "members.add", Class: connectors.ErrUnsupported,
		Message: "socialcast documents no API to add group members"}
}

// RemoveMembers is unsupported, for the same reason as AddMembers.
func (c *conn) RemoveMembers(_ context.Context, _ string, _ []string) error {
	return &connectors.Error{System: c.name, Op: "members.remove", Class: connectors.ErrUnsupported,
		Message: "socialcast documents no API to remove group members"}
}
