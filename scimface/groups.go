package scimface

import (
	"context"
	"encoding/json"
	"net/http"
	"strings"

	elimity "github.com/elimity-com/scim"
	scimerrors "github.com/elimity-com/scim/errors"
	scimfilter "github.com/elimity-com/scim/filter"
	"github.com/elimity-com/scim/optional"
	filter "github.com/scim2/filter-parser/v2"

	"github.com/groupsync/groupsync/state"
)

// groups is the /Groups endpoint's storage. Members live in their own table, so a PATCH
// that adds one member writes one row, whatever the group's size.
type groups struct{ s *Server }

// groupFromAttrs reads a group's own attributes; members come back apart, as user ids.
func groupFromAttrs(id string, attrs map[string]any) (state.InboundGroup, []string, bool, error) {
	name, _ := attrs["displayName"].(string)
	if strings.TrimSpace(name) == "" {
		return state.InboundGroup{}, nil, false, badValue("displayName is required")
	}
	own := make(map[string]any, len(attrs))
	for k, v := range attrs {
		if !strings.EqualFold(k, "members") {
			own[k] = v
		}
	}
	raw, err := json.Marshal(own)
	if err != nil {
		return state.InboundGroup{}, nil, false, badValue("the group's attributes are not JSON")
	}
	g := state.InboundGroup{ID: id, DisplayName: name, Attrs: raw}
	g.ExternalID, _ = attrs["externalId"].(string)
	members, has := attrs[key(attrs, "members")]
	ids, err := memberValues(members)
	return g, ids, has, err
}

// memberValues reads the user ids out of a members value: one member object or a list.
func memberValues(v any) ([]string, error) {
	list, ok := v.([]any)
	if !ok && v != nil {
		list = []any{v}
	}
	ids := make([]string, 0, len(list))
	for _, m := range list {
		obj, _ := m.(map[string]any)
		id, _ := obj["value"].(string)
		if id == "" {
			return nil, badValue("a member needs a value: the id of a user of this system")
		}
		if t, _ := obj["type"].(string); strings.EqualFold(t, "Group") {
			return nil, badValue("member " + id + " is a group: nested groups are not accepted")
		}
		ids = append(ids, id)
	}
	return ids, nil
}

// wantsMembers reports whether the request's attributes/excludedAttributes keep members
// (RFC 7644 §3.4.2.5; Entra ID asks for groups with excludedAttributes=members).
func wantsMembers(r *http.Request) bool {
	q := r.URL.Query()
	for _, a := range strings.Split(q.Get("excludedAttributes"), ",") {
		if strings.EqualFold(strings.TrimSpace(a), "members") {
			return false
		}
	}
	if only := q.Get("attributes"); only != "" {
		for _, a := range strings.Split(only, ",") {
			a = strings.ToLower(strings.TrimSpace(a))
			if a == "members" || strings.HasPrefix(a, "members.") {
				return true
			}
		}
		return false
	}
	return true
}

func groupResource(g state.InboundGroup, members []state.InboundMember, withMembers bool) elimity.Resource {
	attrs := attrsOf(g.Attrs)
	delete(attrs, "externalId")
	if withMembers {
		list := make([]any, len(members))
		for i, m := range members {
			list[i] = map[string]any{"value": m.UserID, "display": m.Display, "type": "User",
				"$ref": "Users/" + m.UserID}
		}
		attrs["members"] = list
	}
	res := elimity.Resource{ID: g.ID, Attributes: attrs, Meta: resourceMeta(g.Version, g.Created, g.Modified)}
	if g.ExternalID != "" {
		res.ExternalID = optional.NewString(g.ExternalID)
	}
	return res
}

func (h *groups) Create(r *http.Request, attrs elimity.ResourceAttributes) (elimity.Resource, error) {
	in, ids, _, err := groupFromAttrs("", attrs)
	if err != nil {
		return elimity.Resource{}, err
	}
	var out state.InboundGroup
	err = h.s.store.InboundWrite(r.Context(), systemOf(r), func(tx *state.InboundTx) error {
		if out, err = tx.CreateGroup(r.Context(), in); err != nil {
			return err
		}
		return tx.AddMembers(r.Context(), out.ID, ids)
	})
	if err != nil {
		return elimity.Resource{}, h.s.scimError(r, err)
	}
	return h.read(r, out.ID)
}

// read answers a group as it is now, with members unless the request leaves them out.
func (h *groups) read(r *http.Request, id string) (elimity.Resource, error) {
	var g state.InboundGroup
	var members map[string][]state.InboundMember
	with := wantsMembers(r)
	err := h.s.store.InboundRead(r.Context(), systemOf(r), func(tx *state.InboundTx) error {
		var err error
		if g, err = tx.Group(r.Context(), id, false); err != nil || !with {
			return err
		}
		members, err = tx.Members(r.Context(), []string{id})
		return err
	})
	if err != nil {
		return elimity.Resource{}, h.s.scimError(r, err)
	}
	return groupResource(g, members[id], with), nil
}

func (h *groups) Get(r *http.Request, id string) (elimity.Resource, error) { return h.read(r, id) }

func (h *groups) GetAll(r *http.Request, p elimity.ListRequestParams) (elimity.Page, error) {
	return listResources(r, h.s, p, "groups", h.s.store.ListInboundGroups,
		func(gs []state.InboundGroup) ([]elimity.Resource, error) {
			_, res, err := h.s.groupViews(r, gs, wantsMembers(r))
			return res, err
		}, h.s.scanGroups)
}

// groupViews renders a page of groups, reading their members in one query when wanted,
// with the filterable form of each.
func (s *Server) groupViews(r *http.Request, page []state.InboundGroup, with bool) ([]map[string]any, []elimity.Resource, error) {
	var members map[string][]state.InboundMember
	if with && len(page) > 0 {
		ids := make([]string, len(page))
		for i, g := range page {
			ids[i] = g.ID
		}
		err := s.store.InboundRead(r.Context(), systemOf(r), func(tx *state.InboundTx) error {
			var err error
			members, err = tx.Members(r.Context(), ids)
			return err
		})
		if err != nil {
			return nil, nil, err
		}
	}
	maps, res := make([]map[string]any, len(page)), make([]elimity.Resource, len(page))
	for i, g := range page {
		res[i] = groupResource(g, members[g.ID], with)
		maps[i] = filterable(res[i])
	}
	return maps, res, nil
}

func (s *Server) scanGroups(r *http.Request, v *scimfilter.Validator, q state.InboundQuery) (elimity.Page, error) {
	with := wantsMembers(r)
	return fallbackPage(r, s, v, q,
		func(after state.InboundCursor) ([]state.InboundGroup, error) {
			return s.store.ScanInboundGroups(r.Context(), systemOf(r), after, scanLimit)
		},
		func(g state.InboundGroup) state.InboundCursor {
			return state.InboundCursor{Created: g.Created, ID: g.ID}
		},
		func(gs []state.InboundGroup) ([]map[string]any, []elimity.Resource, error) {
			// The filter may name members: read them for it, show them only when wanted.
			maps, res, err := s.groupViews(r, gs, true)
			if err == nil && !with {
				for i := range res {
					delete(res[i].Attributes, "members")
				}
			}
			return maps, res, err
		})
}

// Replace is PUT: the group becomes exactly the body, members included (Okta sets a
// group's membership this way).
func (h *groups) Replace(r *http.Request, id string, attrs elimity.ResourceAttributes) (elimity.Resource, error) {
	in, ids, _, err := groupFromAttrs(id, attrs)
	if err != nil {
		return elimity.Resource{}, err
	}
	err = h.s.store.InboundWrite(r.Context(), systemOf(r), func(tx *state.InboundTx) error {
		if _, err := tx.Group(r.Context(), id, true); err != nil {
			return err
		}
		if _, err := tx.UpdateGroup(r.Context(), in); err != nil {
			return err
		}
		return tx.SetMembers(r.Context(), id, ids)
	})
	if err != nil {
		return elimity.Resource{}, h.s.scimError(r, err)
	}
	return h.read(r, id)
}

func (h *groups) Delete(r *http.Request, id string) error {
	err := h.s.store.InboundWrite(r.Context(), systemOf(r), func(tx *state.InboundTx) error {
		return tx.DeleteGroup(r.Context(), id)
	})
	return h.s.scimError(r, err)
}

// Patch applies the operations in one transaction under the group's row lock: all or none.
// It answers 204 (RFC 7644 §3.5.2 allows it), so a member change costs no member listing.
func (h *groups) Patch(r *http.Request, id string, ops []elimity.PatchOperation) (elimity.Resource, error) {
	err := h.s.store.InboundWrite(r.Context(), systemOf(r), func(tx *state.InboundTx) error {
		g, err := tx.Group(r.Context(), id, true)
		if err != nil {
			return err
		}
		own := attrsOf(g.Attrs)
		changed := false
		for _, op := range ops {
			c, err := patchGroup(r.Context(), tx, id, own, op)
			if err != nil {
				return err
			}
			changed = changed || c
		}
		if !changed {
			return nil
		}
		in, _, _, err := groupFromAttrs(id, own)
		if err != nil {
			return err
		}
		_, err = tx.UpdateGroup(r.Context(), in)
		return err
	})
	if err != nil {
		return elimity.Resource{}, h.s.scimError(r, err)
	}
	return elimity.Resource{}, nil
}

// patchGroup applies one operation: member operations go to the members table, anything
// else edits the group's own attributes (changed reports that).
func patchGroup(ctx context.Context, tx *state.InboundTx, id string, own map[string]any, op elimity.PatchOperation) (changed bool, err error) {
	if op.Path == nil {
		m, ok := op.Value.(map[string]any)
		if !ok {
			return false, scimerrors.ScimErrorInvalidValue
		}
		for k, v := range m {
			p, err := filter.ParsePath([]byte(k))
			if err != nil {
				return false, scimerrors.ScimErrorInvalidPath
			}
			c, err := patchGroup(ctx, tx, id, own, elimity.PatchOperation{Op: op.Op, Path: &p, Value: v})
			if err != nil {
				return false, err
			}
			changed = changed || c
		}
		return changed, nil
	}
	if !strings.EqualFold(op.Path.AttributePath.AttributeName, "members") || op.Path.AttributePath.URI() != "" {
		return true, applyOp(own, op)
	}
	return false, patchMembers(ctx, tx, id, op)
}

// patchMembers is a PATCH on members: add, replace, or remove (all, the listed values, or
// those a value filter selects, as in Okta's `members[value eq "…"]`).
func patchMembers(ctx context.Context, tx *state.InboundTx, id string, op elimity.PatchOperation) error {
	if op.Path.SubAttributeName() != "" {
		return scimerrors.ScimError{ScimType: scimerrors.ScimTypeInvalidPath, Status: http.StatusBadRequest,
			Detail: "a member's sub-attributes cannot be written; add or remove the member"}
	}
	var ids []string
	var err error
	if expr := op.Path.ValueExpression; expr != nil {
		unescape(expr)
		if ids = filterValues(expr); ids == nil {
			return scimerrors.ScimError{ScimType: scimerrors.ScimTypeInvalidFilter, Status: http.StatusBadRequest,
				Detail: `a members filter selects by value: members[value eq "<user id>"] (or several joined by or)`}
		}
	} else if ids, err = memberValues(op.Value); err != nil {
		return err
	}
	switch op.Op {
	case elimity.PatchOperationAdd:
		return tx.AddMembers(ctx, id, ids)
	case elimity.PatchOperationReplace:
		return tx.SetMembers(ctx, id, ids)
	}
	if op.Path.ValueExpression == nil && op.Value == nil {
		return tx.RemoveAllMembers(ctx, id)
	}
	// Entra ID removes with a value list and no filter; removing an absent member is done.
	_, err = tx.RemoveMembers(ctx, id, ids)
	return err
}

// filterValues is the ids a members filter of `value eq` terms joined by or selects, or nil.
func filterValues(e filter.Expression) []string {
	switch e := e.(type) {
	case *filter.AttributeExpression:
		s, ok := e.CompareValue.(string)
		if e.Operator != filter.EQ || !strings.EqualFold(e.AttributePath.AttributeName, "value") || !ok {
			return nil
		}
		return []string{s}
	case *filter.LogicalExpression:
		if e.Operator != filter.OR {
			return nil
		}
		l, r := filterValues(e.Left), filterValues(e.Right)
		if l == nil || r == nil {
			return nil
		}
		return append(l, r...)
	}
	return nil
}
