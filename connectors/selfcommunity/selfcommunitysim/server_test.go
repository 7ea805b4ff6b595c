package selfcommunitysim

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/groupsync/groupsync/connectors/simkit"
)

const (
	token  = "sim-token"
	secret = "sim-jwt-secret"
)

func newSim(t *testing.T, o Options) *Server {
	t.Helper()
	if o.Token == "" {
		o.Token = token
	}
	if o.JWTSecret == "" {
		o.JWTSecret = secret
	}
	s := New(o)
	s.Seed(simkit.Tenant{
		People: []simkit.Person{{Email: "Ada@Example.com", First: "Ada", Last: "Lovelace"}, {Email: "bob@example.com", First: "Bob"}},
		Groups: []simkit.TenantGroup{
			{Name: "Public", Members: []int32{0, 1}, Managers: []int32{0}},
			{Name: "Hidden", Private: true, Members: []int32{0}},
		},
	})
	return s
}

type call struct {
	method, path, body, auth, host string
}

func do(t *testing.T, s *Server, c call) (*httptest.ResponseRecorder, map[string]any) {
	t.Helper()
	var body *strings.Reader
	if c.body != "" {
		body = strings.NewReader(c.body)
	} else {
		body = strings.NewReader("")
	}
	r := httptest.NewRequest(c.method, c.path, body)
	if c.host != "" {
		r.Host = c.host
	}
	if c.body != "" {
		r.Header.Set("Content-Type", "application/json")
	}
	switch c.auth {
	case "":
		r.Header.Set("Authorization", "Bearer "+token)
	case "none":
	default:
		r.Header.Set("Authorization", "Bearer "+c.auth)
	}
	w := httptest.NewRecorder()
	s.ServeHTTP(w, r)
	var out map[string]any
	if b := w.Body.Bytes(); len(b) > 0 && b[0] == '{' {
		if err := json.Unmarshal(b, &out); err != nil {
			t.Fatalf("%s %s: body is not JSON: %s", c.method, c.path, b)
		}
	}
	return w, out
}

func mint(t *testing.T, claims jwt.MapClaims, key string, method jwt.SigningMethod) string {
	t.Helper()
	s, err := jwt.NewWithClaims(method, claims).SignedString([]byte(key))
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func validClaims(uid int64) jwt.MapClaims {
	now := time.Now()
	return jwt.MapClaims{"user_id": uid, "token_type": "access", "jti": "j1", "iat": now.Unix(), "exp": now.Add(5 * time.Minute).Unix()}
}

func TestAuth(t *testing.T) {
	s := newSim(t, Options{})
	expired := validClaims(1)
	expired["exp"] = time.Now().Add(-time.Minute).Unix()
	refresh := validClaims(1)
	refresh["token_type"] = "refresh"
	noJTI := validClaims(1)
	delete(noJTI, "jti")
	for _, tc := range []struct {
		name, auth string
		want       int
	}{
		{"static token", "", 200},
		{"no credential", "none", 401},
		{"wrong token", "nope", 401},
		{"jwt", mint(t, validClaims(1), secret, jwt.SigningMethodHS256), 200},
		{"jwt for a plain user", mint(t, validClaims(1001), secret, jwt.SigningMethodHS256), 200},
		{"jwt unknown user", mint(t, validClaims(77), secret, jwt.SigningMethodHS256), 401},
		{"jwt expired", mint(t, expired, secret, jwt.SigningMethodHS256), 401},
		{"jwt wrong secret", mint(t, validClaims(1), "other", jwt.SigningMethodHS256), 401},
		{"jwt wrong algorithm", mint(t, validClaims(1), secret, jwt.SigningMethodHS512), 401},
		{"jwt refresh token", mint(t, refresh, secret, jwt.SigningMethodHS256), 401},
		{"jwt without jti", mint(t, noJTI, secret, jwt.SigningMethodHS256), 401},
	} {
		t.Run(tc.name, func(t *testing.T) {
			w, body := do(t, s, call{method: "GET", path: "/api/v2/group/search/", auth: tc.auth})
			if w.Code != tc.want {
				t.Fatalf("status %d, want %d (%s)", w.Code, tc.want, w.Body)
			}
			if tc.want == 401 && (body["detail"] == nil || w.Header().Get("WWW-Authenticate") == "") {
				t.Fatalf("401 without DRF's detail body or WWW-Authenticate: %s", w.Body)
			}
		})
	}
}

func TestPathsAndPagination(t *testing.T) {
	s := New(Options{Token: token})
	s.Seed(simkit.Generate(simkit.GenOptions{Groups: 5, People: 3}))
	if w, body := do(t, s, call{method: "GET", path: "/api/v2/group/search"}); w.Code != 404 || body["detail"] != "Not found." {
		t.Fatalf("path without trailing slash = %d %s, want DRF 404", w.Code, w.Body)
	}
	if w, _ := do(t, s, call{method: "POST", path: "/api/v2/group/search/"}); w.Code != 405 {
		t.Fatalf("wrong method = %d, want 405", w.Code)
	}
	w, body := do(t, s, call{method: "GET", path: "/api/v2/group/search/?limit=2", host: "community.example.com"})
	if w.Code != 200 || body["count"] != float64(5) || len(body["results"].([]any)) != 2 {
		t.Fatalf("first page = %d %s", w.Code, w.Body)
	}
	if next := body["next"]; next != "http://community.example.com/api/v2/group/search/?limit=2&offset=2" || body["previous"] != nil {
		t.Fatalf("next = %v previous = %v, want an absolute link from the request host", next, body["previous"])
	}
	_, body = do(t, s, call{method: "GET", path: "/api/v2/group/search/?limit=2&offset=4"})
	if body["next"] != nil || len(body["results"].([]any)) != 1 || body["previous"] == nil {
		t.Fatalf("last page = %v", body)
	}
	s.RepeatNextLink(RouteGroupsSearch, 1)
	_, body = do(t, s, call{method: "GET", path: "/api/v2/group/search/?limit=2&offset=2", host: "h"})
	if body["next"] != "http://h/api/v2/group/search/?limit=2&offset=2" {
		t.Fatalf("repeated next = %v, want the page's own link", body["next"])
	}
	s.BareArrays(RouteGroupsSearch, true)
	if w, _ := do(t, s, call{method: "GET", path: "/api/v2/group/search/?limit=2"}); !strings.HasPrefix(w.Body.String(), "[") {
		t.Fatalf("bare array mode answered %s", w.Body)
	}
	if got := s.Counter().Count(RouteGroupsSearch); got != 4 {
		t.Fatalf("counter = %d for route %s, want 4", got, RouteGroupsSearch)
	}
}

func TestGroupValidationAndUniqueness(t *testing.T) {
	s := newSim(t, Options{})
	for _, tc := range []struct {
		name, body, field string
	}{
		{"name required", `{"privacy":"public"}`, "name"},
		{"privacy required", `{"name":"X"}`, "privacy"},
		{"privacy enum", `{"name":"X","privacy":"secret"}`, "privacy"},
		{"visible required when private", `{"name":"X","privacy":"private"}`, "visible"},
		{"visible is a boolean", `{"name":"X","privacy":"private","visible":"yes"}`, "visible"},
		{"name unique, case-insensitive", `{"name":"public","privacy":"public"}`, "name"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			w, body := do(t, s, call{method: "POST", path: "/api/v2/group/", body: tc.body})
			errs, _ := body["errors"].([]any)
			if w.Code != 400 || len(errs) == 0 || !strings.Contains(w.Body.String(), `"field":"`+tc.field+`"`) {
				t.Fatalf("create %s = %d %s, want 400 with an error on %s", tc.body, w.Code, w.Body, tc.field)
			}
		})
	}
	w, body := do(t, s, call{method: "POST", path: "/api/v2/group/", body: `{"name":"New <b>","privacy":"private","visible":false,"description":"d"}`})
	if w.Code != 201 || body["name"] != "New <b>" || body["visible"] != false || !strings.Contains(w.Body.String(), `"New <b>"`) {
		t.Fatalf("create = %d %s", w.Code, w.Body)
	}
	id := jsonID(t, body["id"])
	if w, _ := do(t, s, call{method: "PATCH", path: "/api/v2/group/" + id + "/", body: `{"name":"PUBLIC"}`}); w.Code != 400 {
		t.Fatalf("rename onto a taken name = %d, want 400", w.Code)
	}
	if w, body := do(t, s, call{method: "PATCH", path: "/api/v2/group/" + id + "/", body: `{"privacy":"public"}`}); w.Code != 200 || body["visible"] != true {
		t.Fatalf("patch privacy = %d %s", w.Code, w.Body)
	}
	if w, _ := do(t, s, call{method: "PUT", path: "/api/v2/group/" + id + "/", body: `{"description":"x"}`}); w.Code != 400 {
		t.Fatalf("PUT without name = %d, want 400", w.Code)
	}
	if w, _ := do(t, s, call{method: "DELETE", path: "/api/v2/group/" + id + "/"}); w.Code != 204 {
		t.Fatalf("delete = %d", w.Code)
	}
	if w, body := do(t, s, call{method: "GET", path: "/api/v2/group/" + id + "/"}); w.Code != 404 || body["detail"] != "Not found." {
		t.Fatalf("get deleted = %d %s", w.Code, w.Body)
	}
	if creates, _, _ := s.Effects().Totals(); creates != 1 {
		t.Fatalf("effective creates = %d, want 1", creates)
	}
}

func jsonID(t *testing.T, v any) string {
	t.Helper()
	f, ok := v.(float64)
	if !ok {
		t.Fatalf("id %v is not a number", v)
	}
	return strings.TrimSuffix(strings.TrimSuffix(jsonNumber(f), ".0"), ".")
}

func jsonNumber(f float64) string {
	b, _ := json.Marshal(f)
	return string(b)
}

func TestManagerOnlyAndMembership(t *testing.T) {
	s := newSim(t, Options{})
	groups := map[string]string{}
	for _, g := range s.Snapshot() {
		groups[g.Name] = g.ID
	}
	ada := mint(t, validClaims(1001), secret, jwt.SigningMethodHS256) // manages Public
	bob := mint(t, validClaims(1002), secret, jwt.SigningMethodHS256)
	pub := "/api/v2/group/" + groups["Public"] + "/subscribe/"
	if w, _ := do(t, s, call{method: "POST", path: pub, body: `{"users":[1]}`, auth: bob}); w.Code != 403 {
		t.Fatalf("non-manager add = %d, want 403", w.Code)
	}
	if w, _ := do(t, s, call{method: "DELETE", path: pub + "?user=1001", auth: bob}); w.Code != 403 {
		t.Fatalf("non-manager remove = %d, want 403", w.Code)
	}
	if w, _ := do(t, s, call{method: "PATCH", path: "/api/v2/group/" + groups["Public"] + "/", body: `{"name":"Mine"}`, auth: bob}); w.Code != 403 {
		t.Fatalf("non-manager patch = %d, want 403", w.Code)
	}
	if w, body := do(t, s, call{method: "POST", path: pub, body: `{"users":[1, 4242]}`, auth: ada}); w.Code != 400 || body["errors"] == nil {
		t.Fatalf("add unknown user = %d %s, want 400 errors", w.Code, w.Body)
	}
	for range 2 {
		if w, _ := do(t, s, call{method: "POST", path: pub, body: `{"users":[1]}`, auth: ada}); w.Code != 204 {
			t.Fatalf("manager add = %d %s", w.Code, w.Body)
		}
	}
	for range 2 {
		if w, _ := do(t, s, call{method: "DELETE", path: pub + "?user=1002"}); w.Code != 204 {
			t.Fatalf("admin remove = %d", w.Code)
		}
	}
	if _, adds, removes := s.Effects().Totals(); adds != 1 || removes != 1 {
		t.Fatalf("effects adds/removes = %d/%d, want 1/1 (repeats are no-ops)", adds, removes)
	}
	// Hidden groups: invisible to non-members, their members too.
	hidden := "/api/v2/group/" + groups["Hidden"] + "/"
	if w, _ := do(t, s, call{method: "PATCH", path: hidden, body: `{"visible":false}`}); w.Code != 200 {
		t.Fatalf("admin hiding a group = %d %s", w.Code, w.Body)
	}
	if w, _ := do(t, s, call{method: "GET", path: hidden, auth: bob}); w.Code != 404 {
		t.Fatalf("hidden group to a non-member = %d, want 404", w.Code)
	}
	_, body := do(t, s, call{method: "GET", path: "/api/v2/group/search/", auth: bob})
	if body["count"] != float64(1) {
		t.Fatalf("search as a non-member lists %v groups, want 1", body["count"])
	}
	if w, _ := do(t, s, call{method: "GET", path: hidden + "subscribe/", auth: ada}); w.Code != 200 {
		t.Fatalf("members of a hidden group to a member = %d", w.Code)
	}
	// The docs make no exception for admins: the search leaves the hidden group out for the
	// admin token too, while reading it by id still works (unless HiddenUnreadableByID).
	if _, body := do(t, s, call{method: "GET", path: "/api/v2/group/search/"}); body["count"] != float64(1) {
		t.Fatalf("admin search lists %v groups, want 1 (hidden groups the caller is not in are left out)", body["count"])
	}
	if w, body := do(t, s, call{method: "GET", path: hidden}); w.Code != 200 || body["visible"] != false {
		t.Fatalf("admin reading the hidden group by id = %d %s, want 200 visible=false", w.Code, w.Body)
	}
	for _, tc := range []struct {
		name         string
		o            Options
		listed, read int
	}{
		{"AdminListsHidden", Options{AdminListsHidden: true}, 2, 200},
		{"HiddenUnreadableByID", Options{HiddenUnreadableByID: true}, 1, 404},
	} {
		v := newSim(t, tc.o)
		do(t, v, call{method: "PATCH", path: hidden, body: `{"visible":false}`})
		if _, body := do(t, v, call{method: "GET", path: "/api/v2/group/search/"}); body["count"] != float64(tc.listed) {
			t.Fatalf("%s: admin search lists %v groups, want %d", tc.name, body["count"], tc.listed)
		}
		if w, _ := do(t, v, call{method: "GET", path: hidden}); w.Code != tc.read {
			t.Fatalf("%s: admin reading the hidden group by id = %d, want %d", tc.name, w.Code, tc.read)
		}
	}
}

// TestAccountsAndEmails: no User object carries an email, whoever asks (the field left the
// public User schema); only the admin account search returns it, by email, username or
// ext_id with provider.
func TestAccountsAndEmails(t *testing.T) {
	s := New(Options{Token: token, JWTSecret: secret})
	s.Seed(simkit.Tenant{People: []simkit.Person{{Email: "Ada@Example.com", First: "Ada", ExtID: "77"},
		{Email: "bob@example.com", First: "Bob"}}, Groups: []simkit.TenantGroup{{Name: "G", Members: []int32{0, 1}}}})
	bob := mint(t, validClaims(1002), secret, jwt.SigningMethodHS256)
	for _, tc := range []struct {
		name, path, auth string
		want             int
	}{
		{"by email, any case", "/api/v2/account/search/?email=ADA@example.com", "", 200},
		{"by username", "/api/v2/account/search/?username=Ada", "", 200},
		{"by ext_id and provider", "/api/v2/account/search/?ext_id=77&provider=external", "", 200},
		{"ext_id of another provider", "/api/v2/account/search/?ext_id=77&provider=google", "", 404},
		{"unknown", "/api/v2/account/search/?email=nobody@example.com", "", 404},
		{"no parameter", "/api/v2/account/search/", "", 400},
		{"two parameters", "/api/v2/account/search/?email=a@b.c&username=x", "", 400},
		{"ext_id without provider", "/api/v2/account/search/?ext_id=3", "", 400},
		{"not an admin", "/api/v2/account/search/?email=ada@example.com", bob, 403},
		{"no credential", "/api/v2/account/search/?email=ada@example.com", "none", 401},
	} {
		t.Run(tc.name, func(t *testing.T) {
			w, body := do(t, s, call{method: "GET", path: tc.path, auth: tc.auth})
			if w.Code != tc.want {
				t.Fatalf("status %d, want %d: %s", w.Code, tc.want, w.Body)
			}
			if tc.want == 200 && (body["email"] != "Ada@Example.com" || body["ext_id"] != float64(77) || body["deleted"] != false) {
				t.Fatalf("found %v", body)
			}
		})
	}
	for _, c := range []call{
		{method: "GET", path: "/api/v2/user/1001/"},
		{method: "GET", path: "/api/v2/user/1002/", auth: bob},
		{method: "GET", path: "/api/v2/user/"},
		{method: "GET", path: "/api/v2/group/1/subscribe/"},
		{method: "GET", path: "/api/v2/group/search/"},
	} {
		if w, _ := do(t, s, c); w.Code != 200 || strings.Contains(w.Body.String(), `"email"`) {
			t.Fatalf("%s %s = %d and carries an email: %s", c.method, c.path, w.Code, w.Body)
		}
	}
	if _, body := do(t, s, call{method: "GET", path: "/api/v2/group/1/subscribe/"}); !strings.Contains(fmt.Sprint(body["results"]), "ext_id:77") {
		t.Fatalf("member list without the ext_id: %v", body["results"])
	}
	if _, body := do(t, s, call{method: "GET", path: "/api/v2/user/"}); body["count"] != float64(3) {
		t.Fatalf("user list count = %v, want 3 (admin + 2)", body["count"])
	}
}

func TestThrottleShape(t *testing.T) {
	s := newSim(t, Options{})
	s.Faults().RateLimitNext(RouteGroupsSearch, 1, 2500*time.Millisecond)
	w, body := do(t, s, call{method: "GET", path: "/api/v2/group/search/"})
	if w.Code != 429 || w.Header().Get("Retry-After") != "3" || !strings.Contains(body["detail"].(string), "throttled") {
		t.Fatalf("throttle = %d Retry-After %q %s", w.Code, w.Header().Get("Retry-After"), w.Body)
	}
	s.Faults().RateLimitNext(RouteGroupsSearch, 1, 0)
	if w, _ := do(t, s, call{method: "GET", path: "/api/v2/group/search/"}); w.Code != 429 || w.Header().Get("Retry-After") != "" {
		t.Fatalf("throttle without a wait = %d Retry-After %q", w.Code, w.Header().Get("Retry-After"))
	}
}

// TestSeedLargeTenant: 10k groups, 100k people and 1M memberships seed in well under the
// test budget and list without holding JSON.
func TestSeedLargeTenant(t *testing.T) {
	tn := simkit.Generate(simkit.GenOptions{Groups: 10_000, People: 100_000, MembersPerGroup: 100, Seed: 9})
	s := New(Options{Token: token})
	start := time.Now()
	s.Seed(tn)
	if d := time.Since(start); d > 10*time.Second {
		t.Fatalf("seeding %d memberships took %s", tn.Memberships(), d)
	}
	_, body := do(t, s, call{method: "GET", path: "/api/v2/group/search/?limit=100&offset=9900"})
	if body["count"] != float64(10_000) || body["next"] != nil || len(body["results"].([]any)) != 100 {
		t.Fatalf("last page of 10k groups: count %v next %v", body["count"], body["next"])
	}
	_, body = do(t, s, call{method: "GET", path: "/api/v2/user/?limit=1&offset=99999"})
	if body["count"] != float64(100_001) {
		t.Fatalf("user count %v", body["count"])
	}
}

func BenchmarkSeedLargeTenant(b *testing.B) {
	tn := simkit.Generate(simkit.GenOptions{Groups: 10_000, People: 100_000, MembersPerGroup: 100, Seed: 9})
	s := New(Options{Token: token})
	for b.Loop() {
		s.Seed(tn)
	}
}

func BenchmarkGroupsPage(b *testing.B) {
	s := New(Options{Token: token})
	s.Seed(simkit.Generate(simkit.GenOptions{Groups: 10_000, People: 1000, MembersPerGroup: 10, Seed: 9}))
	r := httptest.NewRequest("GET", "/api/v2/group/search/?limit=100&offset=5000", nil)
	r.Header.Set("Authorization", "Bearer "+token)
	for b.Loop() {
		w := httptest.NewRecorder()
		s.ServeHTTP(w, r)
		if w.Code != http.StatusOK {
			b.Fatal(w.Code)
		}
	}
}
