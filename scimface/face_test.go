package scimface_test

import (
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/groupsync/groupsync/scimface"
	"github.com/groupsync/groupsync/state"
	"github.com/groupsync/groupsync/state/statetest"
)

const token = "okta-token-0123456789abcdef0123456789abcdef"

type face struct {
	t     *testing.T
	url   string
	store *state.Store
	token string
}

func newFace(t *testing.T, clients ...scimface.Client) *face {
	t.Helper()
	store := statetest.Store(t)
	if len(clients) == 0 {
		clients = []scimface.Client{{System: "okta", Token: token, Rate: 1000, Burst: 1000}}
	}
	srv, err := scimface.New(scimface.Options{Store: store, Clients: clients, MaxBodyBytes: 64 << 10,
		Logger: slog.New(slog.NewTextHandler(tlog{t}, nil))})
	if err != nil {
		t.Fatal(err)
	}
	hs := httptest.NewServer(srv)
	t.Cleanup(hs.Close)
	return &face{t: t, url: hs.URL + scimface.BasePath, store: store, token: clients[0].Token}
}

// do sends one request and decodes the JSON answer (nil for an empty body).
func (f *face) do(method, path, body string) (int, map[string]any) {
	f.t.Helper()
	req, err := http.NewRequestWithContext(f.t.Context(), method, f.url+path, strings.NewReader(body))
	if err != nil {
		f.t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+f.token)
	req.Header.Set("Content-Type", "application/scim+json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		f.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	var out map[string]any
	if len(b) > 0 {
		if err := json.Unmarshal(b, &out); err != nil {
			f.t.Fatalf("%s %s: %d, not JSON: %s", method, path, resp.StatusCode, b)
		}
	}
	return resp.StatusCode, out
}

func (f *face) must(want int, method, path, body string) map[string]any {
	f.t.Helper()
	got, out := f.do(method, path, body)
	if got != want {
		f.t.Fatalf("%s %s: status %d, want %d: %v", method, path, got, want, out)
	}
	return out
}

func (f *face) user(name, email string) string {
	f.t.Helper()
	out := f.must(201, "POST", "/Users", fmt.Sprintf(`{"schemas":["urn:ietf:params:scim:schemas:core:2.0:User"],
		"userName":%q,"name":{"givenName":"G","familyName":%q},"emails":[{"value":%q,"primary":true,"type":"work"}],"active":true}`,
		name, name, email))
	return out["id"].(string)
}

func (f *face) group(name string, members ...string) string {
	f.t.Helper()
	var ms []string
	for _, m := range members {
		ms = append(ms, fmt.Sprintf(`{"value":%q}`, m))
	}
	out := f.must(201, "POST", "/Groups", fmt.Sprintf(`{"schemas":["urn:ietf:params:scim:schemas:core:2.0:Group"],
		"displayName":%q,"members":[%s]}`, name, strings.Join(ms, ",")))
	return out["id"].(string)
}

func members(g map[string]any) []string {
	var out []string
	for _, m := range g["members"].([]any) {
		out = append(out, m.(map[string]any)["value"].(string))
	}
	return out
}

func TestServiceProviderConfigClaimsOnlyWhatIsImplemented(t *testing.T) {
	f := newFace(t)
	spc := f.must(200, "GET", "/ServiceProviderConfig", "")
	for feature, want := range map[string]bool{"patch": true, "filter": true, "bulk": false, "sort": false,
		"changePassword": false, "etag": false} {
		if got := spc[feature].(map[string]any)["supported"]; got != want {
			t.Errorf("%s.supported = %v, want %v", feature, got, want)
		}
	}
	rts := f.must(200, "GET", "/ResourceTypes", "")
	if n := rts["totalResults"]; n != float64(2) {
		t.Errorf("ResourceTypes: %v resource types, want User and Group", n)
	}
	f.must(200, "GET", "/Schemas", "")
}

func TestUsersCreateReadReplaceDelete(t *testing.T) {
	f := newFace(t)
	id := f.user("ada@example.com", "ada@example.com")
	got := f.must(200, "GET", "/Users/"+id, "")
	if got["userName"] != "ada@example.com" || got["meta"].(map[string]any)["version"] == nil {
		t.Fatalf("GET: %v", got)
	}
	// userName is unique without case (RFC 7643 §4.1.1): 409 uniqueness.
	_, dup := f.do("POST", "/Users", `{"schemas":["urn:ietf:params:scim:schemas:core:2.0:User"],"userName":"ADA@example.com"}`)
	if dup["scimType"] != "uniqueness" || dup["status"] != "409" {
		t.Fatalf("duplicate userName: %v", dup)
	}
	f.must(200, "PUT", "/Users/"+id, `{"schemas":["urn:ietf:params:scim:schemas:core:2.0:User"],"userName":"ada@example.com","active":false}`)
	if got := f.must(200, "GET", "/Users/"+id, ""); got["active"] != false {
		t.Fatalf("after PUT active=false: %v", got)
	}
	f.must(204, "DELETE", "/Users/"+id, "")
	f.must(404, "GET", "/Users/"+id, "")
	f.must(404, "GET", "/Users/not-a-uuid", "")
}

func TestFiltersAndPagination(t *testing.T) {
	f := newFace(t)
	for i := range 7 {
		f.user(fmt.Sprintf("user%d@example.com", i), fmt.Sprintf("u%d@corp.example", i))
	}
	for filter, want := range map[string]int{
		`userName eq "USER3@example.com"`:   1,
		`userName sw "user"`:                7,
		`userName co "4@"`:                  1,
		`emails.value eq "u5@corp.example"`: 1,
		`userName eq "user1@example.com" or userName eq "user2@example.com"`: 2,
		`userName sw "user" and active eq true`:                              7,
		`externalId pr`:                                                      0,
		`emails.value pr`:                                                    7,
		`name.familyName eq "user6@example.com"`:                             1, // not a column: evaluated over a scan
		`emails[type eq "work" and value co "u2@"]`:                          1, // a value path: a scan too
	} {
		out := f.must(200, "GET", "/Users?filter="+urlq(filter), "")
		if out["totalResults"] != float64(want) {
			t.Errorf("filter %s: totalResults %v, want %d", filter, out["totalResults"], want)
		}
	}
	page := f.must(200, "GET", "/Users?startIndex=7&count=3", "")
	if page["totalResults"] != float64(7) || len(page["Resources"].([]any)) != 1 {
		t.Fatalf("last page: %v", page)
	}
	f.group(`a "quoted" name`)
	if out := f.must(200, "GET", "/Groups?filter="+urlq(`displayName eq "a \"quoted\" name"`), ""); out["totalResults"] != float64(1) {
		t.Fatalf("escaped filter value: %v", out)
	}
}

func urlq(s string) string {
	return strings.NewReplacer(" ", "%20", `"`, "%22", "&", "%26", "[", "%5B", "]", "%5D", `\`, "%5C").Replace(s)
}

// Okta's documented group membership PATCH (developer.okta.com, SCIM 2.0 "Update a specific
// group membership") and its PUT; Entra ID's (learn.microsoft.com, "Known issues and
// resolutions with SCIM 2.0 protocol compliance"): op names capitalised, removes by value
// list, replace without path, booleans as strings.
func TestGroupMembershipAsOktaAndEntraSendIt(t *testing.T) {
	f := newFace(t)
	a, b, c := f.user("a@x.example", "a@x.example"), f.user("b@x.example", "b@x.example"), f.user("c@x.example", "c@x.example")
	g := f.group("Engineering", a)
	f.must(204, "PATCH", "/Groups/"+g, fmt.Sprintf(`{"schemas":["urn:ietf:params:scim:api:messages:2.0:PatchOp"],"Operations":[
		{"op":"remove","path":"members[value eq \"%s\"]"},
		{"op":"add","path":"members","value":[{"value":%q,"display":"b"},{"value":%q,"display":"c"}]}]}`, a, b, c))
	if got := members(f.must(200, "GET", "/Groups/"+g, "")); len(got) != 2 {
		t.Fatalf("after Okta's PATCH: members %v, want b and c", got)
	}
	f.must(204, "PATCH", "/Groups/"+g, fmt.Sprintf(`{"schemas":["urn:ietf:params:scim:api:messages:2.0:PatchOp"],"Operations":[
		{"op":"Remove","path":"members","value":[{"value":%q}]},
		{"op":"Replace","value":{"id":%q,"displayName":"Engineering EU"}}]}`, b, g))
	got := f.must(200, "GET", "/Groups/"+g, "")
	if got["displayName"] != "Engineering EU" || len(members(got)) != 1 {
		t.Fatalf("after Entra's PATCH: %v", got)
	}
	f.must(200, "PUT", "/Groups/"+g, fmt.Sprintf(`{"schemas":["urn:ietf:params:scim:schemas:core:2.0:Group"],
		"displayName":"Engineering EU","members":[{"value":%q},{"value":%q}]}`, a, b))
	if got := members(f.must(200, "GET", "/Groups/"+g, "")); len(got) != 2 {
		t.Fatalf("after Okta's PUT: members %v", got)
	}
	if out := f.must(200, "GET", "/Groups?excludedAttributes=members&filter="+urlq(`displayName eq "Engineering EU"`), ""); out["Resources"].([]any)[0].(map[string]any)["members"] != nil {
		t.Fatalf("excludedAttributes=members still lists members: %v", out)
	}
	_, bad := f.do("PATCH", "/Groups/"+g, `{"schemas":["urn:ietf:params:scim:api:messages:2.0:PatchOp"],"Operations":[
		{"op":"add","path":"members","value":[{"value":"00000000-0000-0000-0000-000000000001"}]}]}`)
	if bad["scimType"] != "invalidValue" {
		t.Fatalf("unknown member: %v", bad)
	}
	_, dup := f.do("POST", "/Groups", `{"schemas":["urn:ietf:params:scim:schemas:core:2.0:Group"],"displayName":"Engineering EU"}`)
	if dup["status"] != "409" {
		t.Fatalf("duplicate displayName: %v", dup)
	}
}

func TestEntraUserPatch(t *testing.T) {
	f := newFace(t)
	id := f.user("e@x.example", "e@x.example")
	f.must(200, "PATCH", "/Users/"+id, `{"schemas":["urn:ietf:params:scim:api:messages:2.0:PatchOp"],"Operations":[
		{"op":"Replace","path":"active","value":"False"},
		{"op":"Replace","path":"emails[type eq \"home\"].value","value":"home@x.example"},
		{"op":"Replace","path":"name.familyName","value":"Updated"}]}`)
	got := f.must(200, "GET", "/Users/"+id, "")
	if got["active"] != false || got["name"].(map[string]any)["familyName"] != "Updated" || len(got["emails"].([]any)) != 2 {
		t.Fatalf("after Entra's PATCH: %v", got)
	}
	f.must(200, "PATCH", "/Users/"+id, `{"schemas":["urn:ietf:params:scim:api:messages:2.0:PatchOp"],"Operations":[
		{"op":"replace","value":{"active":"True"}}]}`)
	if got := f.must(200, "GET", "/Users/"+id, ""); got["active"] != true {
		t.Fatalf("path-less boolean string: %v", got)
	}
}

func TestTokensBodiesAndRates(t *testing.T) {
	other := "entra-token-0123456789abcdef0123456789abcdef"
	f := newFace(t, scimface.Client{System: "okta", Token: token, Rate: 1000, Burst: 1000},
		scimface.Client{System: "entra", Token: other, Rate: 0.001, Burst: 2})
	id := f.user("o@x.example", "o@x.example")
	f.token = "wrong-token"
	if code, _ := f.do("GET", "/Users", ""); code != 401 {
		t.Fatalf("wrong token: %d, want 401", code)
	}
	f.token = other
	// Each client sees its own system only.
	f.must(404, "GET", "/Users/"+id, "")
	f.must(200, "GET", "/Users", "")
	if code, _ := f.do("GET", "/Users", ""); code != 429 {
		t.Fatalf("third request past a burst of 2: %d, want 429", code)
	}
	f.token = token
	if code, _ := f.do("POST", "/Users", `{"userName":"`+strings.Repeat("x", 70<<10)+`"}`); code != 413 {
		t.Fatalf("a body past max_body_bytes: %d, want 413", code)
	}
}

// tlog writes the face's log into the test's.
type tlog struct{ t *testing.T }

func (l tlog) Write(p []byte) (int, error) { l.t.Log(strings.TrimSpace(string(p))); return len(p), nil }
