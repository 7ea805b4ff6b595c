package devrevsim

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/groupsync/groupsync/connectors/simkit"
)

const token = "sim-token"

type response struct {
	status int
	header http.Header
	body   map[string]any
	raw    string
}

func do(t *testing.T, srv *httptest.Server, method, path, body string, auth string) response {
	t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequestWithContext(t.Context(), method, srv.URL+path, rd)
	if err != nil {
		t.Fatal(err)
	}
	if auth != "" {
		req.Header.Set("Authorization", auth)
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := srv.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	out := response{status: resp.StatusCode, header: resp.Header, raw: string(raw)}
	if err := json.Unmarshal(raw, &out.body); err != nil {
		t.Fatalf("%s %s: body %q is not a JSON object: %v", method, path, raw, err)
	}
	return out
}

func newServer(t *testing.T, o Options) (*Server, *httptest.Server) {
	t.Helper()
	o.Token = token
	s := New(o)
	srv := httptest.NewServer(s)
	t.Cleanup(srv.Close)
	s.Seed(simkit.Generate(simkit.GenOptions{Groups: 3, People: 10, MembersPerGroup: 4, Seed: 1}))
	return s, srv
}

func TestValidationErrorsInDevRevShape(t *testing.T) {
	_, srv := newServer(t, Options{MaxPageSize: 100})
	bearer := "Bearer " + token
	for _, tc := range []struct {
		name, method, path, body string
		status                   int
		typ, field               string
	}{
		{"missing description", "POST", "/groups.create", `{"name":"x"}`, 400, "missing_required_field", "description"},
		{"bad group type", "POST", "/groups.list", `{"group_type":["smart"]}`, 400, "invalid_enum_value", "group_type"},
		{"bad mode", "POST", "/groups.members.list", `{"group":"grp-1","mode":"sideways"}`, 400, "invalid_enum_value", "mode"},
		{"plural members", "POST", "/groups.members.add", `{"group":"grp-1","member":"DEVU-1","members":["DEVU-2"]}`, 400, "invalid_field", "members"},
		{"limit as string", "POST", "/groups.list", `{"limit":"50"}`, 400, "unexpected_json_type", "limit"},
		{"limit over max", "POST", "/groups.list", `{"limit":500}`, 400, "bad_request", ""},
		{"not json", "POST", "/groups.list", `{"limit":`, 400, "parse_error", ""},
		{"unknown group", "POST", "/groups.get", `{"id":"don:identity:dvrv-us-1:devo/acme:group/99"}`, 404, "not_found", ""},
		{"unknown member", "POST", "/groups.members.add", `{"group":"grp-1","member":"DEVU-999"}`, 404, "not_found", ""},
		{"duplicate name", "POST", "/groups.create", `{"name":"Engineering 0000","description":"d"}`, 409, "conflict", ""},
		{"bad cursor", "POST", "/dev-users.list", `{"cursor":"nope"}`, 400, "bad_request", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := do(t, srv, tc.method, tc.path, tc.body, bearer)
			if r.status != tc.status || r.body["type"] != tc.typ || r.body["message"] == "" {
				t.Fatalf("status %d body %s; want %d type %s", r.status, r.raw, tc.status, tc.typ)
			}
			if tc.field != "" && r.body["field_name"] != tc.field {
				t.Fatalf("field_name = %v, want %s", r.body["field_name"], tc.field)
			}
		})
	}
	if r := do(t, srv, "POST", "/groups.delete", `{}`, bearer); r.status != 404 || r.body["message"] != "route not found" {
		t.Fatalf("unknown route: %d %s", r.status, r.raw)
	}
	if r := do(t, srv, "GET", "/groups.create", "", bearer); r.status != 404 {
		t.Fatalf("GET on a write route: %d %s", r.status, r.raw)
	}
	if r := do(t, srv, "POST", "/groups.list", `{}`, "Bearer wrong"); r.status != 401 || r.body["type"] != "unauthenticated" || strings.Contains(r.raw, "wrong") {
		t.Fatalf("wrong token: %d %s", r.status, r.raw)
	}
	if r := do(t, srv, "POST", "/groups.list", `{}`, token); r.status != 200 {
		t.Fatalf("bare token (DevRev accepts it): %d %s", r.status, r.raw)
	}
}

func TestRateLimitSignal(t *testing.T) {
	s, srv := newServer(t, Options{})
	s.Faults().RateLimitNext("groups.list", 1, 0)
	r := do(t, srv, "POST", "/groups.list", `{}`, "Bearer "+token)
	if r.status != 429 || r.body["type"] != "too_many_requests" || r.body["retry_after"] != float64(1) {
		t.Fatalf("429: %d %s", r.status, r.raw)
	}
	for _, h := range []string{"Retry-After", "X-Ratelimit-Limit", "X-Ratelimit-Remaining", "X-Ratelimit-Reset"} {
		if r.header.Get(h) == "" {
			t.Errorf("429 lacks %s", h)
		}
	}
	if s.Counter().CountStatus("groups.list", 429) != 1 {
		t.Errorf("counter did not record the 429")
	}
}

func TestGetAndPostFormsAgree(t *testing.T) {
	s, srv := newServer(t, Options{})
	if _, err := s.AddGroup(GroupInit{Name: "dyn", Dynamic: true}); err != nil {
		t.Fatal(err)
	}
	post := do(t, srv, "POST", "/groups.list", `{"group_type":["dynamic","static"],"limit":2}`, "Bearer "+token)
	get := do(t, srv, "GET", "/groups.list?group_type=dynamic,static&limit=2", "", "Bearer "+token)
	// Cursors differ (each one handed out is distinct); the records must not.
	pg, _ := json.Marshal(post.body["groups"])
	gg, _ := json.Marshal(get.body["groups"])
	if string(pg) != string(gg) || post.body["next_cursor"] == nil || get.body["next_cursor"] == nil {
		t.Fatalf("POST and GET differ:\n%s\n%s", post.raw, get.raw)
	}
	dyn := do(t, srv, "GET", "/groups.list?group_type=dynamic", "", "Bearer "+token)
	groups := dyn.body["groups"].([]any)
	if len(groups) != 1 || groups[0].(map[string]any)["name"] != "dyn" {
		t.Fatalf("dynamic filter: %s", dyn.raw)
	}
	// The last page omits next_cursor (absent, not null or empty).
	if _, ok := dyn.body["next_cursor"]; ok {
		t.Fatalf("last page carries next_cursor: %s", dyn.raw)
	}
	next, _ := post.body["next_cursor"].(string)
	if next == "" {
		t.Fatalf("first of two pages lacks next_cursor: %s", post.raw)
	}
	page2 := do(t, srv, "POST", "/groups.list", `{"group_type":["dynamic","static"],"limit":2,"cursor":"`+next+`"}`, "Bearer "+token)
	if n := len(page2.body["groups"].([]any)); n != 2 {
		t.Fatalf("second page has %d groups, want 2: %s", n, page2.raw)
	}
	if _, ok := page2.body["next_cursor"]; ok {
		t.Fatalf("last page carries next_cursor: %s", page2.raw)
	}
}

func TestMembershipWrites(t *testing.T) {
	s, srv := newServer(t, Options{})
	auth := "Bearer " + token
	gid := s.Snapshot()[0].ID
	// Display ids are accepted as well as DON ids.
	if r := do(t, srv, "POST", "/groups.members.add", `{"group":"`+gid+`","member":"DEVU-10"}`, auth); r.status != 200 || r.raw != "{}" {
		t.Fatalf("add: %d %s", r.status, r.raw)
	}
	if r := do(t, srv, "POST", "/groups.members.add", `{"group":"`+gid+`","member":"DEVU-10"}`, auth); r.status != 400 {
		t.Fatalf("second add: %d %s, want 400 bad_request (the spec lists no 409 here)", r.status, r.raw)
	}
	if r := do(t, srv, "POST", "/groups.members.remove", `{"group":"`+gid+`","member":"DEVU-10"}`, auth); r.status != 200 {
		t.Fatalf("remove: %d %s", r.status, r.raw)
	}
	if r := do(t, srv, "POST", "/groups.members.remove", `{"group":"`+gid+`","member":"DEVU-10"}`, auth); r.status != 404 {
		t.Fatalf("second remove: %d %s, want 404", r.status, r.raw)
	}
	_, adds, removes := s.Effects().Totals()
	if adds != 1 || removes != 1 {
		t.Fatalf("effects adds=%d removes=%d, want 1 and 1", adds, removes)
	}
	rev := s.AddRevUser("c@example.org", "C", 4)
	cust, _ := s.AddGroup(GroupInit{Name: "customers", MemberType: "rev_user"})
	if r := do(t, srv, "POST", "/groups.members.add", `{"group":"`+cust+`","member":"`+rev+`"}`, auth); r.status != 400 || r.body["field_name"] != "member_rev_org" {
		t.Fatalf("rev user without rev org: %d %s", r.status, r.raw)
	}
	if r := do(t, srv, "POST", "/groups.members.add", `{"group":"`+cust+`","member":"`+rev+`","member_rev_org":"REV-4"}`, auth); r.status != 200 {
		t.Fatalf("rev user with rev org: %d %s", r.status, r.raw)
	}
}

// BenchmarkSeedLarge seeds the size the brief asks the simulators to hold: 10k groups,
// 100k people, 1M memberships.
func BenchmarkSeedLarge(b *testing.B) {
	tn := simkit.Generate(simkit.GenOptions{Groups: 10_000, People: 100_000, MembersPerGroup: 100, Seed: 1})
	s := New(Options{})
	b.ResetTimer()
	for range b.N {
		s.Seed(tn)
	}
}

func TestSeedIsCompact(t *testing.T) {
	tn := simkit.Generate(simkit.GenOptions{Groups: 1000, People: 10_000, MembersPerGroup: 100, Seed: 1})
	s := New(Options{})
	start := time.Now()
	s.Seed(tn)
	if d := time.Since(start); d > 5*time.Second {
		t.Fatalf("seeding 100k memberships took %s", d)
	}
	snap := s.Snapshot()
	if len(snap) != 1000 || len(snap[0].MemberEmails) != 100 {
		t.Fatalf("snapshot: %d groups, %d members in the first", len(snap), len(snap[0].MemberEmails))
	}
}

// A reseed keeps the dates of a group that did not change, as the API's own writes do, and
// stamps the one whose members changed; a benchmark that reseeds then sees only real changes.
func TestSeedKeepsTheDatesOfUnchangedGroups(t *testing.T) {
	clock := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	s := New(Options{Now: func() time.Time { return clock }})
	tn := simkit.Generate(simkit.GenOptions{Groups: 3, People: 10, MembersPerGroup: 4, Seed: 1})
	s.Seed(tn)
	first := clock
	clock = clock.Add(time.Hour)
	changed := tn
	changed.Groups = append([]simkit.TenantGroup(nil), tn.Groups...)
	changed.Groups[1].Members = changed.Groups[1].Members[:len(changed.Groups[1].Members)-1]
	s.Seed(changed)
	for i, g := range s.groups {
		if !g.created.Equal(first) {
			t.Errorf("group %d created %v after a reseed, want %v", i, g.created, first)
		}
		want := first
		if i == 1 {
			want = clock
		}
		if !g.modified.Equal(want) {
			t.Errorf("group %d modified %v after a reseed, want %v", i, g.modified, want)
		}
	}
}
