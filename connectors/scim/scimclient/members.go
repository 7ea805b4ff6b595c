package scimclient

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"

	"github.com/groupsync/groupsync/connectors"
	"github.com/groupsync/groupsync/connectors/scim/scimwire"
)

// Form is the form of the members value of a PATCH add.
type Form int32

const (
	// FormArray is RFC 7644 §3.5.2.1's: one add operation whose value is an array of
	// {"value": id}.
	FormArray Form = 1 + iota
	// FormObject is one add operation per member, each value a single {"value": id}:
	// the form Airtable's own example shows.
	FormObject
)

func (f Form) String() string {
	if f == FormObject {
		return "object"
	}
	return "array"
}

func (f Form) other() Form { return FormArray + FormObject - f }

// AddForm is the form the next add is sent in: the one the provider took, else the
// configured one.
func (c *Client) AddForm() Form {
	if f := Form(c.addForm.Load()); f != 0 {
		return f
	}
	return c.cfg.AddForm
}

// AddMembers adds users to the group in one request: a PatchOp add (in AddForm), or under
// Target.Put a PUT of the group with them appended. Adding a member who is there already
// changes nothing and succeeds (SCIM add semantics on a multi-valued attribute).
func (c *Client) AddMembers(ctx context.Context, groupID string, accountIDs []string) error {
	t, ids, err := c.memberWrite(ctx, accountIDs)
	if err != nil || len(ids) == 0 {
		return err
	}
	if t.Put {
		_, err := c.put(ctx, t, groupID, func(doc map[string]any) bool {
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
		return err
	}
	if !c.cfg.NegotiateAddForm {
		_, err := c.patch(ctx, t, groupID, addOps(ids, c.cfg.AddForm))
		return err
	}
	return c.negotiatedAdd(ctx, t, groupID, ids)
}

// negotiatedAdd sends the add in the form in force and, while no form has been taken yet,
// answers a 400 by sending the other form once; whichever the provider takes is kept.
// Once one was taken a 400 is the provider's answer about these members, not the form.
func (c *Client) negotiatedAdd(ctx context.Context, t Target, groupID string, ids []string) error {
	form := c.AddForm()
	_, err := c.patch(ctx, t, groupID, addOps(ids, form))
	if err != nil && c.addForm.Load() == 0 && isStatus(err, http.StatusBadRequest) {
		other := form.other()
		if _, oerr := c.patch(ctx, t, groupID, addOps(ids, other)); oerr == nil {
			c.cfg.Logger.InfoContext(ctx, "SCIM add: the server takes the other members value form", "form", other.String())
			c.addForm.Store(int32(other))
			return nil
		}
	}
	if err == nil {
		c.addForm.CompareAndSwap(0, int32(form))
	}
	return err
}

// addOps is the PatchOp of an add of ids in form.
func addOps(ids []string, form Form) []scimwire.PatchOp {
	if form == FormArray {
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

// RemoveMembers removes users from the group: one PatchOp with a filtered remove per
// member (members[value eq "…"]), or under Target.Put a PUT of the group without them. A
// PatchOp is all or nothing and RFC 7644 §3.5.2.2 lets a provider refuse a remove that
// matches nothing (noTarget); the client then reads the members and removes those still
// there, so removing an absent member succeeds.
func (c *Client) RemoveMembers(ctx context.Context, groupID string, accountIDs []string) error {
	t, ids, err := c.memberWrite(ctx, accountIDs)
	if err != nil || len(ids) == 0 {
		return err
	}
	if t.Put {
		_, err := c.put(ctx, t, groupID, func(doc map[string]any) bool { return dropMembers(doc, ids) })
		return err
	}
	_, err = c.patch(ctx, t, groupID, removeOps(ids))
	var apiErr *connectors.Error
	if err == nil || !errors.As(err, &apiErr) || apiErr.Status != http.StatusBadRequest || !strings.EqualFold(apiErr.Type, scimwire.NoTarget) {
		return err
	}
	still, err := c.stillPresent(ctx, t, groupID, ids)
	if err != nil {
		return err
	}
	c.cfg.Logger.DebugContext(ctx, "some members to remove were already absent", "group_id", groupID,
		"asked", len(ids), "present", len(still))
	if len(still) == 0 {
		return nil
	}
	_, err = c.patch(ctx, t, groupID, removeOps(still))
	return err
}

// stillPresent reads the group and keeps the ids that are among its members (ids is
// reused).
func (c *Client) stillPresent(ctx context.Context, t Target, groupID string, ids []string) ([]string, error) {
	g, err := c.get(ctx, t, groupID, nil)
	if err != nil {
		return nil, err
	}
	members, err := g.Members()
	if err != nil {
		return nil, c.badBody(c.cfg.Endpoints.Get, err)
	}
	present := make(map[string]bool, len(members))
	for _, m := range members {
		present[m] = true
	}
	still := ids[:0]
	for _, id := range ids {
		if present[id] {
			still = append(still, id)
		}
	}
	return still, nil
}

func removeOps(ids []string) []scimwire.PatchOp {
	ops := make([]scimwire.PatchOp, len(ids))
	for i, id := range ids {
		ops[i] = scimwire.PatchOp{Op: "remove", Path: "members[value eq " + FilterString(id) + "]"}
	}
	return ops
}

// memberWrite checks a member batch (its size, empty ids; repeats are dropped), then asks
// for the Target and refuses member writes its schema forbids, all before any write.
func (c *Client) memberWrite(ctx context.Context, accountIDs []string) (Target, []string, error) {
	if len(accountIDs) > c.cfg.MaxMembersPerWrite {
		return Target{}, nil, c.fail(c.cfg.Endpoints.Patch, connectors.ErrPermanent,
			fmt.Sprintf("%d members in one write, more than the %d allowed", len(accountIDs), c.cfg.MaxMembersPerWrite))
	}
	seen := make(map[string]bool, len(accountIDs))
	ids := make([]string, 0, len(accountIDs))
	for _, id := range accountIDs {
		if id == "" {
			return Target{}, nil, c.fail(c.cfg.Endpoints.Patch, connectors.ErrPermanent, "empty account id")
		}
		if !seen[id] {
			seen[id] = true
			ids = append(ids, id)
		}
	}
	t, err := c.cfg.Target(ctx)
	if err != nil {
		return Target{}, nil, err
	}
	if t.MembersReadOnly {
		return Target{}, nil, c.fail(c.cfg.Endpoints.Patch, connectors.ErrUnsupported, "the provider's Group schema makes members read-only")
	}
	return t, ids, nil
}
