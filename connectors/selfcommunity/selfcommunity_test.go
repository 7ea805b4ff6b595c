package selfcommunity

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/groupsync/groupsync/connectors"
	"github.com/groupsync/groupsync/connectors/selfcommunity/selfcommunitysim"
	"github.com/groupsync/groupsync/connectors/simkit"
	"github.com/groupsync/groupsync/secret"
)

func TestOpenValidatesConfig(t *testing.T) {
	base := connectors.SystemConfig{Name: "sc", Kind: connectors.KindSelfCommunity, BaseURL: "https://community.example.com"}
	for _, tc := range []struct {
		name string
		mod  func(*connectors.SystemConfig)
		want string // "" = opens
	}{
		{"token", func(c *connectors.SystemConfig) { c.Token = secret.New("t") }, ""},
		{"jwt", func(c *connectors.SystemConfig) {
			c.JWTSecret = secret.New("s")
			c.Options = map[string]string{"jwt_user_id": "7", "jwt_ttl": "5m"}
		}, ""},
		{"no credential", func(c *connectors.SystemConfig) {}, "a credential is required"},
		{"both credentials", func(c *connectors.SystemConfig) {
			c.Token, c.JWTSecret = secret.New("t"), secret.New("s")
		}, "exactly one of token and jwt_secret"},
		{"unknown option named", func(c *connectors.SystemConfig) {
			c.Token = secret.New("t")
			c.Options = map[string]string{"jwt_userid": "7"}
		}, `unknown option "jwt_userid"`},
		{"jwt without user", func(c *connectors.SystemConfig) { c.JWTSecret = secret.New("s") }, `option "jwt_user_id" is required`},
		{"jwt user not int", func(c *connectors.SystemConfig) {
			c.JWTSecret = secret.New("s")
			c.Options = map[string]string{"jwt_user_id": "admin"}
		}, "must be a positive integer"},
		{"jwt ttl bad", func(c *connectors.SystemConfig) {
			c.JWTSecret = secret.New("s")
			c.Options = map[string]string{"jwt_user_id": "7", "jwt_ttl": "10s"}
		}, "between 1m and 24h"},
		{"jwt option with token", func(c *connectors.SystemConfig) {
			c.Token = secret.New("t")
			c.Options = map[string]string{"jwt_user_id": "7"}
		}, "only applies with jwt_secret"},
		{"bad base url", func(c *connectors.SystemConfig) {
			c.Token = secret.New("t")
			c.BaseURL = "community.example.com"
		}, "absolute http(s) URL"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := base
			tc.mod(&cfg)
			c, err := Open(cfg, connectors.Deps{})
			switch {
			case tc.want == "" && err != nil:
				t.Fatalf("Open: %v", err)
			case tc.want == "":
				if c.Kind() != connectors.KindSelfCommunity || c.Name() != "sc" {
					t.Fatalf("opened %s/%s", c.Kind(), c.Name())
				}
			case err == nil || !strings.Contains(err.Error(), tc.want):
				t.Fatalf("Open error = %v, want it to mention %q", err, tc.want)
			}
			if err != nil && strings.Contains(err.Error(), "secret.Value") {
				t.Fatalf("error leaks a secret's type: %v", err)
			}
		})
	}
}

func collectGroups(t *testing.T, c connectors.Connector) map[string]connectors.Group {
	t.Helper()
	out := map[string]connectors.Group{}
	l, err := c.ListGroups(t.Context(), func(gs []connectors.Group) error {
		for _, g := range gs {
			out[g.Name] = g
		}
		return nil
	})
	if err != nil || !l.Complete {
		t.Fatalf("ListGroups = %+v, %v", l, err)
	}
	return out
}

func collectMembers(t *testing.T, c connectors.Connector, id string) []connectors.Member {
	t.Helper()
	var out []connectors.Member
	l, err := c.ListMembers(t.Context(), id, func(ms []connectors.Member) error {
		out = append(out, ms...)
		return nil
	})
	if err != nil || !l.Complete {
		t.Fatalf("ListMembers(%s) = %+v, %v", id, l, err)
	}
	return out
}

func snapshotByID(sim *selfcommunitysim.Server) map[string]simkit.GroupState {
	out := map[string]simkit.GroupState{}
	for _, g := range sim.Snapshot() {
		out[g.ID] = g
	}
	return out
}

// TestPullAndWrites drives every list call and every write against the simulator and checks
// the simulator's state afterwards.
func TestPullAndWrites(t *testing.T) {
	e := newEnv(t, envOptions{page: 4})
	tn := simkit.Generate(simkit.GenOptions{Groups: 6, People: 30, MembersPerGroup: 9, Seed: 3})
	e.sim.Seed(tn)
	ctx := t.Context()

	// Groups: visibility mapped, raw and hash kept, manager remembered for roles.
	groups := collectGroups(t, e.conn)
	if len(groups) != 6 {
		t.Fatalf("listed %d groups, want 6", len(groups))
	}
	for _, tg := range tn.Groups {
		g := groups[tg.Name]
		want := connectors.VisibilityPublic
		if tg.Private {
			want = connectors.VisibilityPrivate
		}
		if g.Visibility != want || g.Description != tg.Description || g.State != "active" || g.CreatedAt.IsZero() {
			t.Fatalf("group %q = %+v, want visibility %s, its description, active, a created time", tg.Name, g, want)
		}
	}

	// Members: the manager is reported with role manager, everyone with their display name.
	g0 := groups[tn.Groups[0].Name]
	members := collectMembers(t, e.conn, g0.ID)
	if len(members) != 9 {
		t.Fatalf("group %s has %d members, want 9", g0.ID, len(members))
	}
	managers := 0
	for _, m := range members {
		if m.Type != connectors.MemberUser || m.DisplayName == "" || m.GroupID != g0.ID {
			t.Fatalf("member %+v", m)
		}
		if m.Role == "manager" {
			managers++
		}
	}
	if managers != 1 {
		t.Fatalf("%d members reported as manager, want 1 (managed_by)", managers)
	}

	// Accounts: no listing carries emails, so listing them all is refused; by id they come
	// with emails from the account search (an unknown id is skipped).
	if _, err := e.conn.ListAccounts(ctx, nil, func([]connectors.Account) error { return nil }); !errors.Is(err, connectors.ErrUnsupported) {
		t.Fatalf("ListAccounts(all) = %v, want ErrUnsupported (no listing carries emails)", err)
	}
	ids := []string{members[0].AccountID, "999999", members[1].AccountID}
	var some []connectors.Account
	l, err := e.conn.ListAccounts(ctx, ids, func(as []connectors.Account) error {
		some = append(some, as...)
		return nil
	})
	if err != nil || !l.Complete || len(some) != 2 {
		t.Fatalf("ListAccounts(ids) = %d accounts, %+v, %v; want 2 (unknown id skipped)", len(some), l, err)
	}
	for _, a := range some {
		if a.Email == "" || a.State != "active" || a.Hash == "" {
			t.Fatalf("account %+v: want an email, active, a hash", a)
		}
	}
	acc, err := e.conn.FindAccountByEmail(ctx, strings.ToUpper(tn.People[5].Email))
	if err != nil || acc.Email != tn.People[5].Email {
		t.Fatalf("FindAccountByEmail = %+v, %v", acc, err)
	}
	if _, err := e.conn.GetGroup(ctx, "424242"); !errors.Is(err, connectors.ErrNotFound) {
		t.Fatalf("GetGroup(unknown) = %v, want ErrNotFound", err)
	}
	if g, err := e.conn.FindGroupByName(ctx, "  "+strings.ToUpper(tn.Groups[2].Name)); err != nil || g.Name != tn.Groups[2].Name {
		t.Fatalf("FindGroupByName(normalized) = %+v, %v", g, err)
	}
	if _, err := e.conn.FindGroupByName(ctx, "no such group"); !errors.Is(err, connectors.ErrNotFound) {
		t.Fatalf("FindGroupByName(unknown) = %v, want ErrNotFound", err)
	}

	// Writes.
	created, err := e.conn.CreateGroup(ctx, connectors.GroupSpec{Name: "Secret club", Description: "shh", Visibility: connectors.VisibilityHidden})
	if err != nil || created.Visibility != connectors.VisibilityHidden {
		t.Fatalf("CreateGroup = %+v, %v", created, err)
	}
	dflt, err := e.conn.CreateGroup(ctx, connectors.GroupSpec{Name: "No visibility given"})
	if err != nil || dflt.Visibility != DefaultVisibility {
		t.Fatalf("CreateGroup(unknown visibility) = %+v, %v; want %s", dflt, err, DefaultVisibility)
	}
	updated, err := e.conn.UpdateGroup(ctx, created.ID, connectors.GroupSpec{Name: "Open club", Description: "", Visibility: connectors.VisibilityPublic})
	if err != nil || updated.Name != "Open club" || updated.Visibility != connectors.VisibilityPublic {
		t.Fatalf("UpdateGroup = %+v, %v", updated, err)
	}
	// Unknown visibility leaves it alone.
	if g, err := e.conn.UpdateGroup(ctx, dflt.ID, connectors.GroupSpec{Name: "Renamed"}); err != nil || g.Visibility != DefaultVisibility {
		t.Fatalf("UpdateGroup(unknown visibility) = %+v, %v", g, err)
	}

	// More accounts than one add batch: two POSTs.
	for i := range AddMembersBatchSize + 20 {
		e.sim.AddPerson(simkit.Person{Email: fmt.Sprintf("bulk%03d@example.com", i), First: "Bulk", Last: strconv.Itoa(i)})
	}
	var bulk []string
	for i := range AddMembersBatchSize + 20 {
		a, err := e.conn.FindAccountByEmail(ctx, fmt.Sprintf("bulk%03d@example.com", i))
		if err != nil {
			t.Fatal(err)
		}
		bulk = append(bulk, a.ID)
	}
	before := e.sim.Counter().Count(selfcommunitysim.RouteMembersAdd)
	if err := e.conn.AddMembers(ctx, created.ID, bulk); err != nil {
		t.Fatalf("AddMembers: %v", err)
	}
	if n := e.sim.Counter().Count(selfcommunitysim.RouteMembersAdd) - before; n != 2 {
		t.Fatalf("%d add requests for %d members, want 2", n, len(bulk))
	}
	if err := e.conn.AddMembers(ctx, created.ID, bulk[:3]); err != nil { // already members
		t.Fatalf("AddMembers(existing): %v", err)
	}
	before = e.sim.Counter().Count(selfcommunitysim.RouteMemberRemove)
	if err := e.conn.RemoveMembers(ctx, created.ID, bulk[:5]); err != nil {
		t.Fatalf("RemoveMembers: %v", err)
	}
	if n := e.sim.Counter().Count(selfcommunitysim.RouteMemberRemove) - before; n != 5 {
		t.Fatalf("%d remove requests for 5 members, want 5 (one per call)", n)
	}
	if err := e.conn.RemoveMembers(ctx, created.ID, bulk[:2]); err != nil {
		t.Fatalf("RemoveMembers(absent): %v", err)
	}
	if _, adds, removes := e.sim.Effects().Totals(); adds != len(bulk) || removes != 5 {
		t.Fatalf("effective adds/removes = %d/%d, want %d/5", adds, removes, len(bulk))
	}
	snap := snapshotByID(e.sim)
	if s := snap[created.ID]; s.Name != "Open club" || s.Visibility != "public" || len(s.MemberEmails) != len(bulk)-5 {
		t.Fatalf("simulator holds %+v", s)
	}

	if err := e.conn.DeleteGroup(ctx, created.ID, connectors.DeleteArchive); !errors.Is(err, connectors.ErrUnsupported) {
		t.Fatalf("DeleteGroup(archive) = %v, want ErrUnsupported", err)
	}
	if err := e.conn.DeleteGroup(ctx, created.ID, connectors.DeleteHard); err != nil {
		t.Fatalf("DeleteGroup: %v", err)
	}
	if err := e.conn.DeleteGroup(ctx, created.ID, connectors.DeleteHard); err != nil {
		t.Fatalf("DeleteGroup(already gone): %v", err)
	}
	if _, ok := snapshotByID(e.sim)[created.ID]; ok {
		t.Fatalf("group %s still in the simulator after delete", created.ID)
	}
	if creates, _, _ := e.sim.Effects().Totals(); creates != 2 {
		t.Fatalf("%d effective creates, want 2", creates)
	}

	// Ids that are not SelfCommunity ids never reach a URL.
	if _, err := e.conn.ListMembers(ctx, "../user", func([]connectors.Member) error { return nil }); !errors.Is(err, connectors.ErrPermanent) {
		t.Fatalf("ListMembers(bad id) = %v, want ErrPermanent", err)
	}
}

func TestDuplicateNameIsPermanentWithAPIMessage(t *testing.T) {
	e := newEnv(t, envOptions{})
	e.sim.Seed(simkit.Tenant{Groups: []simkit.TenantGroup{{Name: "Taken"}}})
	before := e.sim.Counter().Count(selfcommunitysim.RouteGroupCreate)
	_, err := e.conn.CreateGroup(t.Context(), connectors.GroupSpec{Name: "Taken", Visibility: connectors.VisibilityPublic})
	if !errors.Is(err, connectors.ErrPermanent) || !strings.Contains(err.Error(), "already exists") || !strings.Contains(err.Error(), "name") {
		t.Fatalf("duplicate create = %v, want ErrPermanent naming the field and the API's message", err)
	}
	if n := e.sim.Counter().Count(selfcommunitysim.RouteGroupCreate) - before; n != 1 {
		t.Fatalf("%d create requests, want 1 (a 400 is not retried)", n)
	}
}

func TestCreateNotRepeatedAfterUnknownOutcomeButPatchIs(t *testing.T) {
	e := newEnv(t, envOptions{})
	e.sim.Seed(simkit.Tenant{Groups: []simkit.TenantGroup{{Name: "G"}}})
	e.sim.Faults().StatusNext(selfcommunitysim.RouteGroupCreate, -1, 502)
	if _, err := e.conn.CreateGroup(t.Context(), connectors.GroupSpec{Name: "New"}); !errors.Is(err, connectors.ErrRetryable) {
		t.Fatalf("create on 502 = %v, want ErrRetryable", err)
	}
	if n := e.sim.Counter().Count(selfcommunitysim.RouteGroupCreate); n != 1 {
		t.Fatalf("%d create attempts after a 502, want 1 (the engine reconciles by name)", n)
	}
	g := collectGroups(t, e.conn)["G"]
	e.sim.Faults().StatusNext(selfcommunitysim.RouteGroupPatch, 1, 503)
	if _, err := e.conn.UpdateGroup(t.Context(), g.ID, connectors.GroupSpec{Name: "G2"}); err != nil {
		t.Fatalf("update after one 503: %v", err)
	}
	if n := e.sim.Counter().Count(selfcommunitysim.RouteGroupPatch); n != 2 {
		t.Fatalf("%d patch attempts, want 2", n)
	}
}

// TestManagerOnlyWrites: a JWT for a plain user may write the group it manages and nothing
// else; the refusal is ErrUnauthorized with the API's message.
func TestManagerOnlyWrites(t *testing.T) {
	const jwtSecret = "community-shared-secret"
	e := newEnv(t, envOptions{sim: selfcommunitysim.Options{JWTSecret: jwtSecret, Token: canaryToken}})
	e.sim.Seed(simkit.Tenant{People: []simkit.Person{{Email: "m@example.com"}, {Email: "x@example.com"}},
		Groups: []simkit.TenantGroup{{Name: "Mine", Members: []int32{0}, Managers: []int32{0}}, {Name: "Theirs", Members: []int32{1}}}})
	groups := collectGroups(t, e.conn) // as the admin
	mgr := collectMembers(t, e.conn, groups["Mine"].ID)[0].AccountID

	asManager, err := open(connectors.SystemConfig{Name: "sc-mgr", BaseURL: e.srv.URL, JWTSecret: secret.New(jwtSecret),
		Options: map[string]string{"jwt_user_id": mgr}, RateLimit: 1e6, Burst: 100},
		connectors.Deps{HTTPClient: e.srv.Client(), Sleep: e.sl.sleep}, time.Now)
	if err != nil {
		t.Fatal(err)
	}
	if err := asManager.AddMembers(t.Context(), groups["Mine"].ID, []string{"1"}); err != nil {
		t.Fatalf("manager adding to its own group: %v", err)
	}
	err = asManager.AddMembers(t.Context(), groups["Theirs"].ID, []string{"1"})
	if !errors.Is(err, connectors.ErrUnauthorized) || !strings.Contains(err.Error(), "permission") {
		t.Fatalf("non-manager add = %v, want ErrUnauthorized with the API's message", err)
	}
	if _, err := asManager.FindAccountByEmail(t.Context(), "x@example.com"); !errors.Is(err, connectors.ErrUnauthorized) {
		t.Fatalf("account search as a non-admin = %v, want ErrUnauthorized", err)
	}
	if s := snapshotByID(e.sim)[groups["Mine"].ID]; len(s.MemberEmails) != 2 {
		t.Fatalf("group Mine holds %v after the manager's add", s.MemberEmails)
	}
}

func TestJWTMintedReusedAndRefreshed(t *testing.T) {
	const jwtSecret = "s3cret-for-hs256"
	var mu sync.Mutex
	now := time.Date(2026, 11, 23, 10, 0, 0, 0, time.UTC)
	clock := func() time.Time {
		mu.Lock()
		defer mu.Unlock()
		return now
	}
	advance := func(d time.Duration) {
		mu.Lock()
		now = now.Add(d)
		mu.Unlock()
	}
	var tokens []string
	var tokMu sync.Mutex
	sim := selfcommunitysim.New(selfcommunitysim.Options{JWTSecret: jwtSecret, Now: clock})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		tokMu.Lock()
		tokens = append(tokens, strings.TrimPrefix(r.Header.Get("Authorization"), "Bearer "))
		tokMu.Unlock()
		sim.ServeHTTP(w, r)
	}))
	t.Cleanup(srv.Close)
	sim.Seed(simkit.Generate(simkit.GenOptions{Groups: 3, People: 5, MembersPerGroup: 2, Seed: 1}))
	c, err := open(connectors.SystemConfig{Name: "sc-jwt", BaseURL: srv.URL, JWTSecret: secret.New(jwtSecret),
		Options: map[string]string{"jwt_user_id": "1", "jwt_ttl": "10m"}, RateLimit: 1e6, Burst: 100},
		connectors.Deps{HTTPClient: srv.Client()}, clock)
	if err != nil {
		t.Fatal(err)
	}
	collectGroups(t, c)
	collectGroups(t, c)
	advance(8 * time.Minute) // 2m left: still reused
	collectGroups(t, c)
	advance(90 * time.Second) // 30s left, under the margin: replaced
	collectGroups(t, c)
	tokMu.Lock()
	got := slices.Clone(tokens)
	tokMu.Unlock()
	if len(got) != 4 || got[0] != got[1] || got[1] != got[2] || got[2] == got[3] {
		t.Fatalf("tokens across 4 requests reused/refreshed wrongly: %d tokens, distinct pattern %v", len(got),
			[]bool{got[0] == got[1], got[1] == got[2], got[2] == got[3]})
	}
	claims := jwt.MapClaims{}
	if _, err := jwt.NewParser(jwt.WithTimeFunc(clock), jwt.WithJSONNumber()).ParseWithClaims(got[3], claims,
		func(*jwt.Token) (any, error) { return []byte(jwtSecret), nil }); err != nil {
		t.Fatalf("minted token does not verify: %v", err)
	}
	iat, _ := claims["iat"].(json.Number)
	exp, _ := claims["exp"].(json.Number)
	ii, _ := iat.Int64()
	ee, _ := exp.Int64()
	if claims["token_type"] != "access" || claims["user_id"] != json.Number("1") || claims["jti"] == "" || ee-ii != 600 {
		t.Fatalf("claims = %v, want user_id 1, token_type access, a jti, exp = iat + 10m", claims)
	}

	// A token the server considers expired (clocks apart) is refused as unauthorized.
	late, err := open(connectors.SystemConfig{Name: "sc-jwt", BaseURL: srv.URL, JWTSecret: secret.New(jwtSecret),
		Options: map[string]string{"jwt_user_id": "1"}, RateLimit: 1e6, Burst: 100},
		connectors.Deps{HTTPClient: srv.Client()}, func() time.Time { return clock().Add(-time.Hour) })
	if err != nil {
		t.Fatal(err)
	}
	if _, err := late.ListGroups(t.Context(), func([]connectors.Group) error { return nil }); !errors.Is(err, connectors.ErrUnauthorized) {
		t.Fatalf("expired JWT = %v, want ErrUnauthorized", err)
	}
	// A token signed with the wrong secret too, and the secret never shows.
	wrong, err := open(connectors.SystemConfig{Name: "sc-jwt", BaseURL: srv.URL, JWTSecret: secret.New(canaryToken),
		Options: map[string]string{"jwt_user_id": "1"}, RateLimit: 1e6, Burst: 100},
		connectors.Deps{HTTPClient: srv.Client()}, clock)
	if err != nil {
		t.Fatal(err)
	}
	_, err = wrong.ListGroups(t.Context(), func([]connectors.Group) error { return nil })
	if !errors.Is(err, connectors.ErrUnauthorized) || strings.Contains(err.Error(), canaryToken) {
		t.Fatalf("wrong secret = %v, want ErrUnauthorized without the secret", err)
	}
}

func TestUnauthorizedNeverLeaksToken(t *testing.T) {
	e := newEnv(t, envOptions{sim: selfcommunitysim.Options{Token: "the-real-token"}})
	e.sim.Seed(simkit.Generate(simkit.GenOptions{Groups: 2, People: 2}))
	// One 503 first, so the debug log holds a retry line too.
	e.sim.Faults().StatusNext(selfcommunitysim.RouteGroupsSearch, 1, 503)
	l, err := e.conn.ListGroups(t.Context(), func([]connectors.Group) error { return nil })
	if !errors.Is(err, connectors.ErrUnauthorized) || l.Complete {
		t.Fatalf("ListGroups with a wrong token = %+v, %v; want ErrUnauthorized", l, err)
	}
	if n := e.sim.Counter().Count(selfcommunitysim.RouteGroupsSearch); n != 2 {
		t.Fatalf("%d requests, want 2 (the 503 retried, the 401 not)", n)
	}
	logs := e.logText()
	if !strings.Contains(logs, "retrying request") {
		t.Fatalf("debug log lacks the retry line; the leak check would prove nothing: %s", logs)
	}
	if strings.Contains(err.Error(), canaryToken) || strings.Contains(logs, canaryToken) {
		t.Fatalf("token leaked: error %q, logs %s", err, logs)
	}
	if !strings.Contains(err.Error(), "Invalid token") {
		t.Fatalf("error %q lacks the API's message", err)
	}
}

func TestRateLimitWithoutRetryAfterBacksOff(t *testing.T) {
	e := newEnv(t, envOptions{})
	e.sim.Seed(simkit.Generate(simkit.GenOptions{Groups: 2, People: 2}))
	e.sim.Faults().RateLimitNext(selfcommunitysim.RouteMembersAdd, 2, 0)
	g := collectGroups(t, e.conn)
	var id string
	for _, x := range g {
		id = x.ID
	}
	if err := e.conn.AddMembers(t.Context(), id, []string{"1001"}); err != nil {
		t.Fatalf("AddMembers after two bare 429s: %v", err)
	}
	waits := e.sl.waits()
	if len(waits) != 2 || waits[0] <= 0 || waits[1] <= 0 {
		t.Fatalf("waits = %v, want two backoff waits", waits)
	}
}

func TestPaginationGuards(t *testing.T) {
	t.Run("repeated next link", func(t *testing.T) {
		e := newEnv(t, envOptions{page: 2})
		e.sim.Seed(simkit.Generate(simkit.GenOptions{Groups: 7, People: 2}))
		e.sim.RepeatNextLink(selfcommunitysim.RouteGroupsSearch, 1)
		l, err := e.conn.ListGroups(t.Context(), func([]connectors.Group) error { return nil })
		if err == nil || l.Complete || !strings.Contains(err.Error(), "repeats") {
			t.Fatalf("ListGroups over a looping next link = %+v, %v; want an error, incomplete", l, err)
		}
		if n := e.sim.Counter().Count(selfcommunitysim.RouteGroupsSearch); n > 3 {
			t.Fatalf("%d requests before the loop was caught", n)
		}
	})
	t.Run("page cap", func(t *testing.T) {
		e := newEnv(t, envOptions{page: 2})
		e.sim.Seed(simkit.Generate(simkit.GenOptions{Groups: 7, People: 2}))
		e.conn.maxPages = 3
		l, err := e.conn.ListGroups(t.Context(), func([]connectors.Group) error { return nil })
		if err == nil || l.Complete || l.Pages != 3 || !strings.Contains(err.Error(), "exceeds 3 pages") {
			t.Fatalf("ListGroups past the page cap = %+v, %v", l, err)
		}
	})
	t.Run("link to another host refused", func(t *testing.T) {
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			fmt.Fprint(w, `{"count":2,"next":"https://evil.example.net/api/v2/group/search/?offset=1","previous":null,"results":[{"id":1,"name":"a","privacy":"public","visible":true}]}`)
		}))
		t.Cleanup(srv.Close)
		c, err := open(connectors.SystemConfig{Name: "sc", BaseURL: srv.URL, Token: secret.New(canaryToken), RateLimit: 1e6},
			connectors.Deps{HTTPClient: srv.Client()}, time.Now)
		if err != nil {
			t.Fatal(err)
		}
		l, err := c.ListGroups(t.Context(), func([]connectors.Group) error { return nil })
		if !errors.Is(err, connectors.ErrPermanent) || l.Complete || l.Items != 1 || !strings.Contains(err.Error(), "refusing link") {
			t.Fatalf("ListGroups with a foreign next link = %+v, %v", l, err)
		}
	})
	t.Run("empty page linking onwards", func(t *testing.T) {
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			fmt.Fprintf(w, `{"count":9,"next":"http://%s/api/v2/group/search/?offset=%d","previous":null,"results":[]}`, r.Host, len(r.URL.RawQuery))
		}))
		t.Cleanup(srv.Close)
		c, err := open(connectors.SystemConfig{Name: "sc", BaseURL: srv.URL, Token: secret.New(canaryToken), RateLimit: 1e6},
			connectors.Deps{HTTPClient: srv.Client()}, time.Now)
		if err != nil {
			t.Fatal(err)
		}
		l, err := c.ListGroups(t.Context(), func([]connectors.Group) error { return nil })
		if err == nil || l.Complete || !strings.Contains(err.Error(), "empty") {
			t.Fatalf("ListGroups over an empty page with a next link = %+v, %v", l, err)
		}
	})
}

func TestBareArrayListsAccepted(t *testing.T) {
	e := newEnv(t, envOptions{page: 3})
	tn := simkit.Generate(simkit.GenOptions{Groups: 1, People: 20, MembersPerGroup: 11, Seed: 5})
	e.sim.Seed(tn)
	g := collectGroups(t, e.conn)[tn.Groups[0].Name]
	e.sim.BareArrays(selfcommunitysim.RouteMembersList, true)
	before := e.sim.Counter().Count(selfcommunitysim.RouteMembersList)
	if ms := collectMembers(t, e.conn, g.ID); len(ms) != 11 {
		t.Fatalf("bare-array member list gave %d members, want 11", len(ms))
	}
	if n := e.sim.Counter().Count(selfcommunitysim.RouteMembersList) - before; n != 1 {
		t.Fatalf("%d requests for a bare array, want 1", n)
	}
}

// TestBigIDsAndTrickyNamesRoundTrip: ids above 2^53 and names that need escaping survive a
// write and the next read byte-exact.
func TestBigIDsAndTrickyNamesRoundTrip(t *testing.T) {
	const big = 1<<53 + 1
	e := newEnv(t, envOptions{page: 2, sim: selfcommunitysim.Options{GroupIDStart: big, UserIDStart: big + 100}})
	e.sim.Seed(simkit.Generate(simkit.GenOptions{Groups: 1, People: 3, MembersPerGroup: 3}))
	names := []string{`<b>&amp;</b>`, `say "hi" \ 'there'`, "Ünïcødé 日本語 🎉", "tab\there"}
	for _, n := range names {
		g, err := e.conn.CreateGroup(t.Context(), connectors.GroupSpec{Name: n, Description: n})
		if err != nil {
			t.Fatalf("CreateGroup(%q): %v", n, err)
		}
		if id, _ := strconv.ParseUint(g.ID, 10, 64); id <= big {
			t.Fatalf("created id %s, want above 2^53", g.ID)
		}
	}
	groups := collectGroups(t, e.conn)
	for _, n := range names {
		if g, ok := groups[n]; !ok || g.Description != n {
			t.Fatalf("name %q did not round-trip (have %v)", n, slices.Collect(mapsKeys(groups)))
		}
	}
	seeded := groups["Engineering 0000"]
	if seeded.ID != strconv.FormatUint(big, 10) {
		t.Fatalf("seeded group id = %s, want %d byte-exact", seeded.ID, uint64(big))
	}
	ms := collectMembers(t, e.conn, seeded.ID)
	target := groups[names[0]]
	ids := []string{ms[0].AccountID, ms[2].AccountID}
	if err := e.conn.AddMembers(t.Context(), target.ID, ids); err != nil {
		t.Fatalf("AddMembers(big ids): %v", err)
	}
	got := collectMembers(t, e.conn, target.ID)
	if len(got) != 2 || got[0].AccountID != ids[0] || got[1].AccountID != ids[1] {
		t.Fatalf("members = %+v, want %v", got, ids)
	}
	if err := e.conn.RemoveMembers(t.Context(), target.ID, ids[:1]); err != nil {
		t.Fatalf("RemoveMembers(big id): %v", err)
	}
	if got := collectMembers(t, e.conn, target.ID); len(got) != 1 || got[0].AccountID != ids[1] {
		t.Fatalf("members after remove = %+v", got)
	}
}

func mapsKeys[V any](m map[string]V) func(func(string) bool) {
	return func(yield func(string) bool) {
		for k := range m {
			if !yield(k) {
				return
			}
		}
	}
}

func TestCancelStopsAccountLookups(t *testing.T) {
	e := newEnv(t, envOptions{page: 2})
	e.sim.Seed(simkit.Generate(simkit.GenOptions{People: 40}))
	ids := make([]string, 40)
	for i := range ids {
		ids[i] = strconv.Itoa(1001 + i)
	}
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	var after int
	l, err := e.conn.ListAccounts(ctx, ids, func([]connectors.Account) error {
		if after == 0 {
			cancel()
			after = e.sim.Counter().Count(selfcommunitysim.RouteUserGet)
		}
		return nil
	})
	if !errors.Is(err, context.Canceled) || l.Complete {
		t.Fatalf("ListAccounts after cancel = %+v, %v; want context.Canceled, incomplete", l, err)
	}
	if extra := e.sim.Counter().Count(selfcommunitysim.RouteUserGet) - after; extra > DefaultConcurrency {
		t.Fatalf("%d lookups sent after cancellation, want at most the %d in flight", extra, DefaultConcurrency)
	}
}

func TestDefaultsFromPublishedChoices(t *testing.T) {
	c, err := open(connectors.SystemConfig{Name: "sc", BaseURL: "https://c.example.com", Token: secret.New("t")}, connectors.Deps{}, time.Now)
	if err != nil {
		t.Fatal(err)
	}
	if c.pageSize != DefaultPageSize || c.concurrency != DefaultConcurrency {
		t.Fatalf("defaults: page size %d, concurrency %d", c.pageSize, c.concurrency)
	}
	caps := c.Capabilities()
	if caps.ArchiveGroup || caps.WriteRoles || !caps.DeleteGroup || !caps.Visibility || caps.MaxMembersPerWrite != AddMembersBatchSize {
		t.Fatalf("capabilities %+v", caps)
	}
}

// BenchmarkFullPull lists 1,000 groups and their 50,000 memberships through the simulator,
// the request pattern of one pull (one request per page).
func BenchmarkFullPull(b *testing.B) {
	sim := selfcommunitysim.New(selfcommunitysim.Options{Token: canaryToken})
	sim.Seed(simkit.Generate(simkit.GenOptions{Groups: 1000, People: 5000, MembersPerGroup: 50, Seed: 2}))
	srv := httptest.NewServer(sim)
	b.Cleanup(srv.Close)
	c, err := open(connectors.SystemConfig{Name: "sc-bench", BaseURL: srv.URL, Token: secret.New(canaryToken), RateLimit: 1e9, Burst: 1000},
		connectors.Deps{HTTPClient: srv.Client()}, time.Now)
	if err != nil {
		b.Fatal(err)
	}
	ctx := b.Context()
	for b.Loop() {
		var ids []string
		members := 0
		if _, err := c.ListGroups(ctx, func(gs []connectors.Group) error {
			for _, g := range gs {
				ids = append(ids, g.ID)
			}
			return nil
		}); err != nil {
			b.Fatal(err)
		}
		for _, id := range ids {
			if _, err := c.ListMembers(ctx, id, func(ms []connectors.Member) error {
				members += len(ms)
				return nil
			}); err != nil {
				b.Fatal(err)
			}
		}
		if members != 50_000 {
			b.Fatalf("%d members", members)
		}
	}
	b.ReportMetric(float64(sim.Counter().Total())/float64(b.N), "requests/op")
}
