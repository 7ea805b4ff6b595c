package socialcast

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"html"
	"net/http"
	"sort"
	"strings"
	"unicode"

	"github.com/groupsync/groupsync/connectors"
	"github.com/groupsync/groupsync/connectors/apiclient"
)

// The decoders below are pure functions of a response body, so they can be fuzzed alone.

// listElems returns the records of a list body, which Socialcast sends either as a bare
// array or under a root node ({"groups": […]}); both shapes are seen in its clients.
func listElems(body []byte, root string) ([]json.RawMessage, error) {
	b := bytes.TrimSpace(body)
	if len(b) == 0 {
		return nil, errors.New("empty body")
	}
	var elems []json.RawMessage
	switch b[0] {
	case '[':
		if err := json.Unmarshal(b, &elems); err != nil {
			return nil, err
		}
	case '{':
		var obj map[string]json.RawMessage
		if err := json.Unmarshal(b, &obj); err != nil {
			return nil, err
		}
		list, ok := obj[root]
		if !ok {
			return nil, fmt.Errorf("response has no %q list", root)
		}
		if err := json.Unmarshal(list, &elems); err != nil {
			return nil, fmt.Errorf("%q: %w", root, err)
		}
	default:
		// Let encoding/json name the problem (and report a cut body as such).
		var v any
		if err := json.Unmarshal(b, &v); err != nil {
			return nil, err
		}
		return nil, fmt.Errorf("response is a %T, want a list or an object", v)
	}
	return elems, nil
}

// record decodes one object's top-level fields, unwrapping a single-key root node
// ({"group": {…}}, as Socialcast answers show/create/update/archive). It returns the
// record's own bytes (what Raw keeps) and its fields, decoded once and shared by the field
// reads and the caller-relative key scan.
func record(raw json.RawMessage, key string) (json.RawMessage, map[string]json.RawMessage, error) {
	var obj map[string]json.RawMessage
	if err := json.Unmarshal(raw, &obj); err != nil {
		return nil, nil, err
	}
	if obj == nil {
		return nil, nil, errors.New("record is null")
	}
	if inner, ok := obj[key]; ok && len(obj) == 1 {
		raw = inner
		obj = nil
		if err := json.Unmarshal(raw, &obj); err != nil {
			return nil, nil, fmt.Errorf("%q: %w", key, err)
		}
		if obj == nil {
			return nil, nil, fmt.Errorf("%q is null", key)
		}
	}
	return raw, obj, nil
}

// fields decodes the listed top-level fields of obj into their destinations; absent keys
// leave them untouched.
func fields(obj map[string]json.RawMessage, dst map[string]any) error {
	for k, d := range dst {
		if v, ok := obj[k]; ok {
			if err := json.Unmarshal(v, d); err != nil {
				return fmt.Errorf("%s: %w", k, err)
			}
		}
	}
	return nil
}

// callerRelative lists the keys of obj that describe the caller rather than the record:
// fixed ones plus every can_* flag, so a flag Socialcast adds later is covered too.
func callerRelative(obj map[string]json.RawMessage, fixed ...string) []string {
	out := append([]string(nil), fixed...)
	for k := range obj {
		if strings.HasPrefix(k, "can_") {
			out = append(out, k)
		}
	}
	return out
}

// groupRecord holds the group fields the connector reads (decoded by fields()).
type groupRecord struct {
	ID          apiclient.ID
	Name        *string
	Description *string
	Private     *bool
	Permission  *string
	State       *string
	RuleManaged *bool
}

// groupFromRecord maps one group object. The name is `name`, never `html_name` (which is
// HTML-escaped for display).
func groupFromRecord(raw json.RawMessage) (connectors.Group, error) {
	raw, obj, err := record(raw, "group")
	if err != nil {
		return connectors.Group{}, fmt.Errorf("group: %w", err)
	}
	var rec groupRecord
	if err := fields(obj, map[string]any{"id": &rec.ID, "name": &rec.Name, "description": &rec.Description,
		"private": &rec.Private, "permission": &rec.Permission, "state": &rec.State, "rule_managed": &rec.RuleManaged}); err != nil {
		return connectors.Group{}, fmt.Errorf("group: %w", err)
	}
	if rec.ID == "" {
		return connectors.Group{}, errors.New("group without an id")
	}
	g := connectors.Group{ID: string(rec.ID), State: "active", Raw: raw}
	if rec.Name != nil {
		g.Name = *rec.Name
	}
	if rec.Description != nil {
		g.Description = *rec.Description
	}
	permission := ""
	if rec.Permission != nil {
		permission = *rec.Permission
	}
	switch {
	case rec.Private != nil && *rec.Private:
		g.Visibility = connectors.VisibilityPrivate
	case rec.Private != nil:
		g.Visibility = connectors.VisibilityPublic
	case permission == "public":
		g.Visibility = connectors.VisibilityPublic
	case permission == "private" || permission == "external_contributor":
		g.Visibility = connectors.VisibilityPrivate
	}
	if rec.State != nil && strings.EqualFold(*rec.State, "archived") {
		g.State = "archived"
	}
	g.MembershipManaged = rec.RuleManaged != nil && *rec.RuleManaged
	// member_count is null on a private group the caller has not joined and a number once
	// it has: it says who is asking, not what changed.
	fixed := []string{"role_key"}
	if g.Visibility != connectors.VisibilityPublic {
		fixed = append(fixed, "member_count")
	}
	if g.Hash, err = connectors.ContentHash(raw, callerRelative(obj, fixed...)...); err != nil {
		return connectors.Group{}, fmt.Errorf("group %s: %w", g.ID, err)
	}
	return g, nil
}

// decodeGroupsPage decodes GET /api/groups.json.
func decodeGroupsPage(body []byte) ([]connectors.Group, error) {
	elems, err := listElems(body, "groups")
	if err != nil {
		return nil, err
	}
	out := make([]connectors.Group, 0, len(elems))
	for i, e := range elems {
		g, err := groupFromRecord(e)
		if err != nil {
			return nil, fmt.Errorf("record %d: %w", i, err)
		}
		out = append(out, g)
	}
	return out, nil
}

// decodeGroup decodes a single-group answer ({"group": {…}}, or the bare object).
func decodeGroup(body []byte) (connectors.Group, error) {
	b := bytes.TrimSpace(body)
	if len(b) == 0 || b[0] != '{' {
		var v any
		if err := json.Unmarshal(b, &v); err != nil {
			return connectors.Group{}, err
		}
		return connectors.Group{}, errors.New("response is not a group object")
	}
	return groupFromRecord(b)
}

type membershipRecord struct {
	UserID *apiclient.ID `json:"user_id"`
	// User is the nested user some Socialcast versions send instead of user_id.
	User *struct {
		ID apiclient.ID `json:"id"`
	} `json:"user"`
	Role    *string `json:"role"`
	RoleKey *string `json:"role_key"`
}

// decodeMembershipsPage decodes GET /api/groups/{id}/memberships.json.
func decodeMembershipsPage(groupID string, body []byte) ([]connectors.Member, error) {
	// Memberships keep no raw JSON, so the page decodes in one pass straight into records
	// (a 100k-member group is 200 pages of them).
	var recs []membershipRecord
	b := bytes.TrimSpace(body)
	if len(b) > 0 && b[0] == '{' {
		var page struct {
			GroupMemberships *[]membershipRecord `json:"group_memberships"`
		}
		if err := json.Unmarshal(b, &page); err != nil {
			return nil, err
		}
		if page.GroupMemberships == nil {
			return nil, errors.New(`response has no "group_memberships" list`)
		}
		recs = *page.GroupMemberships
	} else if err := json.Unmarshal(b, &recs); err != nil {
		return nil, err
	}
	if recs == nil && !bytes.HasPrefix(b, []byte("{")) && !bytes.HasPrefix(b, []byte("[")) {
		return nil, errors.New("response is not a list")
	}
	out := make([]connectors.Member, 0, len(recs))
	for i, rec := range recs {
		m := connectors.Member{GroupID: groupID, Type: connectors.MemberUser, Role: "member"}
		switch {
		case rec.UserID != nil && *rec.UserID != "":
			m.AccountID = string(*rec.UserID)
		case rec.User != nil && rec.User.ID != "":
			m.AccountID = string(rec.User.ID)
		default:
			return nil, fmt.Errorf("membership %d has no user_id", i)
		}
		role := ""
		if rec.RoleKey != nil {
			role = strings.ToLower(*rec.RoleKey)
		}
		if role == "" && rec.Role != nil {
			role = strings.ToLower(*rec.Role)
		}
		switch role {
		case "admin":
			m.Role = "admin"
		case "external contributor", "external_contributor":
			m.Type = connectors.MemberUser + ":external_contributor"
		}
		out = append(out, m)
	}
	return out, nil
}

// userRecord holds the user fields the connector reads (decoded by fields()).
type userRecord struct {
	ID    apiclient.ID
	Name  *string
	Email *string
	// ContactInfo is kept raw: only its email matters, and a shape we do not expect there
	// should not fail the whole page.
	ContactInfo json.RawMessage
	Active      *bool
	Inactive    *bool
	Terminated  *bool
}

func accountFromRecord(raw json.RawMessage) (connectors.Account, error) {
	raw, obj, err := record(raw, "user")
	if err != nil {
		return connectors.Account{}, fmt.Errorf("user: %w", err)
	}
	var rec userRecord
	if err := fields(obj, map[string]any{"id": &rec.ID, "name": &rec.Name, "email": &rec.Email,
		"contact_info": &rec.ContactInfo, "active": &rec.Active, "inactive": &rec.Inactive, "terminated": &rec.Terminated}); err != nil {
		return connectors.Account{}, fmt.Errorf("user: %w", err)
	}
	if rec.ID == "" {
		return connectors.Account{}, errors.New("user without an id")
	}
	a := connectors.Account{ID: string(rec.ID), State: "active", Raw: raw}
	if rec.Name != nil {
		a.DisplayName = *rec.Name
	}
	var contact struct {
		Email *string `json:"email"`
	}
	if len(rec.ContactInfo) > 0 && json.Unmarshal(rec.ContactInfo, &contact) == nil && contact.Email != nil {
		a.Email = connectors.NormalizeEmail(*contact.Email)
	}
	if a.Email == "" && rec.Email != nil {
		a.Email = connectors.NormalizeEmail(*rec.Email)
	}
	switch {
	case rec.Terminated != nil && *rec.Terminated:
		a.State = "terminated"
	case (rec.Active != nil && !*rec.Active) || (rec.Inactive != nil && *rec.Inactive):
		a.State = "inactive" // Socialcastr's fixtures carry inactive, not active
	}
	if a.Hash, err = connectors.ContentHash(raw, callerRelative(obj, "following")...); err != nil {
		return connectors.Account{}, fmt.Errorf("user %s: %w", a.ID, err)
	}
	return a, nil
}

// decodeUsersPage decodes GET /api/users.json and GET /api/users/search.json.
func decodeUsersPage(body []byte) ([]connectors.Account, error) {
	elems, err := listElems(body, "users")
	if err != nil {
		return nil, err
	}
	out := make([]connectors.Account, 0, len(elems))
	for i, e := range elems {
		a, err := accountFromRecord(e)
		if err != nil {
			return nil, fmt.Errorf("record %d: %w", i, err)
		}
		out = append(out, a)
	}
	return out, nil
}

// decodeUser decodes GET /api/users/{id}.json ({"user": {…}}, or the bare object).
func decodeUser(body []byte) (connectors.Account, error) {
	b := bytes.TrimSpace(body)
	if len(b) == 0 || b[0] != '{' {
		var v any
		if err := json.Unmarshal(b, &v); err != nil {
			return connectors.Account{}, err
		}
		return connectors.Account{}, errors.New("response is not a user object")
	}
	return accountFromRecord(b)
}

// decodeError reads Socialcast's error answers, which follow Rails conventions: a JSON
// {"errors": …} (a list, or field → messages on a 422), {"error": "…"}, Rails' plain-text
// Basic-auth refusal, or an HTML error page (of which only the title is kept). It sees only
// the response, never the request, so credentials cannot leak through it.
func decodeError(status int, header http.Header, body []byte) apiclient.ErrorInfo {
	b := bytes.TrimSpace(body)
	if len(b) == 0 {
		return apiclient.ErrorInfo{}
	}
	if b[0] == '<' || strings.Contains(header.Get("Content-Type"), "html") {
		return apiclient.ErrorInfo{Message: htmlTitle(b)}
	}
	if b[0] == '{' || b[0] == '[' {
		var v any
		if json.Unmarshal(b, &v) == nil {
			if obj, ok := v.(map[string]any); ok {
				for _, key := range []string{"errors", "error", "message"} {
					if msgs := messages(obj[key]); len(msgs) > 0 {
						return apiclient.ErrorInfo{Message: strings.Join(msgs, "; ")}
					}
				}
				return apiclient.ErrorInfo{}
			}
			return apiclient.ErrorInfo{Message: strings.Join(messages(v), "; ")}
		}
	}
	// Plain text (Rails' "HTTP Basic: Access denied."): the first line, printable only.
	line, _, _ := strings.Cut(string(b), "\n")
	return apiclient.ErrorInfo{Message: printable(line, 200)}
}

// messages flattens a Rails errors value: a string, a list of them, or field → messages
// ({"name": ["can't be blank"]} → "name can't be blank"; "base" messages stand alone).
func messages(v any) []string {
	switch t := v.(type) {
	case string:
		if s := printable(t, 200); s != "" {
			return []string{s}
		}
	case []any:
		var out []string
		for _, e := range t {
			out = append(out, messages(e)...)
		}
		return out
	case map[string]any:
		if m, ok := t["message"].(string); ok {
			return messages(m)
		}
		keys := make([]string, 0, len(t))
		for k := range t {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		var out []string
		for _, k := range keys {
			for _, m := range messages(t[k]) {
				if k == "base" {
					out = append(out, m)
				} else {
					out = append(out, printable(k, 60)+" "+m)
				}
			}
		}
		return out
	}
	return nil
}

func htmlTitle(b []byte) string {
	s := string(b)
	// ASCII-only folding keeps byte offsets: strings.ToLower turns each invalid UTF-8 byte
	// into a 3-byte U+FFFD, and the offsets found in it would overrun s.
	lower := asciiLower(s)
	start := strings.Index(lower, "<title>")
	end := strings.Index(lower, "</title>")
	if start < 0 || end < start {
		return "HTML error page"
	}
	return printable(html.UnescapeString(s[start+len("<title>"):end]), 120)
}

// asciiLower lower-cases A–Z and leaves every other byte as it is.
func asciiLower(s string) string {
	b := []byte(s)
	for i, c := range b {
		if 'A' <= c && c <= 'Z' {
			b[i] = c + 'a' - 'A'
		}
	}
	return string(b)
}

// printable trims s, drops control characters and caps it at n runes.
func printable(s string, n int) string {
	var b strings.Builder
	count := 0
	for _, r := range strings.TrimSpace(s) {
		if unicode.IsControl(r) {
			continue
		}
		if count == n {
			b.WriteString("…")
			break
		}
		b.WriteRune(r)
		count++
	}
	return b.String()
}
