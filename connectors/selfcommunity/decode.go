package selfcommunity

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"sort"
	"strings"
	"time"

	"github.com/groupsync/groupsync/connectors"
	"github.com/groupsync/groupsync/connectors/apiclient"
)

// page is one DRF limit/offset page: {count, next, previous, results}. SelfCommunity's docs
// and its JS SDK disagree on some list endpoints (docs: a bare JSON array; SDK: the
// envelope, apis.md §1.8), so a bare array is accepted too and read as the only page.
type page struct {
	Next    string
	Results []json.RawMessage
	Bare    bool
}

func (p *page) UnmarshalJSON(b []byte) error {
	b = bytes.TrimSpace(b)
	if len(b) > 0 && b[0] == '[' {
		p.Bare = true
		if err := json.Unmarshal(b, &p.Results); err != nil {
			return fmt.Errorf("page array: %w", err)
		}
		return nil
	}
	var env struct {
		Next    *string            `json:"next"`
		Results *[]json.RawMessage `json:"results"`
	}
	if err := json.Unmarshal(b, &env); err != nil {
		return fmt.Errorf("page envelope: %w", err)
	}
	if env.Results == nil {
		return errors.New("page envelope has no results")
	}
	p.Results = *env.Results
	if env.Next != nil {
		p.Next = *env.Next
	}
	return nil
}

// errNoID refuses a record without an id: apiclient.ID only refuses a null or malformed
// id, and an absent key never reaches its decoder.
var errNoID = errors.New("record has no id")

// decodePage reads a list response body.
func decodePage(body []byte) (page, error) {
	var p page
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.UseNumber()
	err := dec.Decode(&p)
	return p, err
}

// apiUser is the User object as far as the connector reads it. Members come trimmed (id,
// username, real_name, ext_id, avatar). `email` is only read from the admin account
// search's answer (decodeSearched): the public User schema no longer documents it, so an
// email some other route happens to carry is not relied on.
type apiUser struct {
	ID       apiclient.ID    `json:"id"`
	Username string          `json:"username"`
	RealName string          `json:"real_name"`
	Email    string          `json:"email"`
	ExtID    json.RawMessage `json:"ext_id"`
	Status   string          `json:"status"`
	Deleted  *bool           `json:"deleted"`
}

// extID returns ext_id as text: the User schema types it an integer, the external-provider
// schema a string; null or absent is "".
func (u apiUser) extID() string {
	raw := bytes.TrimSpace(u.ExtID)
	if len(raw) == 0 || string(raw) == "null" {
		return ""
	}
	var s string
	if json.Unmarshal(raw, &s) == nil {
		return strings.TrimSpace(s)
	}
	var n json.Number
	if json.Unmarshal(raw, &n) == nil {
		return n.String()
	}
	return ""
}

func (u apiUser) displayName() string {
	if s := strings.TrimSpace(u.RealName); s != "" {
		return u.RealName
	}
	return u.Username
}

// userRef is a nested User (created_by, managed_by); only its id matters.
type userRef struct {
	ID apiclient.ID `json:"id"`
}

type apiGroup struct {
	ID          apiclient.ID `json:"id"`
	Name        string       `json:"name"`
	Description *string      `json:"description"`
	Privacy     string       `json:"privacy"`
	Visible     *bool        `json:"visible"`
	Active      *bool        `json:"active"`
	CreatedAt   string       `json:"created_at"`
	ManagedBy   *userRef     `json:"managed_by"`
}

// groupHashExclude are the Group fields left out of Group.Hash:
//   - subscribed, subscription_status: relative to the caller (apis.md §1.2), so a
//     different token would see a different record;
//   - subscribers_counter: it moves with every join and leave. Membership is mirrored on its
//     own (ListMembers), so counting it here would rewrite the group row on every membership
//     change without the group itself changing. Raw still carries it, so the engine can use
//     it as a cheap "members changed" hint if it wants to.
//
// Nested users (created_by, managed_by) are reduced to their id before hashing: their
// profile counters (followers, posts) change all the time, who manages the group does not.
var groupHashExclude = []string{"subscribed", "subscription_status", "subscribers_counter"}

// userHashExclude are the User fields left out of Account.Hash: the caller-relative
// connection_status and permission, and activity counters that change without the account
// changing.
var userHashExclude = []string{
	"connection_status", "permission", "reputation",
	"followings_counter", "followers_counter", "posts_counter", "discussions_counter",
	"statuses_counter", "polls_counter", "categories_counter", "connections_counter",
	"connection_requests_sent_counter", "connection_requests_received_counter",
	"unseen_interactions_counter", "unseen_notification_banners_counter",
}

// groupHash hashes a group's raw JSON as described at groupHashExclude.
func groupHash(raw json.RawMessage) (string, error) {
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	var obj map[string]json.RawMessage
	if err := dec.Decode(&obj); err != nil {
		return "", fmt.Errorf("group hash: %w", err)
	}
	for _, k := range []string{"created_by", "managed_by"} {
		v, ok := obj[k]
		if !ok {
			continue
		}
		var ref struct {
			ID json.RawMessage `json:"id"`
		}
		if json.Unmarshal(v, &ref) == nil && ref.ID != nil {
			obj[k] = ref.ID
		}
	}
	reduced, err := json.Marshal(obj)
	if err != nil {
		return "", fmt.Errorf("group hash: %w", err)
	}
	return connectors.ContentHash(reduced, groupHashExclude...)
}

// decodeGroup turns one raw group into the model, with the id of its manager ("" if the
// record names none).
func decodeGroup(raw json.RawMessage) (connectors.Group, string, error) {
	var g apiGroup
	if err := json.Unmarshal(raw, &g); err != nil {
		return connectors.Group{}, "", fmt.Errorf("decode group: %w", err)
	}
	if g.ID == "" {
		return connectors.Group{}, "", errNoID
	}
	hash, err := groupHash(raw)
	if err != nil {
		return connectors.Group{}, "", err
	}
	out := connectors.Group{
		ID:         g.ID.String(),
		Name:       g.Name,
		Visibility: visibility(g.Privacy, g.Visible),
		State:      "active",
		Raw:        append(json.RawMessage(nil), raw...),
		Hash:       hash,
	}
	if g.Description != nil {
		out.Description = *g.Description
	}
	if g.Active != nil && !*g.Active {
		out.State = "archived"
	}
	if g.CreatedAt != "" {
		if t, err := time.Parse(time.RFC3339Nano, g.CreatedAt); err == nil {
			out.CreatedAt = t
		}
	}
	manager := ""
	if g.ManagedBy != nil {
		manager = g.ManagedBy.ID.String()
	}
	return out, manager, nil
}

// visibility maps SelfCommunity's privacy and visible flags: a public group is public; a
// private one is private when it is still listed to non-members (visible) and hidden when
// not. A private group without the flag is taken as visible, the API's documented default
// for groups created without it.
func visibility(privacy string, visible *bool) connectors.Visibility {
	switch privacy {
	case "public":
		return connectors.VisibilityPublic
	case "private":
		if visible != nil && !*visible {
			return connectors.VisibilityHidden
		}
		return connectors.VisibilityPrivate
	}
	return connectors.VisibilityUnknown
}

// privacyOf is the inverse of visibility for writes.
func privacyOf(v connectors.Visibility) (privacy string, visible bool, ok bool) {
	switch v {
	case connectors.VisibilityPublic:
		return "public", true, true
	case connectors.VisibilityPrivate:
		return "private", true, true
	case connectors.VisibilityHidden:
		return "private", false, true
	}
	return "", false, false
}

// decodeMember reads one entry of a member list, with its username (for the account
// search). Matching by ext_id, the member's key comes inline (the trimmed User carries
// ext_id); matching by email it does not (no email there), and the engine resolves it
// through ListAccounts.
func decodeMember(groupID, manager string, matchBy connectors.MatchBy, raw json.RawMessage) (connectors.Member, string, error) {
	var u apiUser
	if err := json.Unmarshal(raw, &u); err != nil {
		return connectors.Member{}, "", fmt.Errorf("decode member: %w", err)
	}
	if u.ID == "" {
		return connectors.Member{}, "", errNoID
	}
	role := "member"
	if manager != "" && u.ID.String() == manager {
		role = "manager"
	}
	m := connectors.Member{
		GroupID:     groupID,
		AccountID:   u.ID.String(),
		Type:        connectors.MemberUser,
		Role:        role,
		DisplayName: u.displayName(),
	}
	if matchBy == connectors.MatchByExtID {
		m.Email = connectors.ExtIDKey(u.extID())
	}
	return m, u.Username, nil
}

// accountStates names SelfCommunity's one-letter user statuses.
var accountStates = map[string]string{"a": "active", "b": "blocked", "d": "deleted", "u": "unregistered"}

// decodeAccount reads a User object into an account keyed the way the system matches:
// by ext_id (ExtIDKey), or by email, which only the admin account search reveals
// (searched true); a User from any other route leaves Email "" for the search to fill.
func decodeAccount(raw json.RawMessage, matchBy connectors.MatchBy, searched bool) (connectors.Account, string, error) {
	var u apiUser
	if err := json.Unmarshal(raw, &u); err != nil {
		return connectors.Account{}, "", fmt.Errorf("decode user: %w", err)
	}
	if u.ID == "" {
		return connectors.Account{}, "", errNoID
	}
	hash, err := connectors.ContentHash(raw, userHashExclude...)
	if err != nil {
		return connectors.Account{}, "", fmt.Errorf("decode user: %w", err)
	}
	state, ok := accountStates[u.Status]
	switch {
	case u.Deleted != nil && *u.Deleted:
		state = "deleted" // the search's soft-delete flag, whatever the status letter says
	case ok:
	case u.Status == "":
		state = "active"
	default:
		state = u.Status
	}
	a := connectors.Account{
		ID:          u.ID.String(),
		DisplayName: u.displayName(),
		State:       state,
		Raw:         append(json.RawMessage(nil), raw...),
		Hash:        hash,
	}
	switch {
	case matchBy == connectors.MatchByExtID:
		a.Email = connectors.ExtIDKey(u.extID())
	case searched:
		a.Email = connectors.NormalizeEmail(u.Email)
	}
	return a, u.Username, nil
}

// decodeError reads SelfCommunity's error bodies. The SDK's parser expects
// {"errors": [{"field": f, "messages": [...]}, {"code": c, "message": m}]}; DRF's own
// exceptions (authentication, permission, not found, throttling) answer {"detail": "..."}
// and plain serializer validation answers {"field": ["message", ...]}. Only the body is
// read: headers (and so credentials) never reach the error.
func decodeError(status int, _ http.Header, body []byte) apiclient.ErrorInfo {
	var info apiclient.ErrorInfo
	body = bytes.TrimSpace(body)
	if len(body) == 0 || body[0] != '{' {
		return info
	}
	var obj map[string]json.RawMessage
	if json.Unmarshal(body, &obj) != nil {
		return info
	}
	if raw, ok := obj["errors"]; ok {
		var errs []struct {
			Field    string          `json:"field"`
			Messages json.RawMessage `json:"messages"`
			Code     string          `json:"code"`
			Message  string          `json:"message"`
		}
		if json.Unmarshal(raw, &errs) == nil {
			var types, msgs []string
			for _, e := range errs {
				switch {
				case e.Field != "":
					types = append(types, e.Field)
					for _, m := range stringsOf(e.Messages) {
						msgs = append(msgs, e.Field+": "+m)
					}
				case e.Code != "":
					types = append(types, e.Code)
				}
				if e.Message != "" {
					msgs = append(msgs, e.Message)
				}
			}
			info.Type = strings.Join(types, ",")
			info.Message = strings.Join(msgs, "; ")
			return info
		}
	}
	if raw, ok := obj["detail"]; ok {
		info.Message = strings.Join(stringsOf(raw), "; ")
		if raw, ok := obj["code"]; ok {
			info.Type = strings.Join(stringsOf(raw), ",")
		}
		return info
	}
	// DRF serializer validation: {"name": ["group with this name already exists."]}.
	keys := make([]string, 0, len(obj))
	for k := range obj {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var types, msgs []string
	for _, k := range keys {
		ms := stringsOf(obj[k])
		if len(ms) == 0 {
			continue
		}
		types = append(types, k)
		for _, m := range ms {
			msgs = append(msgs, k+": "+m)
		}
	}
	info.Type = strings.Join(types, ",")
	info.Message = strings.Join(msgs, "; ")
	return info
}

// stringsOf reads a JSON string or array of strings; anything else yields nothing.
func stringsOf(raw json.RawMessage) []string {
	var s string
	if json.Unmarshal(raw, &s) == nil {
		if s == "" {
			return nil
		}
		return []string{s}
	}
	var ss []string
	if json.Unmarshal(raw, &ss) == nil {
		return ss
	}
	return nil
}
