package socialcast

import (
	"bytes"
	"context"
	"encoding/base64"
	"errors"
	"log/slog"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/groupsync/groupsync/logctx/logtest"

	"github.com/groupsync/groupsync/connectors"
	"github.com/groupsync/groupsync/connectors/conformance"
	"github.com/groupsync/groupsync/connectors/simkit"
	"github.com/groupsync/groupsync/connectors/socialcast/socialcastsim"
	"github.com/groupsync/groupsync/secret"
)

const (
	testUser     = "admin@example.com"
	testPassword = "s3cret-basic-password"
)

// fakeTime is the client's clock and Sleep in tests: sleeping records the wait and moves
// the clock on at once, so a rate-limit lockout passes without real time passing.
type fakeTime struct {
	mu    sync.Mutex
	now   time.Time
	waits []time.Duration
}

func (f *fakeTime) Now() time.Time {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.now
}

func (f *fakeTime) Sleep(ctx context.Context, d time.Duration) error {
	f.mu.Lock()
	f.waits = append(f.waits, d)
	f.now = f.now.Add(d)
	f.mu.Unlock()
	return ctx.Err()
}

func (f *fakeTime) Waits() []time.Duration {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.waits)
}

type env struct {
	sim  *socialcastsim.Server
	conn *conn
	time *fakeTime
	logs *logtest.Buffer
}

// newEnv opens a connector against a fresh simulator. The client-side rate limit is lifted
// (the limiter runs on real time); everything else is the connector's own behaviour.
func newEnv(t *testing.T, o conformance.Options, so socialcastsim.Options, edit ...func(*connectors.SystemConfig)) *env {
	t.Helper()
	if so.Username == "" && so.Token == "" {
		so.Username, so.Password = testUser, testPassword
	}
	sim := socialcastsim.New(so)
	srv := httptest.NewServer(sim)
	t.Cleanup(srv.Close)
	cfg := connectors.SystemConfig{
		Name:         "socialcast-test",
		Kind:         connectors.KindSocialcast,
		BaseURL:      srv.URL,
		Username:     testUser,
		Password:     secret.New(testPassword),
		RateLimit:    1e6,
		Burst:        100,
		Timeout:      o.Timeout,
		MaxAttempts:  o.MaxAttempts,
		MaxRetryWait: o.MaxRetryWait,
		MaxBodyBytes: o.MaxBodyBytes,
		PageSize:     o.PageSize,
	}
	for _, e := range edit {
		e(&cfg)
	}
	ft := &fakeTime{now: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)}
	logs := &logtest.Buffer{}
	c, err := open(cfg, connectors.Deps{
		HTTPClient: srv.Client(),
		Logger:     slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug})),
		Sleep:      ft.Sleep,
	}, ft.Now)
	if err != nil {
		t.Fatalf("open: %v", err)
	}
	return &env{sim: sim, conn: c, time: ft, logs: logs}
}

func newFixture(t *testing.T, o conformance.Options) *conformance.Fixture {
	e := newEnv(t, o, socialcastsim.Options{})
	// Memberships (documented max 500) stop on a short page: n items take n/size+1 requests
	// (a full last page costs one more, empty, request). The groups list has no documented
	// max, so it stops only on an empty page: ceil(n/size)+1 requests.
	minReqs := func(n int) int { return n/o.PageSize + 1 }
	return &conformance.Fixture{
		Conn:              e.conn,
		Sim:               e.sim,
		GroupsEndpoint:    socialcastsim.RouteGroupsList,
		MembersEndpoint:   socialcastsim.RouteMemberships,
		MinGroupRequests:  untilEmpty(o.PageSize),
		MinMemberRequests: minReqs,
		Waits:             e.time.Waits,
	}
}

func TestConformance(t *testing.T) { conformance.Run(t, newFixture) }

// untilEmpty is the requests of a listing that ends on an empty page: ceil(n/size) pages
// with items, then the empty one.
func untilEmpty(size int) func(n int) int {
	return func(n int) int { return (n+size-1)/size + 1 }
}

func TestEndpointLabelsMatchSimulator(t *testing.T) {
	pairs := [][2]string{
		{endpointGroupsList, socialcastsim.RouteGroupsList},
		{endpointGroupsCreate, socialcastsim.RouteGroupsCreate},
		{endpointGroupShow, socialcastsim.RouteGroupShow},
		{endpointGroupUpdate, socialcastsim.RouteGroupUpdate},
		{endpointGroupDestroy, socialcastsim.RouteGroupDestroy},
		{endpointGroupArchive, socialcastsim.RouteGroupArchive},
		{endpointMemberships, socialcastsim.RouteMemberships},
		{endpointUsersList, socialcastsim.RouteUsersList},
		{endpointUserShow, socialcastsim.RouteUserShow},
		{endpointUsersSearch, socialcastsim.RouteUsersSearch},
	}
	for _, p := range pairs {
		if p[0] != p[1] {
			t.Errorf("connector labels %q, simulator counts %q: metrics and tests would disagree", p[0], p[1])
		}
	}
}

func TestOpenValidation(t *testing.T) {
	base := connectors.SystemConfig{Name: "sc", Kind: connectors.KindSocialcast, BaseURL: "https://demo.socialcast.com",
		Username: "u@example.com", Password: secret.New("pw")}
	for _, tc := range []struct {
		name string
		edit func(*connectors.SystemConfig)
		want string // "" = valid
	}{
		{"basic", func(*connectors.SystemConfig) {}, ""},
		{"bearer", func(c *connectors.SystemConfig) {
			c.Username, c.Password, c.Token = "", secret.Value{}, secret.New("tok")
		}, ""},
		{"both", func(c *connectors.SystemConfig) { c.Token = secret.New("tok") }, "not both"},
		{"none", func(c *connectors.SystemConfig) { c.Username, c.Password = "", secret.Value{} }, "credentials are required"},
		{"user without password", func(c *connectors.SystemConfig) { c.Password = secret.Value{} }, "password is required"},
		{"password without user", func(c *connectors.SystemConfig) { c.Username = "" }, "username is required"},
		{"unknown option", func(c *connectors.SystemConfig) { c.Options = map[string]string{"scim_url": "x"} }, `unknown option "scim_url"`},
		{"bad option value", func(c *connectors.SystemConfig) { c.Options = map[string]string{OptionAccountsByIDLimit: "-1"} }, "positive integer"},
		{"good option", func(c *connectors.SystemConfig) { c.Options = map[string]string{OptionAccountsByIDLimit: "50"} }, ""},
		{"page size over cap", func(c *connectors.SystemConfig) { c.PageSize = 501 }, "page_size 501"},
		{"wrong kind", func(c *connectors.SystemConfig) { c.Kind = connectors.KindDevRev }, "kind"},
		{"jwt secret", func(c *connectors.SystemConfig) { c.JWTSecret = secret.New("x") }, "jwt_secret"},
		{"relative url", func(c *connectors.SystemConfig) { c.BaseURL = "demo.socialcast.com" }, "base_url"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := base
			tc.edit(&cfg)
			c, err := Open(cfg, connectors.Deps{})
			switch {
			case tc.want == "" && err != nil:
				t.Fatalf("Open: %v", err)
			case tc.want == "" && (c == nil || c.Kind() != connectors.KindSocialcast || c.Name() != "sc"):
				t.Fatalf("Open returned %v", c)
			case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
				t.Fatalf("Open error = %v, want it to mention %q", err, tc.want)
			}
			if err != nil && strings.Contains(err.Error(), "pw") {
				t.Fatalf("error %q shows the password", err)
			}
		})
	}
	// A base URL given with /api is the community root with the prefix dropped.
	cfg := base
	cfg.BaseURL = "https://demo.socialcast.com/api/"
	c, err := Open(cfg, connectors.Deps{})
	if err != nil || c.(*conn).api.BaseURL() != "https://demo.socialcast.com" {
		t.Fatalf("base url with /api: %v, %v", c, err)
	}
}

func listAllGroups(t *testing.T, c connectors.Connector) ([]connectors.Group, connectors.Listing) {
	t.Helper()
	var out []connectors.Group
	l, err := c.ListGroups(t.Context(), func(p []connectors.Group) error { out = append(out, p...); return nil })
	if err != nil || !l.Complete {
		t.Fatalf("ListGroups = %+v, %v", l, err)
	}
	return out, l
}

func listAllMembers(t *testing.T, c connectors.Connector, id string) []connectors.Member {
	t.Helper()
	var out []connectors.Member
	l, err := c.ListMembers(t.Context(), id, func(p []connectors.Member) error { out = append(out, p...); return nil })
	if err != nil || !l.Complete {
		t.Fatalf("ListMembers(%s) = %+v, %v", id, l, err)
	}
	return out
}

func listAccounts(t *testing.T, c connectors.Connector, ids []string) ([]connectors.Account, connectors.Listing) {
	t.Helper()
	var out []connectors.Account
	l, err := c.ListAccounts(t.Context(), ids, func(p []connectors.Account) error { out = append(out, p...); return nil })
	if err != nil || !l.Complete {
		t.Fatalf("ListAccounts(%d ids) = %+v, %v", len(ids), l, err)
	}
	return out, l
}

func snapshotByID(s simkit.Sim) map[string]simkit.GroupState {
	out := map[string]simkit.GroupState{}
	for _, g := range s.Snapshot() {
		out[g.ID] = g
	}
	return out
}

// TestPullAndWrites drives the whole pull and every supported write against the simulator
// and checks the simulator's state after each write.
func TestPullAndWrites(t *testing.T) {
	e := newEnv(t, conformance.DefaultOptions(), socialcastsim.Options{})
	ctx := t.Context()
	tn := simkit.Generate(simkit.GenOptions{Groups: 12, People: 40, MembersPerGroup: 6, Seed: 3})
	e.sim.Seed(tn)

	groups, l := listAllGroups(t, e.conn)
	if l.Items != 12 || l.Pages != 4 {
		t.Fatalf("listing = %+v, want 12 items in 3 pages of 5 and the empty page that ends it", l)
	}
	e.sim.SetRuleManaged(groups[1].ID, true)
	if err := e.conn.DeleteGroup(ctx, groups[2].ID, connectors.DeleteArchive); err != nil {
		t.Fatalf("archive: %v", err)
	}
	groups, _ = listAllGroups(t, e.conn)
	snap := snapshotByID(e.sim)
	for i, g := range groups {
		s := snap[g.ID]
		if g.Name != s.Name || g.Description != s.Description || string(g.Visibility) != s.Visibility {
			t.Fatalf("group %d = %+v, simulator holds %+v", i, g, s)
		}
		if wantArchived := i == 2; (g.State == "archived") != wantArchived || (g.State != "archived" && g.State != "active") {
			t.Fatalf("group %d state %q", i, g.State)
		}
		if g.MembershipManaged != (i == 1) {
			t.Fatalf("group %d MembershipManaged = %v", i, g.MembershipManaged)
		}
		if !g.CreatedAt.IsZero() || !g.ModifiedAt.IsZero() || g.Hash == "" || !bytes.Contains(g.Raw, []byte(`"html_name"`)) {
			t.Fatalf("group %d: times %v/%v (Socialcast has none), hash %q, raw %s", i, g.CreatedAt, g.ModifiedAt, g.Hash, g.Raw)
		}
		// Members resolve to accounts whose emails are the simulator's.
		ms := listAllMembers(t, e.conn, g.ID)
		ids := make([]string, 0, len(ms))
		admins := 0
		for _, m := range ms {
			ids = append(ids, m.AccountID)
			if m.Role == "admin" {
				admins++
			}
			if m.Type != connectors.MemberUser || m.GroupID != g.ID {
				t.Fatalf("member %+v", m)
			}
		}
		if admins != 1 {
			t.Fatalf("group %d has %d admins, the tenant made one manager", i, admins)
		}
		accs, _ := listAccounts(t, e.conn, ids)
		var emails []string
		for _, a := range accs {
			emails = append(emails, a.Email)
		}
		slices.Sort(emails)
		if !slices.Equal(emails, s.MemberEmails) {
			t.Fatalf("group %d member emails %v, simulator holds %v", i, emails, s.MemberEmails)
		}
	}
	all, al := listAccounts(t, e.conn, nil)
	if len(all) != 40 || al.Pages != 9 {
		t.Fatalf("ListAccounts(nil) = %d accounts in %+v, want 40 in 9 pages", len(all), al)
	}
	for _, a := range all {
		if a.ID == "" || a.Email == "" || a.DisplayName == "" || a.State != "active" || a.Hash == "" || len(a.Raw) == 0 {
			t.Fatalf("account %+v", a)
		}
	}

	// Create, private, with a name that needs escaping everywhere.
	name := `<b>&amp;</b> "Ünïcode" O'Brien`
	g, err := e.conn.CreateGroup(ctx, connectors.GroupSpec{Name: name, Description: "d1", Visibility: connectors.VisibilityPrivate})
	if err != nil {
		t.Fatalf("CreateGroup: %v", err)
	}
	if s := snapshotByID(e.sim)[g.ID]; g.Name != name || s.Name != name || s.Visibility != "private" || s.Description != "d1" {
		t.Fatalf("created %+v, simulator holds %+v", g, s)
	}
	if found, err := e.conn.FindGroupByName(ctx, name); err != nil || found.ID != g.ID {
		t.Fatalf("FindGroupByName = %+v, %v", found, err)
	}
	// Update: rename, make public, clear the description.
	u, err := e.conn.UpdateGroup(ctx, g.ID, connectors.GroupSpec{Name: name + " 2", Visibility: connectors.VisibilityPublic})
	if err != nil {
		t.Fatalf("UpdateGroup: %v", err)
	}
	if s := snapshotByID(e.sim)[g.ID]; u.Name != name+" 2" || s.Name != name+" 2" || s.Visibility != "public" || s.Description != "" {
		t.Fatalf("updated %+v, simulator holds %+v", u, s)
	}
	// Visibility unknown leaves it alone.
	if _, err := e.conn.UpdateGroup(ctx, g.ID, connectors.GroupSpec{Name: name + " 3"}); err != nil {
		t.Fatalf("UpdateGroup: %v", err)
	}
	if s := snapshotByID(e.sim)[g.ID]; s.Visibility != "public" {
		t.Fatalf("update without visibility changed it to %q", s.Visibility)
	}
	// Archive twice: the second is a no-op success. An archived group refuses updates.
	for range 2 {
		if err := e.conn.DeleteGroup(ctx, g.ID, connectors.DeleteArchive); err != nil {
			t.Fatalf("DeleteGroup(archive): %v", err)
		}
	}
	if s := snapshotByID(e.sim)[g.ID]; !s.Archived {
		t.Fatalf("archived group %+v", s)
	}
	if _, err := e.conn.UpdateGroup(ctx, g.ID, connectors.GroupSpec{Name: "x"}); !errors.Is(err, connectors.ErrPermanent) ||
		!strings.Contains(err.Error(), "Archived groups cannot be changed") {
		t.Fatalf("UpdateGroup(archived) = %v, want the API's refusal", err)
	}
	// Hard delete: archive (already done) then destroy; twice is still a success.
	for range 2 {
		if err := e.conn.DeleteGroup(ctx, g.ID, connectors.DeleteHard); err != nil {
			t.Fatalf("DeleteGroup(hard): %v", err)
		}
	}
	if _, ok := snapshotByID(e.sim)[g.ID]; ok {
		t.Fatalf("group %s still present after a hard delete", g.ID)
	}
	if _, err := e.conn.GetGroup(ctx, g.ID); !errors.Is(err, connectors.ErrNotFound) {
		t.Fatalf("GetGroup(destroyed) = %v, want ErrNotFound", err)
	}
	// A hard delete of an active group archives it first.
	if err := e.conn.DeleteGroup(ctx, groups[0].ID, connectors.DeleteHard); err != nil {
		t.Fatalf("DeleteGroup(hard, active): %v", err)
	}
	if _, ok := snapshotByID(e.sim)[groups[0].ID]; ok {
		t.Fatalf("active group survived a hard delete")
	}

	// Member writes are unsupported and send nothing.
	before := e.sim.Counter().Total()
	if err := e.conn.AddMembers(ctx, groups[3].ID, []string{all[0].ID}); !errors.Is(err, connectors.ErrUnsupported) {
		t.Fatalf("AddMembers = %v, want ErrUnsupported", err)
	}
	if err := e.conn.RemoveMembers(ctx, groups[3].ID, []string{all[0].ID}); !errors.Is(err, connectors.ErrUnsupported) {
		t.Fatalf("RemoveMembers = %v, want ErrUnsupported", err)
	}
	if n := e.sim.Counter().Total() - before; n != 0 {
		t.Fatalf("unsupported member writes sent %d requests", n)
	}
	caps := e.conn.Capabilities()
	if caps.AddMember || caps.RemoveMember || caps.WriteRoles || !caps.CreateGroup || !caps.DeleteGroup || !caps.ArchiveGroup {
		t.Fatalf("capabilities %+v", caps)
	}
	if creates, adds, removes := e.sim.Effects().Totals(); creates != 1 || adds != 0 || removes != 0 {
		t.Fatalf("effects = %d creates, %d adds, %d removes", creates, adds, removes)
	}
}

func TestPagingRequestCounts(t *testing.T) {
	for _, root := range []bool{false, true} {
		for _, n := range []int{0, 1, 5, 6, 23} {
			e := newEnv(t, conformance.DefaultOptions(), socialcastsim.Options{GroupsRoot: root})
			e.sim.Seed(simkit.Generate(simkit.GenOptions{Groups: n, People: 2, Seed: 1}))
			gs, l := listAllGroups(t, e.conn)
			if want := untilEmpty(5)(n); len(gs) != n || l.Pages != want || e.sim.Counter().Count(socialcastsim.RouteGroupsList) != want {
				t.Fatalf("root=%v n=%d: %d groups, %+v, %d requests; want %d requests", root, n, len(gs), l,
					e.sim.Counter().Count(socialcastsim.RouteGroupsList), want)
			}
		}
	}
	// Memberships at the default page size: per_page=500, the documented maximum.
	o := conformance.DefaultOptions()
	o.PageSize = 0
	for _, m := range []int{0, 499, 500, 501, 1200} {
		e := newEnv(t, o, socialcastsim.Options{})
		e.sim.Seed(simkit.Generate(simkit.GenOptions{Groups: 1, People: 1300, MembersPerGroup: m, Seed: 1}))
		gs, _ := listAllGroups(t, e.conn)
		ms := listAllMembers(t, e.conn, gs[0].ID)
		if want := m/500 + 1; len(ms) != m || e.sim.Counter().Count(socialcastsim.RouteMemberships) != want {
			t.Fatalf("m=%d: %d members in %d requests, want %d requests", m, len(ms), e.sim.Counter().Count(socialcastsim.RouteMemberships), want)
		}
	}
}

func TestListAccountsStrategy(t *testing.T) {
	o := conformance.DefaultOptions() // page size 5
	e := newEnv(t, o, socialcastsim.Options{}, func(c *connectors.SystemConfig) {
		c.Options = map[string]string{OptionAccountsByIDLimit: "3"}
	})
	e.sim.Seed(simkit.Generate(simkit.GenOptions{Groups: 0, People: 40, Seed: 1}))
	count := e.sim.Counter()
	byID := func() int { return count.Count(socialcastsim.RouteUserShow) }
	list := func() int { return count.Count(socialcastsim.RouteUsersList) }

	// Few ids: one request each; an unknown id is skipped; duplicates are asked once.
	accs, l := listAccounts(t, e.conn, []string{"7", "3", "999", "7"})
	if len(accs) != 2 || accs[0].ID != "7" || accs[1].ID != "3" || byID() != 3 || list() != 0 || l.Pages != 3 {
		t.Fatalf("3 ids: %d accounts %+v, %d by-id and %d list requests", len(accs), l, byID(), list())
	}
	// Over the limit while the tenant size is unknown: page the list, stop once all found.
	accs, _ = listAccounts(t, e.conn, []string{"1", "2", "3", "9"})
	if len(accs) != 4 || list() != 2 || byID() != 3 {
		t.Fatalf("4 ids: %d accounts, %d list requests (want 2: all found on page 2)", len(accs), list())
	}
	// Ids beyond the tenant: the list is read to its end and the missing one skipped.
	accs, _ = listAccounts(t, e.conn, []string{"1", "2", "3", "999"})
	if len(accs) != 3 || list() != 2+9 {
		t.Fatalf("ids with a missing one: %d accounts, %d list requests", len(accs), list())
	}
	// Now the tenant size is known (40 users: 9 pages): 5 ids are cheaper one by one...
	count.Reset()
	if accs, _ = listAccounts(t, e.conn, []string{"1", "2", "3", "4", "5"}); len(accs) != 5 || byID() != 5 || list() != 0 {
		t.Fatalf("5 ids with 9 pages known: %d by-id, %d list requests", byID(), list())
	}
	// ...and 10 ids cheaper through the list.
	count.Reset()
	ids := []string{"31", "32", "33", "34", "35", "36", "37", "38", "39", "40"}
	if accs, _ = listAccounts(t, e.conn, ids); len(accs) != 10 || byID() != 0 || list() != 8 {
		t.Fatalf("10 ids with 9 pages known: %d accounts, %d by-id, %d list requests", len(accs), byID(), list())
	}
	// A failure in one fetch fails the listing, incomplete.
	count.Reset()
	e.sim.Faults().StatusNext(socialcastsim.RouteUserShow, -1, 400)
	l, err := e.conn.ListAccounts(t.Context(), []string{"1", "2"}, func([]connectors.Account) error { return nil })
	if !errors.Is(err, connectors.ErrPermanent) || l.Complete {
		t.Fatalf("ListAccounts with failing fetches = %+v, %v", l, err)
	}
}

func TestFindAccountByEmail(t *testing.T) {
	e := newEnv(t, conformance.DefaultOptions(), socialcastsim.Options{})
	tn := simkit.Generate(simkit.GenOptions{People: 30, Seed: 1})
	// user000001 is a substring of user0000010..19: the fuzzy search returns them all.
	e.sim.Seed(tn)
	a, err := e.conn.FindAccountByEmail(t.Context(), " USER000019@example.com")
	if err != nil || a.Email != "user000019@example.com" {
		t.Fatalf("FindAccountByEmail = %+v, %v", a, err)
	}
	if _, err := e.conn.FindAccountByEmail(t.Context(), "user00001@example.com"); !errors.Is(err, connectors.ErrNotFound) {
		t.Fatalf("a prefix of several emails matched exactly: %v", err)
	}
}

func TestUnauthorizedDoesNotLeakCredentials(t *testing.T) {
	const canary = "canary-9f8e7d-do-not-leak"
	for _, tc := range []struct {
		name string
		edit func(*connectors.SystemConfig)
	}{
		{"basic", func(c *connectors.SystemConfig) { c.Password = secret.New(canary) }},
		{"bearer", func(c *connectors.SystemConfig) {
			c.Username, c.Password, c.Token = "", secret.Value{}, secret.New(canary)
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t, conformance.DefaultOptions(), socialcastsim.Options{}, tc.edit)
			e.sim.Seed(simkit.Generate(simkit.GenOptions{Groups: 2, People: 2, Seed: 1}))
			_, err := e.conn.GetGroup(t.Context(), "1")
			if !errors.Is(err, connectors.ErrUnauthorized) {
				t.Fatalf("GetGroup with a wrong credential = %v, want ErrUnauthorized", err)
			}
			if !strings.Contains(err.Error(), "HTTP Basic: Access denied.") {
				t.Fatalf("error %q lacks the API's message", err)
			}
			if e.sim.Counter().Count(socialcastsim.RouteGroupShow) != 1 {
				t.Fatalf("a 401 was retried")
			}
			encoded := base64.StdEncoding.EncodeToString([]byte(testUser + ":" + canary))
			for what, s := range map[string]string{"error": err.Error(), "logs": e.logs.String()} {
				if strings.Contains(s, canary) || strings.Contains(s, encoded) {
					t.Fatalf("%s shows the credential: %s", what, s)
				}
			}
		})
	}
}

func TestRetriesAndRateLimits(t *testing.T) {
	o := conformance.DefaultOptions()
	e := newEnv(t, o, socialcastsim.Options{})
	e.sim.Seed(simkit.Generate(simkit.GenOptions{Groups: 3, People: 2, Seed: 1}))
	count := e.sim.Counter()

	// A 429 with Retry-After: the wait is honoured, then the page is fetched.
	e.sim.Faults().RateLimitNext(socialcastsim.RouteGroupsList, 1, 9*time.Second)
	listAllGroups(t, e.conn)
	if w := e.time.Waits(); len(w) != 1 || w[0] < 9*time.Second || w[0] > 10*time.Second || count.CountStatus(socialcastsim.RouteGroupsList, 429) != 1 {
		t.Fatalf("waits %v after a 429 asking 9s", e.time.Waits())
	}
	// A 429 without Retry-After (Socialcast documents none): exponential backoff.
	before := len(e.time.Waits())
	e.sim.Faults().RateLimitNext(socialcastsim.RouteGroupsList, 1, 0)
	listAllGroups(t, e.conn)
	if w := e.time.Waits()[before:]; len(w) != 1 || w[0] <= 0 {
		t.Fatalf("waits %v after a bare 429, want one backoff", w)
	}
	// 5xx below max attempts: retried to success; the HTML error page does not leak into errors.
	count.Reset()
	e.sim.Faults().StatusNext(socialcastsim.RouteGroupsList, o.MaxAttempts-1, 502)
	listAllGroups(t, e.conn)
	if n := count.Count(socialcastsim.RouteGroupsList); n != o.MaxAttempts+1 { // the retried page, then the empty one
		t.Fatalf("%d requests with %d 502s, want %d and the empty page", n, o.MaxAttempts-1, o.MaxAttempts)
	}
	e.sim.Faults().StatusNext(socialcastsim.RouteGroupShow, -1, 500)
	_, err := e.conn.GetGroup(t.Context(), "1")
	if !errors.Is(err, connectors.ErrRetryable) || strings.Contains(err.Error(), "<") ||
		!strings.Contains(err.Error(), "something went wrong (500)") {
		t.Fatalf("GetGroup on 500s = %v", err)
	}
	e.sim.Faults().Clear()
	// A create that fails with a 5xx is not repeated (its outcome is unknown).
	count.Reset()
	e.sim.Faults().StatusNext(socialcastsim.RouteGroupsCreate, 1, 503)
	if _, err := e.conn.CreateGroup(t.Context(), connectors.GroupSpec{Name: "new"}); !errors.Is(err, connectors.ErrRetryable) ||
		count.Count(socialcastsim.RouteGroupsCreate) != 1 {
		t.Fatalf("create on a 503 = %v after %d requests, want one request", err, count.Count(socialcastsim.RouteGroupsCreate))
	}
	// A 422 is permanent, not retried, and carries Rails' field messages.
	count.Reset()
	gs, _ := listAllGroups(t, e.conn)
	_, err = e.conn.CreateGroup(t.Context(), connectors.GroupSpec{Name: strings.ToUpper(gs[0].Name)})
	if !errors.Is(err, connectors.ErrPermanent) || !strings.Contains(err.Error(), "name has already been taken") ||
		count.Count(socialcastsim.RouteGroupsCreate) != 1 {
		t.Fatalf("duplicate create = %v after %d requests", err, count.Count(socialcastsim.RouteGroupsCreate))
	}
	// The engine adopts through FindGroupByName, which matches the normalized name.
	if found, err := e.conn.FindGroupByName(t.Context(), strings.ToUpper(gs[0].Name)); err != nil || found.ID != gs[0].ID {
		t.Fatalf("FindGroupByName(upper-cased) = %+v, %v", found, err)
	}
}

func TestBadBodiesLeaveListingIncomplete(t *testing.T) {
	o := conformance.DefaultOptions()
	e := newEnv(t, o, socialcastsim.Options{})
	e.sim.Seed(simkit.Generate(simkit.GenOptions{Groups: 1, People: 20, MembersPerGroup: 12, Seed: 1}))
	gs, _ := listAllGroups(t, e.conn)
	for _, arm := range []func(){
		func() { e.sim.Faults().MalformedNext(socialcastsim.RouteMemberships, 1) },
		func() { e.sim.Faults().TruncateNext(socialcastsim.RouteMemberships, o.MaxAttempts) },
	} {
		var got int
		calls := 0
		l, err := e.conn.ListMembers(t.Context(), gs[0].ID, func(p []connectors.Member) error {
			got += len(p)
			if calls++; calls == 1 {
				arm() // the second page goes bad
			}
			return nil
		})
		if err == nil || l.Complete || got != 5 || !strings.Contains(err.Error(), "socialcast-test") {
			t.Fatalf("ListMembers over a bad page = %+v (%d members), %v", l, got, err)
		}
	}
}

func TestRepeatedPageIsAnError(t *testing.T) {
	e := newEnv(t, conformance.DefaultOptions(), socialcastsim.Options{})
	e.sim.Seed(simkit.Generate(simkit.GenOptions{Groups: 12, People: 2, Seed: 1}))
	e.sim.IgnorePageParam(true)
	var got int
	l, err := e.conn.ListGroups(t.Context(), func(p []connectors.Group) error { got += len(p); return nil })
	if err == nil || l.Complete || !strings.Contains(err.Error(), "ignores paging") || got != 5 {
		t.Fatalf("ListGroups against a server ignoring page = %+v (%d groups), %v", l, got, err)
	}
	if n := e.sim.Counter().Count(socialcastsim.RouteGroupsList); n != 2 {
		t.Fatalf("%d requests before the loop was caught, want 2", n)
	}
}

func TestCancelledBeforeStartSendsNothing(t *testing.T) {
	e := newEnv(t, conformance.DefaultOptions(), socialcastsim.Options{})
	e.sim.Seed(simkit.Generate(simkit.GenOptions{Groups: 3, People: 3, Seed: 1}))
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	noop := func([]connectors.Account) error { return nil }
	if _, err := e.conn.ListAccounts(ctx, []string{"1", "2", "3"}, noop); !errors.Is(err, context.Canceled) {
		t.Fatalf("ListAccounts(ids) cancelled = %v", err)
	}
	if _, err := e.conn.ListGroups(ctx, func([]connectors.Group) error { return nil }); !errors.Is(err, context.Canceled) {
		t.Fatalf("ListGroups cancelled = %v", err)
	}
	if n := e.sim.Counter().Total(); n != 0 {
		t.Fatalf("%d requests sent on a cancelled context", n)
	}
}

func TestIDsAboveTwoToThe53(t *testing.T) {
	const first = 1<<53 + 1 // 9007199254740993: not representable as a float64
	e := newEnv(t, conformance.DefaultOptions(), socialcastsim.Options{FirstID: first})
	e.sim.Seed(simkit.Generate(simkit.GenOptions{Groups: 2, People: 3, MembersPerGroup: 2, Seed: 1}))
	gs, _ := listAllGroups(t, e.conn)
	if gs[0].ID != "9007199254740996" { // 3 people first, then groups
		t.Fatalf("group id %q", gs[0].ID)
	}
	g, err := e.conn.GetGroup(t.Context(), gs[0].ID)
	if err != nil || g.ID != gs[0].ID {
		t.Fatalf("GetGroup(%s) = %+v, %v", gs[0].ID, g, err)
	}
	ms := listAllMembers(t, e.conn, g.ID)
	accs, _ := listAccounts(t, e.conn, []string{ms[0].AccountID})
	if len(accs) != 1 || accs[0].ID != ms[0].AccountID || !strings.HasPrefix(ms[0].AccountID, "900719925474099") {
		t.Fatalf("member %+v resolved to %+v", ms[0], accs)
	}
}

func TestGetGroupByIDSlug(t *testing.T) {
	e := newEnv(t, conformance.DefaultOptions(), socialcastsim.Options{})
	tn := simkit.Generate(simkit.GenOptions{Groups: 1, People: 1, Seed: 1})
	tn.Groups[0].Name = "privatetest&grøup2"
	e.sim.Seed(tn)
	g, err := e.conn.GetGroup(t.Context(), "2-privatetestgrøup2")
	if err != nil || g.ID != "2" || g.Name != "privatetest&grøup2" {
		t.Fatalf("GetGroup(id-slug) = %+v, %v", g, err)
	}
	if _, err := e.conn.GetGroup(t.Context(), "../users/1"); !errors.Is(err, connectors.ErrPermanent) || e.sim.Counter().Total() != 1 {
		t.Fatalf("GetGroup(path) = %v, want a refusal before any request", err)
	}
}

// BenchmarkListGroups pages 10k groups at per_page 500 (21 requests) through the connector.
func BenchmarkListGroups(b *testing.B) {
	sim := socialcastsim.New(socialcastsim.Options{Username: testUser, Password: testPassword})
	sim.Seed(simkit.Generate(simkit.GenOptions{Groups: 10_000, People: 1000, MembersPerGroup: 5, Seed: 1}))
	srv := httptest.NewServer(sim)
	defer srv.Close()
	c, err := Open(connectors.SystemConfig{Name: "bench", BaseURL: srv.URL, Username: testUser,
		Password: secret.New(testPassword), RateLimit: 1e6, Burst: 100}, connectors.Deps{HTTPClient: srv.Client()})
	if err != nil {
		b.Fatal(err)
	}
	for b.Loop() {
		l, err := c.ListGroups(b.Context(), func([]connectors.Group) error { return nil })
		if err != nil || l.Items != 10_000 || l.Pages != 21 {
			b.Fatalf("%+v, %v", l, err)
		}
	}
}

// BenchmarkListMembers pages one group of 100k members at per_page 500 (201 requests).
func BenchmarkListMembers(b *testing.B) {
	sim := socialcastsim.New(socialcastsim.Options{Username: testUser, Password: testPassword})
	sim.Seed(simkit.Generate(simkit.GenOptions{Groups: 1, People: 100_000, MembersPerGroup: 100_000, Seed: 1}))
	srv := httptest.NewServer(sim)
	defer srv.Close()
	c, err := Open(connectors.SystemConfig{Name: "bench", BaseURL: srv.URL, Username: testUser,
		Password: secret.New(testPassword), RateLimit: 1e6, Burst: 100}, connectors.Deps{HTTPClient: srv.Client()})
	if err != nil {
		b.Fatal(err)
	}
	for b.Loop() {
		l, err := c.ListMembers(b.Context(), "100001", func([]connectors.Member) error { return nil })
		if err != nil || l.Items != 100_000 || l.Pages != 201 {
			b.Fatalf("%+v, %v", l, err)
		}
	}
}

type recordingObserver struct {
	mu        sync.Mutex
	endpoints map[string]int
}

func (o *recordingObserver) ObserveRequest(_, endpoint string, _ int, _ time.Duration) {
	o.mu.Lock()
	o.endpoints[endpoint]++
	o.mu.Unlock()
}

func (o *recordingObserver) ObserveRetry(string, string, time.Duration, bool) {}

// Metrics are labelled with route templates, never ids (which would explode cardinality).
func TestObserverSeesRouteTemplates(t *testing.T) {
	obs := &recordingObserver{endpoints: map[string]int{}}
	sim := socialcastsim.New(socialcastsim.Options{Username: testUser, Password: testPassword})
	sim.Seed(simkit.Generate(simkit.GenOptions{Groups: 2, People: 3, MembersPerGroup: 2, Seed: 1}))
	srv := httptest.NewServer(sim)
	t.Cleanup(srv.Close)
	c, err := Open(connectors.SystemConfig{Name: "obs", BaseURL: srv.URL, Username: testUser, Password: secret.New(testPassword),
		RateLimit: 1e6}, connectors.Deps{HTTPClient: srv.Client(), Observer: obs})
	if err != nil {
		t.Fatal(err)
	}
	gs, _ := listAllGroups(t, c)
	ms := listAllMembers(t, c, gs[0].ID)
	listAccounts(t, c, []string{ms[0].AccountID})
	if _, err := c.GetGroup(t.Context(), gs[1].ID); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{endpointGroupsList, endpointMemberships, endpointUserShow, endpointGroupShow} {
		if obs.endpoints[want] == 0 {
			t.Errorf("no request observed under %q (saw %v)", want, obs.endpoints)
		}
	}
	if len(obs.endpoints) != 4 {
		t.Errorf("observed endpoints %v, want only the four route templates", obs.endpoints)
	}
}

// TestListingsEndOnAnEmptyPage: a server that caps per_page below what was asked (the
// groups and users lists document no maximum) answers full pages shorter than asked; the
// listing goes on to the empty page instead of stopping early and looking complete. Users
// marked inactive (Socialcastr's fixtures) or terminated are read as such.
func TestListingsEndOnAnEmptyPage(t *testing.T) {
	e := newEnv(t, conformance.DefaultOptions(), socialcastsim.Options{ListCap: 3})
	e.sim.Seed(simkit.Generate(simkit.GenOptions{Groups: 11, People: 7, Seed: 2}))
	gs, l := listAllGroups(t, e.conn)
	if len(gs) != 11 || !l.Complete {
		t.Fatalf("groups under a per_page cap of 3: %d of 11, %+v", len(gs), l)
	}
	var n int
	if _, err := e.conn.ListAccounts(t.Context(), nil, func(as []connectors.Account) error { n += len(as); return nil }); err != nil || n != 7 {
		t.Fatalf("users under a per_page cap of 3: %d of 7 (%v)", n, err)
	}
	as, err := decodeUsersPage([]byte(`[{"id": 1, "inactive": true}, {"id": 2, "terminated": true}, {"id": 3, "active": true}]`))
	if err != nil || len(as) != 3 || as[0].State != "inactive" || as[1].State != "terminated" || as[2].State != "active" {
		t.Fatalf("states = %+v (%v)", as, err)
	}
}
