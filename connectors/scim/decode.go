package scim

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/groupsync/groupsync/connectors"
	"github.com/groupsync/groupsync/connectors/apiclient"
	"github.com/groupsync/groupsync/connectors/scim/scimclient"
	"github.com/groupsync/groupsync/connectors/scim/scimwire"
)

// The decoders take a whole response body and return model types. They are plain functions
// (no client, no context) so the fuzz targets drive them directly.

// SCIM schema URNs.
const (
	schemaGroup = scimwire.SchemaGroup
	schemaUser  = "urn:ietf:params:scim:schemas:core:2.0:User"
)

// spcJSON is the part of /ServiceProviderConfig the connector reads (RFC 7643 §5).
type spcJSON struct {
	Patch  *supported `json:"patch"`
	Filter *struct {
		Supported  flexBool `json:"supported"`
		MaxResults flexInt  `json:"maxResults"`
	} `json:"filter"`
	ETag *supported `json:"etag"`
}

type supported struct {
	Supported flexBool `json:"supported"`
}

// flexBool is a boolean that also takes "true"/"false" strings: some providers render
// every attribute as a string (elimity's SetAllowStringValues, Entra ID's apps).
type flexBool bool

func (b *flexBool) UnmarshalJSON(data []byte) error {
	var v any
	if err := json.Unmarshal(data, &v); err != nil {
		return err
	}
	switch t := v.(type) {
	case bool:
		*b = flexBool(t)
	case string:
		p, err := strconv.ParseBool(strings.TrimSpace(t))
		if err != nil {
			return fmt.Errorf("boolean %q: %w", t, err)
		}
		*b = flexBool(p)
	case nil:
		*b = false
	default:
		return fmt.Errorf("boolean expected, got %.20s", data)
	}
	return nil
}

// flexInt is an integer that also takes a numeric string, for the same providers.
type flexInt int

func (n *flexInt) UnmarshalJSON(data []byte) error {
	s := strings.Trim(strings.TrimSpace(string(data)), `"`)
	if s == "" || s == "null" {
		*n = 0
		return nil
	}
	v, err := strconv.Atoi(s)
	if err != nil {
		return fmt.Errorf("integer expected, got %.20s", data)
	}
	*n = flexInt(v)
	return nil
}

// decodeSPC reads /ServiceProviderConfig into the features it announces. Absent sections
// mean unsupported: RFC 7643 §5 makes each REQUIRED, so a provider that leaves one out
// does not offer it.
func decodeSPC(body []byte) (features, error) {
	var s spcJSON
	if err := apiclient.StrictDecode(body, &s); err != nil {
		return features{}, fmt.Errorf("service provider config: %w", err)
	}
	var f features
	f.patch = s.Patch != nil && bool(s.Patch.Supported)
	if s.Filter != nil {
		f.filter = bool(s.Filter.Supported)
		f.maxResults = max(0, int(s.Filter.MaxResults))
	}
	f.etag = s.ETag != nil && bool(s.ETag.Supported)
	return f, nil
}

// resourceTypeJSON is one /ResourceTypes entry (RFC 7643 §6).
type resourceTypeJSON struct {
	ID       string `json:"id"`
	Name     string `json:"name"`
	Endpoint string `json:"endpoint"`
	Schema   string `json:"schema"`
}

// listOf reads the items of a discovery answer: a ListResponse (RFC 7644 §4), or a bare
// JSON array, which several providers send for /ResourceTypes and /Schemas.
func listOf(body []byte) ([]json.RawMessage, error) {
	trimmed := bytes.TrimSpace(body)
	if len(trimmed) > 0 && trimmed[0] == '[' {
		var items []json.RawMessage
		err := apiclient.StrictDecode(trimmed, &items)
		return items, err
	}
	var env struct {
		Resources []json.RawMessage `json:"Resources"`
	}
	err := apiclient.StrictDecode(body, &env)
	return env.Resources, err
}

// decodeResourceTypes finds the endpoints of the User and Group resource types, by their
// core schema URN first and their name second. An empty endpoint means not announced.
func decodeResourceTypes(body []byte) (users, groups string, err error) {
	items, err := listOf(body)
	if err != nil {
		return "", "", fmt.Errorf("resource types: %w", err)
	}
	for i, raw := range items {
		var rt resourceTypeJSON
		if err := apiclient.StrictDecode(raw, &rt); err != nil {
			return "", "", fmt.Errorf("resource type %d: %w", i, err)
		}
		ep := strings.TrimSpace(rt.Endpoint)
		if ep == "" || strings.ContainsAny(ep, "?#") || strings.Contains(ep, "://") {
			continue
		}
		ep = "/" + strings.Trim(ep, "/")
		switch {
		case rt.Schema == schemaUser, rt.Schema == "" && strings.EqualFold(rt.Name, "User"):
			users = ep
		case rt.Schema == schemaGroup, rt.Schema == "" && strings.EqualFold(rt.Name, "Group"):
			groups = ep
		}
	}
	return users, groups, nil
}

// schemaAttrJSON is one attribute of a /Schemas entry (RFC 7643 §7).
type schemaAttrJSON struct {
	Name       string `json:"name"`
	Mutability string `json:"mutability"`
}

// decodeSchemas reports whether the Group schema lets members be written. found is false
// when the Group schema, or its members attribute, is not described: the RFC default
// (readWrite) then applies.
func decodeSchemas(body []byte) (membersWritable, found bool, err error) {
	items, err := listOf(body)
	if err != nil {
		return false, false, fmt.Errorf("schemas: %w", err)
	}
	for i, raw := range items {
		var s struct {
			ID         string           `json:"id"`
			Attributes []schemaAttrJSON `json:"attributes"`
		}
		if err := apiclient.StrictDecode(raw, &s); err != nil {
			return false, false, fmt.Errorf("schema %d: %w", i, err)
		}
		if s.ID != schemaGroup {
			continue
		}
		for _, a := range s.Attributes {
			if strings.EqualFold(a.Name, "members") {
				m := strings.ToLower(a.Mutability)
				return m != "readonly" && m != "immutable", true, nil
			}
		}
	}
	return true, false, nil
}

// listJSON is a ListResponse (RFC 7644 §3.4.2). totalResults is REQUIRED; a page without it
// cannot say whether the listing is whole, so it is refused.
type listJSON struct {
	TotalResults *flexInt          `json:"totalResults"`
	StartIndex   flexInt           `json:"startIndex"`
	Resources    []json.RawMessage `json:"Resources"`
}

// decodeList reads a ListResponse envelope; the resources are decoded by the caller.
func decodeList(body []byte) (listJSON, error) {
	var l listJSON
	if err := apiclient.StrictDecode(body, &l); err != nil {
		return listJSON{}, err
	}
	if l.TotalResults == nil {
		return listJSON{}, errors.New("list response: totalResults missing")
	}
	if *l.TotalResults < 0 {
		return listJSON{}, fmt.Errorf("list response: totalResults %d is negative", *l.TotalResults)
	}
	return l, nil
}

// memberJSON is one value of a group's members (RFC 7643 §4.2).
type memberJSON struct {
	Value   apiclient.ID `json:"value"`
	Type    string       `json:"type"`
	Display string       `json:"display"`
}

type metaJSON struct {
	Created      string `json:"created"`
	LastModified string `json:"lastModified"`
	Version      string `json:"version"`
}

// groupJSON is the part of a SCIM Group the connector reads.
type groupJSON struct {
	ID          apiclient.ID `json:"id"`
	DisplayName *string      `json:"displayName"`
	Members     []memberJSON `json:"members"`
	Meta        metaJSON     `json:"meta"`
}

// groupHashExclude are left out of a group's hash: meta moves (lastModified, version) with
// every membership change, which the membership rows already record. members are not in
// Raw at all: they are mirrored as rows, and listings leave them out (excludedAttributes).
var groupHashExclude = []string{"meta"}

// decodeGroup reads one SCIM Group: the group (Raw without members), its members, and its
// version (meta.version, the ETag) if it has one.
func decodeGroup(body []byte) (connectors.Group, []connectors.Member, string, error) {
	var raw map[string]json.RawMessage
	if err := apiclient.StrictDecode(body, &raw); err != nil {
		return connectors.Group{}, nil, "", err
	}
	if raw == nil {
		return connectors.Group{}, nil, "", errors.New("group: null")
	}
	var g groupJSON
	if err := apiclient.StrictDecode(body, &g); err != nil {
		return connectors.Group{}, nil, "", fmt.Errorf("group: %w", err)
	}
	if g.ID == "" {
		return connectors.Group{}, nil, "", errors.New("group: id missing")
	}
	if g.DisplayName == nil {
		return connectors.Group{}, nil, "", fmt.Errorf("group %s: displayName missing", g.ID)
	}
	delete(raw, "members")
	// Re-encoding a map of raw values keeps every value byte-exact.
	trimmed, err := json.Marshal(raw)
	if err != nil {
		return connectors.Group{}, nil, "", fmt.Errorf("group %s: %w", g.ID, err)
	}
	hash, err := connectors.ContentHash(trimmed, groupHashExclude...)
	if err != nil {
		return connectors.Group{}, nil, "", fmt.Errorf("group %s: %w", g.ID, err)
	}
	group := connectors.Group{ID: string(g.ID), Name: *g.DisplayName, State: "active",
		CreatedAt: parseTime(g.Meta.Created), ModifiedAt: parseTime(g.Meta.LastModified), Raw: trimmed, Hash: hash}
	members, err := groupMembers(group.ID, g.Members)
	if err != nil {
		return connectors.Group{}, nil, "", err
	}
	return group, members, g.Meta.Version, nil
}

// groupMembers maps members to the model, once per (type, value): a repeated value adds
// nothing to a membership keyed by account.
func groupMembers(groupID string, ms []memberJSON) ([]connectors.Member, error) {
	out := make([]connectors.Member, 0, len(ms))
	seen := make(map[string]bool, len(ms))
	for i, m := range ms {
		if m.Value == "" {
			return nil, fmt.Errorf("group %s: member %d: value missing", groupID, i)
		}
		typ := connectors.MemberUser
		if strings.EqualFold(m.Type, "Group") {
			typ = connectors.MemberGroup
		}
		key := typ + "\x00" + string(m.Value)
		if seen[key] {
			continue
		}
		seen[key] = true
		out = append(out, connectors.Member{GroupID: groupID, AccountID: string(m.Value), Type: typ,
			Role: "member", DisplayName: m.Display})
	}
	return out, nil
}

// emailJSON is one value of a user's emails (RFC 7643 §4.1.2).
type emailJSON struct {
	Value   string   `json:"value"`
	Type    string   `json:"type"`
	Primary flexBool `json:"primary"`
}

// userJSON is the part of a SCIM User the connector reads.
type userJSON struct {
	ID          apiclient.ID `json:"id"`
	UserName    string       `json:"userName"`
	DisplayName string       `json:"displayName"`
	Name        *struct {
		Formatted  string `json:"formatted"`
		GivenName  string `json:"givenName"`
		FamilyName string `json:"familyName"`
	} `json:"name"`
	Emails []emailJSON `json:"emails"`
	Active *flexBool   `json:"active"`
}

// accountHashExclude: meta moves on every change of the user anywhere (a login, a group
// joined); groups is a read-only echo of memberships kept as rows.
var accountHashExclude = []string{"meta", "groups"}

// decodeUser reads one SCIM User as an account. The email is the primary email, else the
// first one, else the userName when it is an address (many providers use the email as
// userName and send no emails). active false is the state "inactive"; active absent is
// active (RFC 7643 leaves its default to the provider, and a provider that does not model
// it has no inactive users).
func decodeUser(raw []byte) (connectors.Account, error) {
	var u userJSON
	if err := apiclient.StrictDecode(raw, &u); err != nil {
		return connectors.Account{}, fmt.Errorf("user: %w", err)
	}
	if u.ID == "" {
		return connectors.Account{}, errors.New("user: id missing")
	}
	hash, err := connectors.ContentHash(raw, accountHashExclude...)
	if err != nil {
		return connectors.Account{}, fmt.Errorf("user %s: %w", u.ID, err)
	}
	state := "active"
	if u.Active != nil && !bool(*u.Active) {
		state = "inactive"
	}
	return connectors.Account{ID: string(u.ID), Email: connectors.NormalizeEmail(userEmail(u)),
		DisplayName: userDisplayName(u), State: state, Raw: bytes.Clone(raw), Hash: hash}, nil
}

func userEmail(u userJSON) string {
	for _, e := range u.Emails {
		if e.Primary && strings.TrimSpace(e.Value) != "" {
			return e.Value
		}
	}
	for _, e := range u.Emails {
		if strings.TrimSpace(e.Value) != "" {
			return e.Value
		}
	}
	if strings.Contains(u.UserName, "@") {
		return u.UserName
	}
	return ""
}

func userDisplayName(u userJSON) string {
	if s := strings.TrimSpace(u.DisplayName); s != "" {
		return s
	}
	if u.Name == nil {
		return ""
	}
	if s := strings.TrimSpace(u.Name.Formatted); s != "" {
		return s
	}
	return strings.TrimSpace(strings.TrimSpace(u.Name.GivenName) + " " + strings.TrimSpace(u.Name.FamilyName))
}

// emailRe finds addresses in an error detail ("userName alice@example.com already exists"),
// which must not reach errors or logs.
var emailRe = regexp.MustCompile(`[^\s"'<>(),;:@]+@[^\s"'<>(),;:@]+`)

// redact takes email addresses out of a provider's message.
func redact(s string) string { return emailRe.ReplaceAllString(s, "<email>") }

// decodeError reads a SCIM error body (scimclient.DecodeError) with email addresses taken
// out of its detail: providers quote the userName they refuse, and it must reach neither
// an error nor a log.
func decodeError(status int, header http.Header, body []byte) apiclient.ErrorInfo {
	info := scimclient.DecodeError(status, header, body)
	info.Message = redact(info.Message)
	return info
}

func isTruncated(err error) bool {
	return errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, io.EOF)
}

// parseTime reads meta times (RFC 3339); a malformed one is the zero time rather than a
// failed record: the times are informative, the group is not.
func parseTime(s string) time.Time {
	t, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		return time.Time{}
	}
	return t.UTC()
}
