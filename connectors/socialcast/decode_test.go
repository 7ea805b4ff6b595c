package socialcast

import (
	"bytes"
	"encoding/json"
	"net/http"
	"os"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/groupsync/groupsync/connectors"
)

// showExample is the apidoc's groups/show example (shared/seeds/socialcast-get-group.txt).
func showExample(t testing.TB) []byte {
	t.Helper()
	b, err := os.ReadFile("testdata/group-show.json")
	if err != nil {
		t.Fatalf("read example: %v", err)
	}
	return b
}

// editGroup decodes the example's group, applies edit, and re-encodes it under "group".
func editGroup(t *testing.T, body []byte, edit func(map[string]any)) []byte {
	t.Helper()
	var doc map[string]map[string]any
	if err := json.Unmarshal(body, &doc); err != nil {
		t.Fatal(err)
	}
	edit(doc["group"])
	out, err := json.Marshal(doc)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func TestDecodeApidocExample(t *testing.T) {
	g, err := decodeGroup(showExample(t))
	if err != nil {
		t.Fatalf("decodeGroup: %v", err)
	}
	// name, not html_name ("privatetest&amp;grøup2"); description null → "".
	if g.ID != "5" || g.Name != "privatetest&grøup2" || g.Description != "" || g.Visibility != connectors.VisibilityPrivate ||
		g.State != "active" || g.MembershipManaged || g.System {
		t.Fatalf("group = %+v", g)
	}
	if !bytes.HasPrefix(bytes.TrimSpace(g.Raw), []byte(`{`)) || bytes.Contains(g.Raw[:20], []byte(`"group"`)) {
		t.Fatalf("raw keeps the root node: %.40s", g.Raw)
	}
}

func TestGroupHashLeavesOutCallerRelativeFields(t *testing.T) {
	body := showExample(t)
	base, err := decodeGroup(body)
	if err != nil {
		t.Fatal(err)
	}
	same := map[string]func(map[string]any){
		"role_key":                   func(g map[string]any) { g["role_key"] = "member" },
		"can_join/can_leave":         func(g map[string]any) { g["can_join"], g["can_leave"] = true, true },
		"can_administer":             func(g map[string]any) { g["can_administer"] = false },
		"a can_* flag added later":   func(g map[string]any) { g["can_pin"] = true },
		"private group member_count": func(g map[string]any) { g["member_count"] = nil },
	}
	for name, edit := range same {
		g, err := decodeGroup(editGroup(t, body, edit))
		if err != nil || g.Hash != base.Hash {
			t.Errorf("%s changed the hash (%v)", name, err)
		}
	}
	differs := map[string]func(map[string]any){
		"description":  func(g map[string]any) { g["description"] = "new" },
		"name":         func(g map[string]any) { g["name"] = "other" },
		"state":        func(g map[string]any) { g["state"] = "archived" },
		"rule_managed": func(g map[string]any) { g["rule_managed"] = true },
	}
	for name, edit := range differs {
		g, err := decodeGroup(editGroup(t, body, edit))
		if err != nil || g.Hash == base.Hash {
			t.Errorf("%s left the hash unchanged (%v)", name, err)
		}
	}
	// On a public group member_count is the same for every caller, so it counts.
	public := func(n int) func(map[string]any) {
		return func(g map[string]any) { g["private"], g["permission"], g["member_count"] = false, "public", n }
	}
	a, _ := decodeGroup(editGroup(t, body, public(2)))
	b, _ := decodeGroup(editGroup(t, body, public(3)))
	if a.Hash == b.Hash || a.Visibility != connectors.VisibilityPublic {
		t.Errorf("public group: member_count 2 and 3 hash alike, or visibility %q", a.Visibility)
	}
	archived, _ := decodeGroup(editGroup(t, body, func(g map[string]any) { g["state"] = "archived"; g["rule_managed"] = true }))
	if archived.State != "archived" || !archived.MembershipManaged {
		t.Errorf("archived rule-managed group = %+v", archived)
	}
}

func TestDecodeGroupsPageShapes(t *testing.T) {
	one := `{"id": 12345678901234567890, "name": "A", "permission": "external_contributor"}`
	for _, body := range []string{
		`[` + one + `]`,
		`{"groups": [` + one + `]}`,
		`[{"group": ` + one + `}]`, // elements wrapped in their own root node
	} {
		gs, err := decodeGroupsPage([]byte(body))
		if err != nil || len(gs) != 1 || gs[0].ID != "12345678901234567890" || gs[0].Visibility != connectors.VisibilityPrivate {
			t.Errorf("%s → %+v, %v", body, gs, err)
		}
	}
	for _, body := range []string{``, `null`, `{"users": []}`, `[{"name": "no id"}]`, `[{"id": 1.5}]`, `[{"id": 1, "name": 7}]`, `[1,2`} {
		if gs, err := decodeGroupsPage([]byte(body)); err == nil {
			t.Errorf("%q decoded to %+v, want an error", body, gs)
		}
	}
}

func TestDecodeMemberships(t *testing.T) {
	body := `{"group_memberships": [
		{"id": 1, "user_id": 10, "role": "Admin", "role_key": "admin"},
		{"id": 2, "user_id": 11, "role": "Member", "role_key": "member"},
		{"id": 3, "user_id": 12, "role": "External Contributor", "role_key": null},
		{"id": 4, "user": {"id": 13}, "role": "Member"}]}`
	ms, err := decodeMembershipsPage("g1", []byte(body))
	if err != nil || len(ms) != 4 {
		t.Fatalf("decode = %+v, %v", ms, err)
	}
	want := []connectors.Member{
		{GroupID: "g1", AccountID: "10", Type: "user", Role: "admin"},
		{GroupID: "g1", AccountID: "11", Type: "user", Role: "member"},
		{GroupID: "g1", AccountID: "12", Type: "user:external_contributor", Role: "member"},
		{GroupID: "g1", AccountID: "13", Type: "user", Role: "member"},
	}
	for i := range want {
		if ms[i] != want[i] {
			t.Errorf("member %d = %+v, want %+v", i, ms[i], want[i])
		}
	}
	if _, err := decodeMembershipsPage("g1", []byte(`{"group_memberships": [{"id": 1, "role": "Member"}]}`)); err == nil {
		t.Errorf("a membership without a user decoded")
	}
}

func TestDecodeUsers(t *testing.T) {
	body := `{"users": [
		{"id": 1, "name": "Emily", "contact_info": {"email": " Emily@Socialcast.COM "}, "following": true},
		{"id": 2, "name": "Old", "email": "old@example.com", "terminated": true},
		{"id": 3, "name": "Off", "contact_info": [], "active": false}]}`
	as, err := decodeUsersPage([]byte(body))
	if err != nil || len(as) != 3 {
		t.Fatalf("decode = %+v, %v", as, err)
	}
	if as[0].Email != "emily@socialcast.com" || as[0].State != "active" || as[1].Email != "old@example.com" ||
		as[1].State != "terminated" || as[2].Email != "" || as[2].State != "inactive" {
		t.Fatalf("accounts = %+v", as)
	}
	// "following" says whether the caller follows the user: not part of the hash.
	b, _ := decodeUser([]byte(`{"user": {"id": 1, "name": "Emily", "contact_info": {"email": " Emily@Socialcast.COM "}, "following": false}}`))
	if b.Hash != as[0].Hash {
		t.Fatalf("following changed the hash")
	}
}

func TestDecodeError(t *testing.T) {
	html := http.Header{"Content-Type": {"text/html"}}
	for _, tc := range []struct {
		body   string
		header http.Header
		want   string
	}{
		{`{"errors": {"name": ["can't be blank", "is too short"], "base": ["Group is archived"]}}`, nil,
			"Group is archived; name can't be blank; name is too short"},
		{`{"errors": ["Name can't be blank"]}`, nil, "Name can't be blank"},
		{`{"errors": "Something"}`, nil, "Something"},
		{`{"error": "Record not found"}`, nil, "Record not found"},
		{`{"error": {"message": "Rate limit exceeded"}}`, nil, "Rate limit exceeded"},
		{`{"message": "Forbidden"}`, nil, "Forbidden"},
		{`{"other": 1}`, nil, ""},
		{"HTTP Basic: Access denied.\n", nil, "HTTP Basic: Access denied."},
		{"<html><head><title>We&#39;re sorry (500)</title></head><body>…</body></html>", html, "We're sorry (500)"},
		{"<html><body>no title</body></html>", html, "HTML error page"},
		{"", nil, ""},
	} {
		got := decodeError(422, tc.header, []byte(tc.body))
		if got.Message != tc.want || got.Type != "" || got.Class != nil {
			t.Errorf("decodeError(%q) = %+v, want message %q", tc.body, got, tc.want)
		}
	}
}

// The fuzz targets feed arbitrary bytes to every response decoder: none may panic, and
// whatever decodes must be usable (ids set, hashes computed, strings valid).

func FuzzDecodeGroupsPage(f *testing.F) {
	f.Fuzz(func(t *testing.T, body []byte) {
		gs, err := decodeGroupsPage(body)
		if err != nil {
			return
		}
		for _, g := range gs {
			checkGroup(t, g)
		}
	})
}

func FuzzDecodeGroup(f *testing.F) {
	f.Fuzz(func(t *testing.T, body []byte) {
		if g, err := decodeGroup(body); err == nil {
			checkGroup(t, g)
		}
	})
}

func checkGroup(t *testing.T, g connectors.Group) {
	t.Helper()
	if g.ID == "" || g.Hash == "" || len(g.Raw) == 0 || (g.State != "active" && g.State != "archived") {
		t.Fatalf("decoded an unusable group %+v", g)
	}
}

func FuzzDecodeMembershipsPage(f *testing.F) {
	f.Fuzz(func(t *testing.T, body []byte) {
		ms, err := decodeMembershipsPage("1", body)
		if err != nil {
			return
		}
		for _, m := range ms {
			if m.AccountID == "" || m.GroupID != "1" || (m.Role != "admin" && m.Role != "member") {
				t.Fatalf("decoded an unusable member %+v", m)
			}
		}
	})
}

func FuzzDecodeUsersPage(f *testing.F) {
	f.Fuzz(func(t *testing.T, body []byte) {
		as, err := decodeUsersPage(body)
		if err != nil {
			return
		}
		for _, a := range as {
			checkAccount(t, a)
		}
	})
}

func FuzzDecodeUser(f *testing.F) {
	f.Fuzz(func(t *testing.T, body []byte) {
		if a, err := decodeUser(body); err == nil {
			checkAccount(t, a)
		}
	})
}

func checkAccount(t *testing.T, a connectors.Account) {
	t.Helper()
	if a.ID == "" || a.Hash == "" || a.Email != connectors.NormalizeEmail(a.Email) {
		t.Fatalf("decoded an unusable account %+v", a)
	}
}

func FuzzDecodeError(f *testing.F) {
	f.Fuzz(func(t *testing.T, body []byte) {
		info := decodeError(422, http.Header{}, body)
		if strings.ContainsAny(info.Message, "\n\r\x00") || (utf8.Valid(body) && !utf8.ValidString(info.Message)) {
			t.Fatalf("message %q is not a clean single line", info.Message)
		}
	})
}
