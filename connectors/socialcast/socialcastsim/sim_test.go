package socialcastsim

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/groupsync/groupsync/connectors/simkit"
)

type client struct {
	t   *testing.T
	srv *httptest.Server
}

func newClient(t *testing.T, s *Server) *client {
	srv := httptest.NewServer(s)
	t.Cleanup(srv.Close)
	return &client{t: t, srv: srv}
}

// do sends a request with the default Basic credentials and returns status and body.
func (c *client) do(method, path string, form url.Values) (int, string, http.Header) {
	c.t.Helper()
	var body io.Reader
	if form != nil {
		body = strings.NewReader(form.Encode())
	}
	req, err := http.NewRequestWithContext(c.t.Context(), method, c.srv.URL+path, body)
	if err != nil {
		c.t.Fatal(err)
	}
	if form != nil {
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	}
	req.SetBasicAuth(DefaultUsername, DefaultPassword)
	resp, err := c.srv.Client().Do(req)
	if err != nil {
		c.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		c.t.Fatal(err)
	}
	return resp.StatusCode, string(b), resp.Header
}

func (c *client) want(method, path string, form url.Values, status int, contains ...string) string {
	c.t.Helper()
	got, body, _ := c.do(method, path, form)
	if got != status {
		c.t.Fatalf("%s %s = %d %s, want %d", method, path, got, body, status)
	}
	for _, s := range contains {
		if !strings.Contains(body, s) {
			c.t.Fatalf("%s %s body %s lacks %s", method, path, body, s)
		}
	}
	return body
}

func seeded(groups, people, members int) (*Server, simkit.Tenant) {
	s := New(Options{})
	tn := simkit.Generate(simkit.GenOptions{Groups: groups, People: people, MembersPerGroup: members, Seed: 1})
	s.Seed(tn)
	return s, tn
}

func TestAuth(t *testing.T) {
	s := New(Options{Username: "u@example.com", Password: "pw", Token: "tok"})
	srv := httptest.NewServer(s)
	t.Cleanup(srv.Close)
	for _, tc := range []struct {
		name   string
		set    func(*http.Request)
		status int
	}{
		{"none", func(*http.Request) {}, 401},
		{"wrong password", func(r *http.Request) { r.SetBasicAuth("u@example.com", "nope") }, 401},
		{"basic", func(r *http.Request) { r.SetBasicAuth("u@example.com", "pw") }, 200},
		{"bearer", func(r *http.Request) { r.Header.Set("Authorization", "Bearer tok") }, 200},
		{"wrong bearer", func(r *http.Request) { r.Header.Set("Authorization", "Bearer tik") }, 401},
	} {
		req, _ := http.NewRequestWithContext(t.Context(), http.MethodGet, srv.URL+"/api/groups.json", nil)
		tc.set(req)
		resp, err := srv.Client().Do(req)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != tc.status {
			t.Fatalf("%s: status %d", tc.name, resp.StatusCode)
		}
		if tc.status == 401 && (string(b) != "HTTP Basic: Access denied.\n" || resp.Header.Get("WWW-Authenticate") == "") {
			t.Fatalf("%s: 401 body %q, headers %v", tc.name, b, resp.Header)
		}
	}
}

func TestPaging(t *testing.T) {
	s, _ := seeded(45, 600, 520)
	c := newClient(t, s)
	count := func(body, key string) int {
		var v []json.RawMessage
		if key != "" {
			var obj map[string][]json.RawMessage
			if err := json.Unmarshal([]byte(body), &obj); err != nil {
				t.Fatalf("body %.80s: %v", body, err)
			}
			v = obj[key]
		} else if err := json.Unmarshal([]byte(body), &v); err != nil {
			t.Fatalf("body %.80s: %v", body, err)
		}
		return len(v)
	}
	for _, tc := range []struct {
		path, key string
		want      int
	}{
		{"/api/groups.json", "", 20}, // per_page defaults to 20
		{"/api/groups.json?page=3", "", 5},
		{"/api/groups.json?page=4", "", 0},
		{"/api/groups.json?page=0&per_page=abc", "", 20},
		{"/api/groups.json?per_page=44", "", 44},
		{"/api/groups/601/memberships.json?per_page=1000", "group_memberships", 500}, // capped at 500
		{"/api/groups/601/memberships.json?per_page=500&page=2", "group_memberships", 20},
		{"/api/users.json?per_page=500&page=2", "users", 100},
	} {
		if got := count(c.want("GET", tc.path, nil, 200), tc.key); got != tc.want {
			t.Errorf("%s: %d records, want %d", tc.path, got, tc.want)
		}
	}
	s.SetGroupsRoot(true)
	if got := count(c.want("GET", "/api/groups.json?per_page=7", nil, 200), "groups"); got != 7 {
		t.Errorf("groups root: %d records", got)
	}
	s.IgnorePageParam(true)
	if a, b := c.want("GET", "/api/groups.json?page=1", nil, 200), c.want("GET", "/api/groups.json?page=2", nil, 200); a != b {
		t.Errorf("IgnorePageParam: pages differ")
	}
}

func TestGroupRenderingAndIDForms(t *testing.T) {
	s := New(Options{})
	tn := simkit.Generate(simkit.GenOptions{Groups: 2, People: 3, MembersPerGroup: 2, Seed: 1})
	tn.Groups[0].Name = "privatetest&grøup2"
	tn.Groups[0].Private = true
	tn.Groups[1].Name = `<b>&amp;</b> "q" 'a'`
	s.Seed(tn)
	c := newClient(t, s)
	// People took ids 1-3; the groups are 4 and 5.
	for _, path := range []string{"/api/groups/4.json", "/api/groups/4-privatetestgr%C3%B8up2.json", "/api/groups/privatetestgr%C3%B8up2.json"} {
		c.want("GET", path, nil, 200, `"group":{"id":4,`, `"html_name":"privatetest\u0026amp;grøup2"`,
			`"permission":"private"`, `"member_count":null`, `"state":"active"`, `"role_key":null`)
	}
	body := c.want("GET", "/api/groups/5.json", nil, 200)
	var doc struct {
		Group struct {
			Name        string `json:"name"`
			HTMLName    string `json:"html_name"`
			MemberCount *int   `json:"member_count"`
			AdminIDs    []int  `json:"admin_ids"`
		} `json:"group"`
	}
	if err := json.Unmarshal([]byte(body), &doc); err != nil {
		t.Fatal(err)
	}
	if doc.Group.Name != tn.Groups[1].Name || doc.Group.HTMLName != `&lt;b&gt;&amp;amp;&lt;/b&gt; &quot;q&quot; &#39;a&#39;` ||
		doc.Group.MemberCount == nil || *doc.Group.MemberCount != 2 || len(doc.Group.AdminIDs) != 1 {
		t.Fatalf("group 5 = %+v", doc.Group)
	}
	c.want("GET", "/api/groups/99.json", nil, 404, `"error"`)
	c.want("GET", "/api/groups/nosuchgroup.json", nil, 404)
	c.want("GET", "/api/groups/4/memberships.json", nil, 200, `"role":"Admin","role_key":"admin"`, `"role":"Member","role_key":"member"`)
	c.want("GET", "/api/users/1.json", nil, 200, `"user":{"id":1,`, `"contact_info":{"email":"user000000@example.com"`)
	c.want("GET", "/api/users/search.json?q=USER000002", nil, 200, `"id":3`)
	c.want("GET", "/api/groups", nil, 404)         // the connector always sends .json
	c.want("POST", "/api/groups/4.json", nil, 405) // a route exists, not with this method
	c.want("GET", "/api/groups/4/archive.json", nil, 405)
}

func TestWrites(t *testing.T) {
	s, _ := seeded(1, 2, 0)
	c := newClient(t, s)
	form := func(kv ...string) url.Values {
		v := url.Values{}
		for i := 0; i < len(kv); i += 2 {
			v.Set(kv[i], kv[i+1])
		}
		return v
	}
	c.want("POST", "/api/groups.json", form("group[description]", "x"), 422, `{"errors":{"name":["can't be blank"]}}`)
	c.want("POST", "/api/groups.json", form("group[name]", "New", "group[permission_mode]", "secret"), 422, `"permission_mode":["is not included in the list"]`)
	c.want("POST", "/api/groups.json", form("group[name]", strings.ToUpper(s.Snapshot()[0].Name)), 422, `"has already been taken"`)
	c.want("POST", "/api/groups.json", form("group[name]", "New", "group[permission_mode]", "private", "group[description]", "d"), 201,
		`{"group":{"id":4,`, `"permission":"private"`, `"description":"d"`)
	c.want("PUT", "/api/groups/4.json", form("group[name]", ""), 422, `"can't be blank"`)
	c.want("PUT", "/api/groups/4-new.json", form("group[name]", "Renamed", "group[permission_mode]", "public"), 200,
		`"name":"Renamed"`, `"permission":"public"`, `"description":"d"`)
	c.want("DELETE", "/api/groups/4.json", nil, 422, "must be archived")
	c.want("DELETE", "/api/groups/4/archive.json", nil, 200, `"state":"archived"`)
	c.want("DELETE", "/api/groups/4/archive.json", nil, 422, "already archived")
	c.want("PUT", "/api/groups/4.json", form("group[name]", "Again"), 422, "Archived groups cannot be changed")
	// An archived group's name can be reused by a new group.
	c.want("POST", "/api/groups.json", form("group[name]", "Renamed"), 201)
	c.want("DELETE", "/api/groups/4.json", nil, 204)
	c.want("DELETE", "/api/groups/4.json", nil, 404)
	snap := s.Snapshot()
	if len(snap) != 2 || snap[1].Name != "Renamed" || snap[1].ID != "5" || snap[1].Archived {
		t.Fatalf("snapshot %+v", snap)
	}
	if creates, _, _ := s.Effects().Totals(); creates != 2 {
		t.Fatalf("%d creates recorded, want 2 (refused creates do not count)", creates)
	}
}

func TestFaultsUseTheAPIsShapes(t *testing.T) {
	s, _ := seeded(3, 2, 0)
	c := newClient(t, s)
	s.Faults().RateLimitNext(RouteGroupsList, 1, 3*time.Second)
	status, body, hdr := c.do("GET", "/api/groups.json", nil)
	if status != 429 || hdr.Get("Retry-After") != "3" || !strings.Contains(body, `"error"`) {
		t.Fatalf("429 = %d %s %v", status, body, hdr)
	}
	s.Faults().StatusNext(RouteGroupShow, 1, 503)
	if status, body, _ := c.do("GET", "/api/groups/3.json", nil); status != 503 || !strings.Contains(body, "<title>") {
		t.Fatalf("503 = %d %s", status, body)
	}
	if n := s.Counter().CountStatus(RouteGroupsList, 429); n != 1 {
		t.Fatalf("counter saw %d 429s", n)
	}
}

// TestSeedLargeTenant seeds the size the brief asks simulators to hold (10k groups, 100k
// people, 1M memberships) and reads the last page of each list.
func TestSeedLargeTenant(t *testing.T) {
	tn := simkit.Generate(simkit.GenOptions{Groups: 10_000, People: 100_000, MembersPerGroup: 100, Seed: 1})
	s := New(Options{})
	start := time.Now()
	s.Seed(tn)
	t.Logf("seeded %d groups, %d people, %d memberships in %s", len(tn.Groups), len(tn.People), tn.Memberships(), time.Since(start))
	c := newClient(t, s)
	c.want("GET", "/api/groups.json?page=20&per_page=500", nil, 200, `"id":110000,`)
	c.want("GET", "/api/groups/110000/memberships.json?per_page=500", nil, 200, `"id":1110000,`)
	c.want("GET", "/api/users.json?page=200&per_page=500", nil, 200, `"id":100000,`)
}

func BenchmarkSeedLargeTenant(b *testing.B) {
	tn := simkit.Generate(simkit.GenOptions{Groups: 10_000, People: 100_000, MembersPerGroup: 100, Seed: 1})
	s := New(Options{})
	for b.Loop() {
		s.Seed(tn)
	}
}

func BenchmarkListGroupsPage(b *testing.B) {
	tn := simkit.Generate(simkit.GenOptions{Groups: 10_000, People: 1000, MembersPerGroup: 10, Seed: 1})
	s := New(Options{})
	s.Seed(tn)
	req := httptest.NewRequest(http.MethodGet, "/api/groups.json?page=7&per_page=500", nil)
	req.SetBasicAuth(DefaultUsername, DefaultPassword)
	for b.Loop() {
		w := httptest.NewRecorder()
		s.ServeHTTP(w, req)
		if w.Code != 200 {
			b.Fatal(w.Code)
		}
	}
}
