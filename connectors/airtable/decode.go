package airtable

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/groupsync/groupsync/connectors"
	"github.com/groupsync/groupsync/connectors/apiclient"
	"github.com/groupsync/groupsync/connectors/scim/scimclient"
)

// The decoders below take a whole response body and return model types. They are plain
// functions (no client, no context) so the fuzz targets can drive them directly.

// enterpriseJSON is the part of GET /v0/meta/enterpriseAccounts/{id} the connector reads.
type enterpriseJSON struct {
	ID       apiclient.ID   `json:"id"`
	GroupIDs []apiclient.ID `json:"groupIds"`
	UserIDs  []apiclient.ID `json:"userIds"`
}

// decodeEnterprise reads the enterprise account. groupIds and userIds are required: an
// answer without them cannot be told apart from an enterprise with no groups, and a
// listing built on it would tombstone every group in the mirror.
func decodeEnterprise(body []byte) (enterpriseJSON, error) {
	var raw map[string]json.RawMessage
	if err := apiclient.StrictDecode(body, &raw); err != nil {
		return enterpriseJSON{}, err
	}
	for _, k := range []string{"groupIds", "userIds"} {
		if v, ok := raw[k]; !ok || bytes.Equal(bytes.TrimSpace(v), []byte("null")) {
			return enterpriseJSON{}, fmt.Errorf("enterprise account: %s missing", k)
		}
	}
	var e enterpriseJSON
	if err := apiclient.StrictDecode(body, &e); err != nil {
		return enterpriseJSON{}, fmt.Errorf("enterprise account: %w", err)
	}
	return e, nil
}

// memberJSON is one entry of a meta group's members.
type memberJSON struct {
	UserID    apiclient.ID `json:"userId"`
	Email     string       `json:"email"`
	FirstName *string      `json:"firstName"`
	LastName  *string      `json:"lastName"`
	Role      string       `json:"role"`
}

// groupFields are the meta group's own fields (members are decoded separately).
type groupFields struct {
	ID          apiclient.ID `json:"id"`
	Name        *string      `json:"name"`
	CreatedTime string       `json:"createdTime"`
	UpdatedTime string       `json:"updatedTime"`
}

// groupRawExclude are the top-level keys left out of Group.Raw. Members are mirrored as
// membership rows; keeping them in the group's raw payload too would store every
// membership twice and rewrite the group row on every membership change. Collaborations
// are only sent on request, and the connector never asks for them.
var groupRawExclude = []string{"members", "collaborations"}

// groupHashExclude are left out of the group hash on top of groupRawExclude: updatedTime
// moves whenever membership changes, which the membership rows already record.
var groupHashExclude = []string{"updatedTime"}

// decodeMetaGroup reads GET /v0/meta/groups/{id}: the group and its members, inline.
func decodeMetaGroup(body []byte) (connectors.Group, []connectors.Member, error) {
	var raw map[string]json.RawMessage
	if err := apiclient.StrictDecode(body, &raw); err != nil {
		return connectors.Group{}, nil, err
	}
	if raw == nil {
		return connectors.Group{}, nil, errors.New("group: null")
	}
	// Fields are read from the map's raw values, so the body is scanned once.
	var f groupFields
	for key, dst := range map[string]any{"id": &f.ID, "name": &f.Name, "createdTime": &f.CreatedTime, "updatedTime": &f.UpdatedTime} {
		if v, ok := raw[key]; ok {
			if err := json.Unmarshal(v, dst); err != nil {
				return connectors.Group{}, nil, fmt.Errorf("group: %s: %w", key, err)
			}
		}
	}
	if f.ID == "" {
		return connectors.Group{}, nil, errors.New("group: id missing")
	}
	if f.Name == nil {
		return connectors.Group{}, nil, fmt.Errorf("group %s: name missing", f.ID)
	}
	membersRaw, ok := raw["members"]
	if !ok {
		return connectors.Group{}, nil, fmt.Errorf("group %s: members missing", f.ID)
	}
	var ms []memberJSON
	if err := apiclient.StrictDecode(membersRaw, &ms); err != nil {
		return connectors.Group{}, nil, fmt.Errorf("group %s: members: %w", f.ID, err)
	}
	for _, k := range groupRawExclude {
		delete(raw, k)
	}
	// Re-encoding a map of raw values keeps every value byte-exact (only the key order
	// becomes canonical).
	trimmed, err := json.Marshal(raw)
	if err != nil {
		return connectors.Group{}, nil, fmt.Errorf("group %s: %w", f.ID, err)
	}
	hash, err := connectors.ContentHash(trimmed, groupHashExclude...)
	if err != nil {
		return connectors.Group{}, nil, fmt.Errorf("group %s: %w", f.ID, err)
	}
	g := connectors.Group{
		ID:         string(f.ID),
		Name:       *f.Name,
		State:      "active",
		CreatedAt:  parseTime(f.CreatedTime),
		ModifiedAt: parseTime(f.UpdatedTime),
		Raw:        trimmed,
		Hash:       hash,
	}
	members := make([]connectors.Member, 0, len(ms))
	seen := make(map[apiclient.ID]bool, len(ms))
	for i, m := range ms {
		if m.UserID == "" {
			return connectors.Group{}, nil, fmt.Errorf("group %s: member %d: userId missing", f.ID, i)
		}
		// A membership is keyed by (group, account): a repeated entry adds nothing.
		if seen[m.UserID] {
			continue
		}
		seen[m.UserID] = true
		members = append(members, connectors.Member{
			GroupID:     g.ID,
			AccountID:   string(m.UserID),
			Type:        connectors.MemberUser,
			Role:        strings.ToLower(m.Role),
			Email:       connectors.NormalizeEmail(m.Email),
			DisplayName: joinName(m.FirstName, m.LastName),
		})
	}
	return g, members, nil
}

// userJSON is the part of a meta user the connector reads.
type userJSON struct {
	ID    apiclient.ID `json:"id"`
	Email string       `json:"email"`
	Name  *string      `json:"name"`
	State string       `json:"state"`
}

// accountHashExclude are fields that change without the account changing for the mirror:
// lastActivityTime moves on every login, groups mirrors memberships kept as rows, and the
// include[] extras are never requested.
var accountHashExclude = []string{"lastActivityTime", "groups", "collaborations", "aggregated", "descendants"}

// decodeUsers reads GET /v0/meta/enterpriseAccounts/{id}/users: {"users": [...]}.
func decodeUsers(body []byte) ([]connectors.Account, error) {
	var env struct {
		Users *[]json.RawMessage `json:"users"`
	}
	if err := apiclient.StrictDecode(body, &env); err != nil {
		return nil, err
	}
	if env.Users == nil {
		return nil, errors.New("users: missing")
	}
	out := make([]connectors.Account, 0, len(*env.Users))
	for i, raw := range *env.Users {
		var u userJSON
		if err := apiclient.StrictDecode(raw, &u); err != nil {
			return nil, fmt.Errorf("user %d: %w", i, err)
		}
		if u.ID == "" {
			return nil, fmt.Errorf("user %d: id missing", i)
		}
		hash, err := connectors.ContentHash(raw, accountHashExclude...)
		if err != nil {
			return nil, fmt.Errorf("user %s: %w", u.ID, err)
		}
		name := ""
		if u.Name != nil {
			name = *u.Name
		}
		out = append(out, connectors.Account{
			ID:          string(u.ID),
			Email:       connectors.NormalizeEmail(u.Email),
			DisplayName: name,
			State:       u.State,
			Raw:         bytes.Clone(raw),
			Hash:        hash,
		})
	}
	return out, nil
}

// scimGroupJSON is a SCIM group as Airtable renders it.
type scimGroupJSON struct {
	ID          apiclient.ID `json:"id"`
	DisplayName *string      `json:"displayName"`
	Members     []struct {
		Value apiclient.ID `json:"value"`
	} `json:"members"`
}

// decodeSCIMGroup reads one SCIM group (create, get, patch responses).
func decodeSCIMGroup(body []byte) (scimGroupJSON, error) {
	var g scimGroupJSON
	if err := apiclient.StrictDecode(body, &g); err != nil {
		return scimGroupJSON{}, err
	}
	if g.ID == "" {
		return scimGroupJSON{}, errors.New("scim group: id missing")
	}
	return g, nil
}

// decodeSCIMGroupList reads a SCIM ListResponse of groups.
func decodeSCIMGroupList(body []byte) ([]scimGroupJSON, error) {
	var env struct {
		Resources []json.RawMessage `json:"Resources"`
	}
	if err := apiclient.StrictDecode(body, &env); err != nil {
		return nil, err
	}
	out := make([]scimGroupJSON, 0, len(env.Resources))
	for i, r := range env.Resources {
		g, err := decodeSCIMGroup(r)
		if err != nil {
			return nil, fmt.Errorf("resource %d: %w", i, err)
		}
		out = append(out, g)
	}
	return out, nil
}

// decodeError reads both of Airtable's error shapes:
//   - the Web API's {"error": {"type": "...", "message": "..."}}, also seen as a bare
//     string ({"error": "NOT_FOUND"}) and, on some 429s, as {"errors": [{"error", "message"}]};
//   - SCIM's {"schemas": [...Error], "detail": "...", "status": 400 | "400", "scimType": "..."},
//     read by scimclient.DecodeError as for every SCIM writer (the write client branches
//     on its scimType).
//
// SCIM answers an unknown group id with 400 "invalid group ID"; that is a missing object,
// so it is classed ErrNotFound. Headers are never read into the result.
func decodeError(status int, _ http.Header, body []byte) apiclient.ErrorInfo {
	var env struct {
		Error  json.RawMessage `json:"error"`
		Errors []struct {
			Error   string `json:"error"`
			Type    string `json:"type"`
			Message string `json:"message"`
		} `json:"errors"`
		Message  string `json:"message"`
		Detail   string `json:"detail"`
		ScimType string `json:"scimType"`
	}
	if err := json.Unmarshal(body, &env); err != nil {
		return apiclient.ErrorInfo{Message: apiclient.Snippet(body)}
	}
	var info apiclient.ErrorInfo
	switch e := bytes.TrimSpace(env.Error); {
	case len(e) > 0 && e[0] == '"':
		_ = json.Unmarshal(e, &info.Type)
		info.Message = env.Message
	case len(e) > 0 && e[0] == '{':
		var obj struct {
			Type    string `json:"type"`
			Message string `json:"message"`
		}
		_ = json.Unmarshal(e, &obj)
		info.Type, info.Message = obj.Type, obj.Message
	case len(env.Errors) > 0:
		info.Type, info.Message = env.Errors[0].Error, env.Errors[0].Message
		if info.Type == "" {
			info.Type = env.Errors[0].Type
		}
	case env.Detail != "" || env.ScimType != "":
		info = scimclient.DecodeError(status, nil, body)
		if status == 400 && strings.Contains(strings.ToLower(env.Detail), "invalid group id") {
			info.Class = connectors.ErrNotFound
		}
	default:
		info.Message = env.Message
	}
	return info
}

// parseTime reads Airtable's ISO 8601 times. A malformed time (the documented example
// itself has "2022-09-02T10:10:35:000Z") gives the zero time rather than failing the
// record: the times are informative, the group is not.
func parseTime(s string) time.Time {
	t, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		return time.Time{}
	}
	return t.UTC()
}

func joinName(first, last *string) string {
	var parts []string
	for _, p := range []*string{first, last} {
		if p != nil && strings.TrimSpace(*p) != "" {
			parts = append(parts, strings.TrimSpace(*p))
		}
	}
	return strings.Join(parts, " ")
}
