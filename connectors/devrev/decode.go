package devrev

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/groupsync/groupsync/connectors"
	"github.com/groupsync/groupsync/connectors/apiclient"
)

// The decoders below are pure (bytes in, records out) so they can be fuzzed. A record that
// lacks its id or carries a field of the wrong JSON type fails the whole page: a listing
// that silently dropped records would let the mirror tombstone them.

// wireGroup is the part of DevRev's `group` the connector reads; Raw keeps the rest
// (sync_metadata, owner, member_type, created_by, ...).
type wireGroup struct {
	ID          apiclient.ID `json:"id"`
	Name        string       `json:"name"`
	Description string       `json:"description"`
	IsDefault   bool         `json:"is_default"`
	// Type and GroupType are not in the spec's `group` schema (only groups.create takes
	// `type` and groups.list filters on `group_type`); a tenant that returns either is
	// believed, otherwise ListGroups learns dynamic groups from a filtered listing.
	Type         string `json:"type"`
	GroupType    string `json:"group_type"`
	CreatedDate  string `json:"created_date"`
	ModifiedDate string `json:"modified_date"`
}

// groupRecord is a decoded group and whether the record itself said static or dynamic.
type groupRecord struct {
	connectors.Group
	typeKnown bool
}

type groupsPage struct {
	Groups     []json.RawMessage `json:"groups"`
	NextCursor *string           `json:"next_cursor"`
}

type groupEnvelope struct {
	Group json.RawMessage `json:"group"`
}

type membersPage struct {
	Members    []wireMember `json:"members"`
	NextCursor *string      `json:"next_cursor"`
}

type wireMember struct {
	Member *struct {
		Type        string       `json:"type"`
		ID          apiclient.ID `json:"id"`
		Email       string       `json:"email"`
		DisplayName string       `json:"display_name"`
		FullName    string       `json:"full_name"`
		Name        string       `json:"name"`
	} `json:"member"`
}

type devUsersPage struct {
	DevUsers   []json.RawMessage `json:"dev_users"`
	NextCursor *string           `json:"next_cursor"`
}

type wireUser struct {
	ID          apiclient.ID `json:"id"`
	Email       string       `json:"email"`
	DisplayName string       `json:"display_name"`
	FullName    string       `json:"full_name"`
	State       string       `json:"state"`
}

func unmarshalStrict(data []byte, out any) error {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	if err := dec.Decode(out); err != nil {
		return err
	}
	if dec.More() {
		return errors.New("trailing data after JSON value")
	}
	return nil
}

// decodeGroupsPage decodes a groups.list response.
func decodeGroupsPage(data []byte) ([]groupRecord, *string, error) {
	var p groupsPage
	if err := unmarshalStrict(data, &p); err != nil {
		return nil, nil, fmt.Errorf("decode groups page: %w", err)
	}
	if p.Groups == nil {
		return nil, nil, errors.New("decode groups page: no groups array")
	}
	out := make([]groupRecord, 0, len(p.Groups))
	for i, raw := range p.Groups {
		g, err := decodeGroup(raw)
		if err != nil {
			return nil, nil, fmt.Errorf("decode groups page: group %d: %w", i, err)
		}
		out = append(out, g)
	}
	return out, p.NextCursor, nil
}

// decodeGroupEnvelope decodes a groups.get/create/update response ({"group": {...}}).
func decodeGroupEnvelope(data []byte) (groupRecord, error) {
	var env groupEnvelope
	if err := unmarshalStrict(data, &env); err != nil {
		return groupRecord{}, fmt.Errorf("decode group: %w", err)
	}
	if len(env.Group) == 0 || bytes.Equal(env.Group, []byte("null")) {
		return groupRecord{}, errors.New("decode group: no group object")
	}
	g, err := decodeGroup(env.Group)
	if err != nil {
		return groupRecord{}, fmt.Errorf("decode group: %w", err)
	}
	return g, nil
}

func decodeGroup(raw json.RawMessage) (groupRecord, error) {
	var w wireGroup
	if err := json.Unmarshal(raw, &w); err != nil {
		return groupRecord{}, err
	}
	if w.ID == "" {
		return groupRecord{}, errors.New("group has no id")
	}
	hash, err := connectors.ContentHash(raw)
	if err != nil {
		return groupRecord{}, err
	}
	typ := w.Type
	if typ == "" {
		typ = w.GroupType
	}
	return groupRecord{
		Group: connectors.Group{
			ID:                string(w.ID),
			Name:              w.Name,
			Description:       w.Description,
			State:             "active",
			MembershipManaged: typ == "dynamic",
			System:            w.IsDefault,
			CreatedAt:         parseTime(w.CreatedDate),
			ModifiedAt:        parseTime(w.ModifiedDate),
			Raw:               raw,
			Hash:              hash,
		},
		typeKnown: typ == "dynamic" || typ == "static",
	}, nil
}

// parseTime reads DevRev's RFC 3339 timestamps; an unreadable one is left zero rather than
// failing the page, since the times only order changes and never identify a record.
func parseTime(s string) time.Time {
	if s == "" {
		return time.Time{}
	}
	t, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		return time.Time{}
	}
	return t.UTC()
}

// decodeMembersPage decodes a groups.members.list response for group groupID.
func decodeMembersPage(groupID string, data []byte) ([]connectors.Member, *string, error) {
	var p membersPage
	if err := unmarshalStrict(data, &p); err != nil {
		return nil, nil, fmt.Errorf("decode members page: %w", err)
	}
	if p.Members == nil {
		return nil, nil, errors.New("decode members page: no members array")
	}
	out := make([]connectors.Member, 0, len(p.Members))
	for i, m := range p.Members {
		if m.Member == nil || m.Member.ID == "" || m.Member.Type == "" {
			return nil, nil, fmt.Errorf("decode members page: member %d has no member object with id and type", i)
		}
		mem := connectors.Member{
			GroupID:     groupID,
			AccountID:   string(m.Member.ID),
			Role:        "member",
			Email:       connectors.NormalizeEmail(m.Member.Email),
			DisplayName: firstNonEmpty(m.Member.FullName, m.Member.DisplayName, m.Member.Name),
		}
		switch m.Member.Type {
		case "dev_user":
			mem.Type = connectors.MemberUser
		case "group":
			mem.Type = connectors.MemberGroup
		default:
			// rev_user, sys_user: users of another kind, kept apart so the engine can tell.
			mem.Type = connectors.MemberUser + ":" + m.Member.Type
		}
		out = append(out, mem)
	}
	return out, p.NextCursor, nil
}

// decodeDevUsersPage decodes a dev-users.list response.
func decodeDevUsersPage(data []byte) ([]connectors.Account, *string, error) {
	var p devUsersPage
	if err := unmarshalStrict(data, &p); err != nil {
		return nil, nil, fmt.Errorf("decode dev users page: %w", err)
	}
	if p.DevUsers == nil {
		return nil, nil, errors.New("decode dev users page: no dev_users array")
	}
	out := make([]connectors.Account, 0, len(p.DevUsers))
	for i, raw := range p.DevUsers {
		a, err := decodeUser(raw)
		if err != nil {
			return nil, nil, fmt.Errorf("decode dev users page: user %d: %w", i, err)
		}
		out = append(out, a)
	}
	return out, p.NextCursor, nil
}

// decodeUserEnvelope decodes a dev-users.get ({"dev_user"}) or rev-users.get ({"rev_user"})
// response; key names the envelope field.
func decodeUserEnvelope(key string, data []byte) (connectors.Account, error) {
	var env map[string]json.RawMessage
	if err := unmarshalStrict(data, &env); err != nil {
		return connectors.Account{}, fmt.Errorf("decode %s: %w", key, err)
	}
	raw, ok := env[key]
	if !ok || bytes.Equal(raw, []byte("null")) {
		return connectors.Account{}, fmt.Errorf("decode %s: no %s object", key, key)
	}
	a, err := decodeUser(raw)
	if err != nil {
		return connectors.Account{}, fmt.Errorf("decode %s: %w", key, err)
	}
	return a, nil
}

func decodeUser(raw json.RawMessage) (connectors.Account, error) {
	var w wireUser
	if err := json.Unmarshal(raw, &w); err != nil {
		return connectors.Account{}, err
	}
	if w.ID == "" {
		return connectors.Account{}, errors.New("user has no id")
	}
	hash, err := connectors.ContentHash(raw)
	if err != nil {
		return connectors.Account{}, err
	}
	return connectors.Account{
		ID:          string(w.ID),
		Email:       connectors.NormalizeEmail(w.Email),
		DisplayName: firstNonEmpty(w.FullName, w.DisplayName),
		State:       w.State,
		Raw:         raw,
		Hash:        hash,
	}, nil
}

func firstNonEmpty(ss ...string) string {
	for _, s := range ss {
		if s != "" {
			return s
		}
	}
	return ""
}
