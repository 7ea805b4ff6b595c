package selfcommunity

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/groupsync/groupsync/connectors"
	"github.com/groupsync/groupsync/secret"
)

func TestDecodeError(t *testing.T) {
	for _, tc := range []struct {
		name, body, typ, msg string
	}{
		{"sdk field errors", `{"errors":[{"field":"name","messages":["group with this name already exists."]}]}`,
			"name", "name: group with this name already exists."},
		{"sdk code errors", `{"errors":[{"code":"invalid_params","message":"Pass exactly one of email"}]}`,
			"invalid_params", "Pass exactly one of email"},
		{"sdk mixed", `{"errors":[{"field":"privacy","messages":["a","b"]},{"code":"c","message":"m"}]}`,
			"privacy,c", "privacy: a; privacy: b; m"},
		{"drf detail", `{"detail":"Not found."}`, "", "Not found."},
		{"drf detail with code", `{"detail":"Given token not valid","code":"token_not_valid"}`, "token_not_valid", "Given token not valid"},
		{"drf serializer", `{"visible":["Must be a valid boolean."],"name":["This field is required."]}`,
			"name,visible", "name: This field is required.; visible: Must be a valid boolean."},
		{"html page", `<html><body>Bad Gateway</body></html>`, "", ""},
		{"empty", ``, "", ""},
		{"errors not a list reads as a field", `{"errors":"boom"}`, "errors", "errors: boom"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			info := decodeError(400, http.Header{"Authorization": {"Bearer " + canaryToken}}, []byte(tc.body))
			if info.Type != tc.typ || info.Message != tc.msg {
				t.Fatalf("decodeError = type %q message %q, want %q %q", info.Type, info.Message, tc.typ, tc.msg)
			}
			if strings.Contains(info.Message+info.Type, canaryToken) {
				t.Fatal("header leaked into the error")
			}
		})
	}
}

const sampleGroup = `{"id":42,"name":"Design","description":null,"slug":"design-42","color":null,"privacy":"private","visible":false,"active":true,"subscription_status":"subscribed","subscribed":true,"image_bigger":"b","image_big":"b","image_medium":"m","image_small":"s","emotional_image":null,"emotional_image_position":0,"subscribers_counter":7,"created_at":"2024-04-10T13:23:59.754335+02:00","created_by":{"id":1,"username":"admin","followers_counter":3},"managed_by":{"id":9,"username":"ada","followers_counter":10}}`

func TestDecodeGroupAndHash(t *testing.T) {
	g, manager, err := decodeGroup(json.RawMessage(sampleGroup))
	if err != nil {
		t.Fatal(err)
	}
	wantCreated := time.Date(2024, 4, 10, 11, 23, 59, 754335000, time.UTC)
	if g.ID != "42" || g.Name != "Design" || g.Description != "" || g.Visibility != connectors.VisibilityHidden ||
		g.State != "active" || !g.CreatedAt.Equal(wantCreated) || manager != "9" || string(g.Raw) != sampleGroup {
		t.Fatalf("decoded %+v manager %q", g, manager)
	}
	same := func(from, to string) string {
		r := strings.Replace(sampleGroup, from, to, 1)
		if r == sampleGroup {
			t.Fatalf("replacement %q not in sample", from)
		}
		h, err := groupHash(json.RawMessage(r))
		if err != nil {
			t.Fatal(err)
		}
		return h
	}
	for _, tc := range []struct{ from, to string }{
		{`"subscribed":true`, `"subscribed":false`},
		{`"subscription_status":"subscribed"`, `"subscription_status":null`},
		{`"subscribers_counter":7`, `"subscribers_counter":8`},
		{`"username":"ada","followers_counter":10`, `"username":"ada","followers_counter":11`},
	} {
		if h := same(tc.from, tc.to); h != g.Hash {
			t.Errorf("hash changed when %s became %s", tc.from, tc.to)
		}
	}
	for _, tc := range []struct{ from, to string }{
		{`"name":"Design"`, `"name":"Design 2"`},
		{`"visible":false`, `"visible":true`},
		{`"managed_by":{"id":9`, `"managed_by":{"id":10`},
	} {
		if h := same(tc.from, tc.to); h == g.Hash {
			t.Errorf("hash unchanged when %s became %s", tc.from, tc.to)
		}
	}
}

func TestVisibilityMapping(t *testing.T) {
	yes, no := true, false
	for _, tc := range []struct {
		privacy string
		visible *bool
		want    connectors.Visibility
	}{
		{"public", nil, connectors.VisibilityPublic},
		{"public", &no, connectors.VisibilityPublic},
		{"private", &yes, connectors.VisibilityPrivate},
		{"private", nil, connectors.VisibilityPrivate},
		{"private", &no, connectors.VisibilityHidden},
		{"", nil, connectors.VisibilityUnknown},
	} {
		if got := visibility(tc.privacy, tc.visible); got != tc.want {
			t.Errorf("visibility(%q, %v) = %q, want %q", tc.privacy, tc.visible, got, tc.want)
		}
		if tc.want == connectors.VisibilityUnknown {
			continue
		}
		p, v, ok := privacyOf(tc.want)
		if !ok || visibility(p, &v) != tc.want {
			t.Errorf("privacyOf(%q) does not map back", tc.want)
		}
	}
}

func TestDecodeAccount(t *testing.T) {
	raw := `{"id":1002,"username":"ada","real_name":"","email":" Ada@Example.COM ","status":"b","followers_counter":5,"connection_status":"followed"}`
	a, _, err := decodeAccount(json.RawMessage(raw), connectors.MatchByEmail, true)
	if err != nil {
		t.Fatal(err)
	}
	if a.ID != "1002" || a.Email != "ada@example.com" || a.DisplayName != "ada" || a.State != "blocked" {
		t.Fatalf("account %+v", a)
	}
	b, _, _ := decodeAccount(json.RawMessage(strings.NewReplacer(`"followers_counter":5`, `"followers_counter":6`,
		`"followed"`, `null`).Replace(raw)), connectors.MatchByEmail, true)
	if b.Hash != a.Hash {
		t.Fatal("account hash moved with a counter or the caller-relative connection status")
	}
}

// TestFindAccountByEmailAcceptsListAnswers: the search answers one User per the docs; a
// page or a bare array is read too, taking the entry whose email matches.
func TestFindAccountByEmailAcceptsListAnswers(t *testing.T) {
	for name, body := range map[string]string{
		"object":   `{"id":7,"username":"x","email":"X@example.com"}`,
		"envelope": `{"count":2,"next":null,"previous":null,"results":[{"id":6,"email":"other@example.com"},{"id":7,"email":"x@example.com"}]}`,
		"array":    `[{"id":6,"email":"other@example.com"},{"id":7,"email":"x@example.com"}]`,
	} {
		t.Run(name, func(t *testing.T) {
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				if r.URL.Path != "/api/v2/account/search/" || r.URL.Query().Get("email") != "x@example.com" {
					http.Error(w, `{"detail":"Not found."}`, http.StatusNotFound)
					return
				}
				fmt.Fprint(w, body)
			}))
			t.Cleanup(srv.Close)
			c, err := open(connectors.SystemConfig{Name: "sc", BaseURL: srv.URL, Token: secret.New("t"), RateLimit: 1e6},
				connectors.Deps{HTTPClient: srv.Client()}, time.Now)
			if err != nil {
				t.Fatal(err)
			}
			a, err := c.FindAccountByEmail(t.Context(), " X@Example.com")
			if err != nil || a.ID != "7" || a.Email != "x@example.com" {
				t.Fatalf("FindAccountByEmail = %+v, %v", a, err)
			}
			if _, err := c.FindAccountByEmail(t.Context(), "nobody@example.com"); !errors.Is(err, connectors.ErrNotFound) {
				t.Fatalf("unknown email = %v, want ErrNotFound", err)
			}
		})
	}
}

// The fuzz targets feed arbitrary bytes to every response decoder: they must return an
// error or a value, never panic. `go test` runs them on the seed corpus in testdata/fuzz.

func FuzzDecodeGroupsPage(f *testing.F) {
	f.Add([]byte(`{"count":1,"next":null,"previous":null,"results":[` + sampleGroup + `]}`))
	f.Fuzz(func(t *testing.T, body []byte) {
		p, err := decodePage(body)
		if err != nil {
			return
		}
		for _, r := range p.Results {
			if g, _, err := decodeGroup(r); err == nil && g.Hash == "" {
				t.Fatalf("group decoded without a hash from %s", r)
			}
		}
	})
}

func FuzzDecodeMembersPage(f *testing.F) {
	f.Add([]byte(`{"count":1,"next":"http://h/api/v2/group/1/subscribe/?limit=1&offset=1","previous":null,"results":[{"id":5,"username":"u","real_name":"U","ext_id":null,"avatar":"a"}]}`))
	f.Fuzz(func(t *testing.T, body []byte) {
		p, err := decodePage(body)
		if err != nil {
			return
		}
		for _, r := range p.Results {
			if m, _, err := decodeMember("1", "5", connectors.MatchByExtID, r); err == nil && m.AccountID == "" {
				t.Fatalf("member decoded without an id from %s", r)
			}
		}
	})
}

func FuzzDecodeUser(f *testing.F) {
	f.Add([]byte(`{"id":1002,"username":"ada","real_name":"Ada","email":"ada@example.com","status":"a"}`))
	f.Fuzz(func(t *testing.T, body []byte) {
		if a, _, err := decodeAccount(body, connectors.MatchByExtID, true); err == nil && a.ID == "" {
			t.Fatalf("account decoded without an id from %s", body)
		}
	})
}

func FuzzDecodeError(f *testing.F) {
	f.Add([]byte(`{"errors":[{"field":"name","messages":["taken"]}]}`))
	f.Fuzz(func(t *testing.T, body []byte) {
		_ = decodeError(400, http.Header{}, body)
	})
}
