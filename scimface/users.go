package scimface

import (
	"encoding/json"
	"net/http"
	"strings"

	elimity "github.com/elimity-com/scim"
	scimerrors "github.com/elimity-com/scim/errors"
	"github.com/elimity-com/scim/optional"

	"github.com/groupsync/groupsync/connectors"
	"github.com/groupsync/groupsync/state"
)

// users is the /Users endpoint's storage.
type users struct{ s *Server }

// userFromAttrs reads what the store keeps in columns from a user's attributes.
func userFromAttrs(id string, attrs map[string]any) (state.InboundUser, error) {
	name, _ := attrs["userName"].(string)
	if strings.TrimSpace(name) == "" {
		return state.InboundUser{}, badValue("userName is required")
	}
	raw, err := json.Marshal(attrs)
	if err != nil {
		return state.InboundUser{}, badValue("the user's attributes are not JSON")
	}
	u := state.InboundUser{ID: id, UserName: name, Active: true, Attrs: raw}
	u.ExternalID, _ = attrs["externalId"].(string)
	if a, ok := attrs["active"].(bool); ok {
		u.Active = a
	}
	u.DisplayName = userDisplayName(attrs)
	u.Email = connectors.NormalizeEmail(userEmail(attrs, name))
	return u, nil
}

// userEmail is the address a user is known by across systems: emails[primary], else the
// first email, else userName when it is an address (the scim connector reads the same).
func userEmail(attrs map[string]any, userName string) string {
	emails, _ := attrs["emails"].([]any)
	first := ""
	for _, e := range emails {
		m, _ := e.(map[string]any)
		v, _ := m["value"].(string)
		if strings.TrimSpace(v) == "" {
			continue
		}
		if p, _ := m["primary"].(bool); p {
			return v
		}
		if first == "" {
			first = v
		}
	}
	if first != "" {
		return first
	}
	if strings.Contains(userName, "@") {
		return userName
	}
	return ""
}

func userDisplayName(attrs map[string]any) string {
	if s, _ := attrs["displayName"].(string); strings.TrimSpace(s) != "" {
		return strings.TrimSpace(s)
	}
	n, _ := attrs["name"].(map[string]any)
	if s, _ := n["formatted"].(string); strings.TrimSpace(s) != "" {
		return strings.TrimSpace(s)
	}
	given, _ := n["givenName"].(string)
	family, _ := n["familyName"].(string)
	return strings.TrimSpace(strings.TrimSpace(given) + " " + strings.TrimSpace(family))
}

// attrsOf decodes stored attributes.
func attrsOf(raw []byte) map[string]any {
	m := map[string]any{}
	_ = json.Unmarshal(raw, &m)
	return m
}

func userResource(u state.InboundUser) elimity.Resource {
	attrs := attrsOf(u.Attrs)
	delete(attrs, "externalId")
	res := elimity.Resource{ID: u.ID, Attributes: attrs, Meta: resourceMeta(u.Version, u.Created, u.Modified)}
	if u.ExternalID != "" {
		res.ExternalID = optional.NewString(u.ExternalID)
	}
	return res
}

func (h *users) Create(r *http.Request, attrs elimity.ResourceAttributes) (elimity.Resource, error) {
	in, err := userFromAttrs("", attrs)
	if err != nil {
		return elimity.Resource{}, err
	}
	var out state.InboundUser
	err = h.s.store.InboundWrite(r.Context(), systemOf(r), func(tx *state.InboundTx) error {
		out, err = tx.CreateUser(r.Context(), in)
		return err
	})
	if err != nil {
		return elimity.Resource{}, h.s.scimError(r, err)
	}
	return userResource(out), nil
}

func (h *users) Get(r *http.Request, id string) (elimity.Resource, error) {
	var u state.InboundUser
	err := h.s.store.InboundRead(r.Context(), systemOf(r), func(tx *state.InboundTx) error {
		var err error
		u, err = tx.User(r.Context(), id, false)
		return err
	})
	if err != nil {
		return elimity.Resource{}, h.s.scimError(r, err)
	}
	return userResource(u), nil
}

func (h *users) GetAll(r *http.Request, p elimity.ListRequestParams) (elimity.Page, error) {
	return listResources(r, h.s, p, "users", h.s.store.ListInboundUsers,
		func(us []state.InboundUser) ([]elimity.Resource, error) {
			out := make([]elimity.Resource, len(us))
			for i, u := range us {
				out[i] = userResource(u)
			}
			return out, nil
		}, h.s.scanUsers)
}

func (h *users) Replace(r *http.Request, id string, attrs elimity.ResourceAttributes) (elimity.Resource, error) {
	in, err := userFromAttrs(id, attrs)
	if err != nil {
		return elimity.Resource{}, err
	}
	var out state.InboundUser
	err = h.s.store.InboundWrite(r.Context(), systemOf(r), func(tx *state.InboundTx) error {
		out, err = tx.UpdateUser(r.Context(), in)
		return err
	})
	if err != nil {
		return elimity.Resource{}, h.s.scimError(r, err)
	}
	return userResource(out), nil
}

func (h *users) Delete(r *http.Request, id string) error {
	err := h.s.store.InboundWrite(r.Context(), systemOf(r), func(tx *state.InboundTx) error {
		return tx.DeleteUser(r.Context(), id)
	})
	return h.s.scimError(r, err)
}

// Patch applies the operations to the stored attributes under a row lock, all or none.
func (h *users) Patch(r *http.Request, id string, ops []elimity.PatchOperation) (elimity.Resource, error) {
	var out state.InboundUser
	err := h.s.store.InboundWrite(r.Context(), systemOf(r), func(tx *state.InboundTx) error {
		cur, err := tx.User(r.Context(), id, true)
		if err != nil {
			return err
		}
		attrs := attrsOf(cur.Attrs)
		for _, op := range ops {
			if err := applyOp(attrs, op); err != nil {
				return err
			}
		}
		in, err := userFromAttrs(id, attrs)
		if err != nil {
			return err
		}
		out, err = tx.UpdateUser(r.Context(), in)
		return err
	})
	if err != nil {
		return elimity.Resource{}, h.s.scimError(r, err)
	}
	return userResource(out), nil
}

// badValue is a 400 invalidValue with detail.
func badValue(detail string) error {
	return scimerrors.ScimError{ScimType: scimerrors.ScimTypeInvalidValue, Detail: detail, Status: http.StatusBadRequest}
}
