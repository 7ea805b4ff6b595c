package devrev

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"

	"github.com/groupsync/groupsync/connectors"
)

type groupsCreateRequest struct {
	Name        string `json:"name"`
	Description string `json:"description"`
	// Type static: groupsync writes the membership itself.
	Type string `json:"type"`
	// MemberType dev_user: the accounts groupsync matches by email are dev users.
	MemberType string `json:"member_type"`
}

type groupsUpdateRequest struct {
	ID          string `json:"id"`
	Name        string `json:"name,omitempty"`
	Description string `json:"description,omitempty"`
}

type memberRequest struct {
	Group        string `json:"group"`
	Member       string `json:"member"`
	MemberRevOrg string `json:"member_rev_org,omitempty"`
}

func (c *conn) describe(d string) string {
	if strings.TrimSpace(d) == "" {
		return c.description
	}
	return d
}

// CreateGroup creates a static dev-user group. It is not retried after an unknown outcome
// (5xx, timeout): the engine adopts through FindGroupByName instead of risking a duplicate.
func (c *conn) CreateGroup(ctx context.Context, spec connectors.GroupSpec) (connectors.Group, error) {
	if spec.Name == "" {
		return connectors.Group{}, fmt.Errorf("%s: create group: empty name", c.name)
	}
	data, err := c.post(ctx, epGroupsCreate, groupsCreateRequest{
		Name: spec.Name, Description: c.describe(spec.Description), Type: "static", MemberType: "dev_user",
	}, false)
	if err != nil {
		return connectors.Group{}, nameTaken(err)
	}
	rec, err := decodeGroupEnvelope(data)
	if err != nil {
		return connectors.Group{}, c.malformed(epGroupsCreate, err)
	}
	// Created static just now, whatever the record says.
	return rec.Group, nil
}

// UpdateGroup sets a group's name and description. Repeating it is harmless, so it is
// retried like a read.
func (c *conn) UpdateGroup(ctx context.Context, id string, spec connectors.GroupSpec) (connectors.Group, error) {
	if id == "" {
		return connectors.Group{}, fmt.Errorf("%s: update group: empty id", c.name)
	}
	data, err := c.post(ctx, epGroupsUpdate, groupsUpdateRequest{
		ID: id, Name: spec.Name, Description: c.describe(spec.Description),
	}, true)
	if err != nil {
		return connectors.Group{}, nameTaken(err)
	}
	rec, err := decodeGroupEnvelope(data)
	if err != nil {
		return connectors.Group{}, c.malformed(epGroupsUpdate, err)
	}
	return c.withType(ctx, rec)
}

// DeleteGroup always fails with ErrUnsupported: DevRev has no group delete or archive.
func (c *conn) DeleteGroup(_ context.Context, id string, mode connectors.DeleteMode) error {
	return &connectors.Error{System: c.name, Op: "delete group", Class: connectors.ErrUnsupported,
		Message: fmt.Sprintf("DevRev has no group delete (group %s, mode %s)", id, mode)}
}

// AddMembers adds each account with its own groups.members.add call (DevRev takes one
// member per call). A member who is already there is success, however the API words it:
// the spec lists no status for a duplicate (a 409 or one of its 400s), so a 400 or 409 is
// settled by looking for the member in the group.
func (c *conn) AddMembers(ctx context.Context, groupID string, accountIDs []string) error {
	for _, id := range accountIDs {
		_, err := c.post(ctx, epMembersAdd, c.memberRequest(groupID, id), true)
		if err != nil && (isStatus(err, http.StatusConflict) || isStatus(err, http.StatusBadRequest)) {
			if in, lerr := c.isMember(ctx, groupID, id); lerr == nil && in {
				err = nil
			}
		}
		if err != nil {
			return fmt.Errorf("add %s to group %s: %w", id, groupID, err)
		}
	}
	return nil
}

// errFound stops a member listing once the member sought is seen.
var errFound = errors.New("member found")

// isMember reports whether memberID is in the group, paging its members until found.
func (c *conn) isMember(ctx context.Context, groupID, memberID string) (bool, error) {
	_, err := c.ListMembers(ctx, groupID, func(page []connectors.Member) error {
		for _, m := range page {
			if m.AccountID == memberID {
				return errFound
			}
		}
		return nil
	})
	if errors.Is(err, errFound) {
		return true, nil
	}
	return false, err
}

// RemoveMembers removes each account with its own groups.members.remove call. DevRev
// answers 404 both for a missing group and for a member who is not in it; the second is
// success, so a 404 is settled with a groups.get.
func (c *conn) RemoveMembers(ctx context.Context, groupID string, accountIDs []string) error {
	for _, id := range accountIDs {
		_, err := c.post(ctx, epMembersRemove, c.memberRequest(groupID, id), true)
		if err == nil {
			continue
		}
		if errors.Is(err, connectors.ErrNotFound) {
			if _, gerr := c.post(ctx, epGroupsGet, idRequest{ID: groupID}, true); gerr == nil {
				continue
			}
		}
		return fmt.Errorf("remove %s from group %s: %w", id, groupID, err)
	}
	return nil
}

// memberRequest names the member; a rev user also needs its rev org, which is the prefix
// of its DON (`…:revo/<o>:revu/<n>` belongs to `…:revo/<o>`).
func (c *conn) memberRequest(groupID, memberID string) memberRequest {
	r := memberRequest{Group: groupID, Member: memberID}
	if i := strings.Index(memberID, ":revu/"); i > 0 && strings.Contains(memberID[:i], ":revo/") {
		r.MemberRevOrg = memberID[:i]
	}
	return r
}

// nameTaken marks the 409 conflict of groups.create and groups.update ("a group with the
// same name already exists") as ErrNameTaken.
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
