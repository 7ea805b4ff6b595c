package selfcommunity

import (
	"errors"
	"slices"
	"strings"
	"testing"

	"github.com/groupsync/groupsync/connectors"
	"github.com/groupsync/groupsync/connectors/selfcommunity/selfcommunitysim"
	"github.com/groupsync/groupsync/connectors/simkit"
	"github.com/groupsync/groupsync/secret"
)

func identityTenant() simkit.Tenant {
	return simkit.Tenant{
		People: []simkit.Person{
			{Email: "Ada@Example.com", First: "Ada", ExtID: "501"},
			{Email: "bob@example.com", First: "Bob", ExtID: "502"},
			{Email: "carol@example.com", First: "Carol"}, // not an SSO user: no ext_id
		},
		Groups: []simkit.TenantGroup{{Name: "Team", Members: []int32{0, 1, 2}}},
	}
}

func accountsOf(t *testing.T, c *conn, ids []string) []connectors.Account {
	t.Helper()
	var out []connectors.Account
	l, err := c.ListAccounts(t.Context(), ids, func(as []connectors.Account) error {
		out = append(out, as...)
		return nil
	})
	if err != nil || !l.Complete {
		t.Fatalf("ListAccounts(%v) = %+v, %v", ids, l, err)
	}
	return out
}

func memberIDs(ms []connectors.Member) []string {
	ids := make([]string, 0, len(ms))
	for _, m := range ms {
		ids = append(ids, m.AccountID)
	}
	return ids
}

func emailsOf(as []connectors.Account) []string {
	out := make([]string, 0, len(as))
	for _, a := range as {
		out = append(out, a.Email)
	}
	slices.Sort(out)
	return out
}

// TestEmailsComeFromTheAdminAccountSearch: the User objects carry no email, so resolving
// members' accounts by id goes through the admin account search by username — one search
// per account when the member listing already showed the username, plus one
// `GET /user/{id}/` when it did not.
func TestEmailsComeFromTheAdminAccountSearch(t *testing.T) {
	e := newEnv(t, envOptions{})
	e.sim.Seed(identityTenant())
	g := collectGroups(t, e.conn)["Team"]
	members := collectMembers(t, e.conn, g.ID)
	for _, m := range members {
		if m.Email != "" {
			t.Fatalf("member %+v has an inline email; the member list carries none", m)
		}
	}
	ids := memberIDs(members)
	want := []string{"ada@example.com", "bob@example.com", "carol@example.com"}

	c := e.sim.Counter()
	searches, gets := c.Count(selfcommunitysim.RouteAccountFind), c.Count(selfcommunitysim.RouteUserGet)
	if got := emailsOf(accountsOf(t, e.conn, ids)); !slices.Equal(got, want) {
		t.Fatalf("emails = %q, want %q", got, want)
	}
	if s, g := c.Count(selfcommunitysim.RouteAccountFind)-searches, c.Count(selfcommunitysim.RouteUserGet)-gets; s != 3 || g != 0 {
		t.Fatalf("%d searches and %d user reads for 3 listed members, want 3 and 0 (usernames from the listing)", s, g)
	}

	// A connector that has not listed them reads each user for its username first.
	fresh := newEnv(t, envOptions{})
	fresh.sim.Seed(identityTenant())
	if got := emailsOf(accountsOf(t, fresh.conn, ids)); !slices.Equal(got, want) {
		t.Fatalf("emails without a listing = %q, want %q", got, want)
	}
	fc := fresh.sim.Counter()
	if s, g := fc.Count(selfcommunitysim.RouteAccountFind), fc.Count(selfcommunitysim.RouteUserGet); s != 3 || g != 3 {
		t.Fatalf("%d searches and %d user reads for 3 unlisted accounts, want 3 and 3", s, g)
	}

	// A deleted user is skipped (the engine tombstones it), a blocked one comes back blocked.
	e.sim.DeactivateAccount("bob@example.com")
	e.sim.DeleteAccount("carol@example.com")
	got := accountsOf(t, e.conn, ids)
	if len(got) != 2 || emailsOf(got)[1] != "bob@example.com" {
		t.Fatalf("after a block and a delete: %+v", got)
	}
	for _, a := range got {
		if a.Email == "bob@example.com" && a.State != "blocked" {
			t.Fatalf("blocked account read as %q", a.State)
		}
	}
}

// TestAccountSearchNeedsAnAdmin: a token whose user is not an admin cannot learn emails;
// the error says so, names the route (never the email) and is not taken as "not found".
func TestAccountSearchNeedsAnAdmin(t *testing.T) {
	e := newEnv(t, envOptions{sim: selfcommunitysim.Options{JWTSecret: "jwt-secret"}, cfg: func(c *connectors.SystemConfig) {
		c.Token, c.JWTSecret = secret.Value{}, secret.New("jwt-secret")
		c.Options = map[string]string{OptionJWTUserID: "1001"} // Ada: a member, not an admin
	}})
	e.sim.Seed(identityTenant())
	_, err := e.conn.ListAccounts(t.Context(), []string{"1002"}, func([]connectors.Account) error { return nil })
	if !errors.Is(err, connectors.ErrUnauthorized) || !strings.Contains(err.Error(), "admin") {
		t.Fatalf("ListAccounts as a non-admin = %v, want ErrUnauthorized saying an admin is needed", err)
	}
	_, err = e.conn.FindAccountByEmail(t.Context(), "bob@example.com")
	if errors.Is(err, connectors.ErrNotFound) || err == nil || strings.Contains(err.Error(), "bob@") {
		t.Fatalf("FindAccountByEmail as a non-admin = %v, want an error that is not not-found and holds no email", err)
	}
}

// TestMatchByExtID: keyed by ext_id, members carry their key inline, accounts are read
// without the account search, a target account is found by ext_id and provider, and an
// email key matches nothing.
func TestMatchByExtID(t *testing.T) {
	e := newEnv(t, envOptions{cfg: func(c *connectors.SystemConfig) { c.MatchBy = connectors.MatchByExtID }})
	e.sim.Seed(identityTenant())
	g := collectGroups(t, e.conn)["Team"]
	members := collectMembers(t, e.conn, g.ID)
	var keys []string
	for _, m := range members {
		keys = append(keys, m.Email)
	}
	slices.Sort(keys)
	if want := []string{"", "ext_id:501", "ext_id:502"}; !slices.Equal(keys, want) {
		t.Fatalf("member keys = %q, want %q (carol has no ext_id)", keys, want)
	}
	before := e.sim.Counter().Count(selfcommunitysim.RouteAccountFind)
	if got := emailsOf(accountsOf(t, e.conn, memberIDs(members))); !slices.Equal(got, keys) {
		t.Fatalf("account keys = %q, want %q", got, keys)
	}
	if n := e.sim.Counter().Count(selfcommunitysim.RouteAccountFind) - before; n != 0 {
		t.Fatalf("%d account searches to read accounts keyed by ext_id, want 0", n)
	}
	var all []connectors.Account
	if l, err := e.conn.ListAccounts(t.Context(), nil, func(as []connectors.Account) error {
		all = append(all, as...)
		return nil
	}); err != nil || !l.Complete || len(all) != 4 {
		t.Fatalf("ListAccounts(all) by ext_id = %d accounts, %+v, %v; want 4 (with the admin)", len(all), l, err)
	}
	a, err := e.conn.FindAccountByEmail(t.Context(), connectors.ExtIDKey("502"))
	if err != nil || a.Email != "ext_id:502" || a.DisplayName != "Bob" {
		t.Fatalf("FindAccountByEmail(ext_id:502) = %+v, %v", a, err)
	}
	if _, err := e.conn.FindAccountByEmail(t.Context(), "bob@example.com"); !errors.Is(err, connectors.ErrNotFound) {
		t.Fatalf("an email key on a system matching by ext_id = %v, want ErrNotFound", err)
	}
	// Another provider's ext_ids are other people's.
	other := newEnv(t, envOptions{cfg: func(c *connectors.SystemConfig) {
		c.MatchBy = connectors.MatchByExtID
		c.Options = map[string]string{OptionExtIDProvider: "okta"}
	}})
	other.sim.Seed(identityTenant())
	if _, err := other.conn.FindAccountByEmail(t.Context(), connectors.ExtIDKey("502")); !errors.Is(err, connectors.ErrNotFound) {
		t.Fatalf("ext_id of another provider = %v, want ErrNotFound", err)
	}
}

func TestMatchByOptionsValidated(t *testing.T) {
	base := connectors.SystemConfig{Name: "sc", Kind: connectors.KindSelfCommunity, BaseURL: "https://c.example.com", Token: secret.New("t")}
	for _, tc := range []struct {
		name string
		mod  func(*connectors.SystemConfig)
		want string
	}{
		{"provider without ext_id", func(c *connectors.SystemConfig) { c.Options = map[string]string{OptionExtIDProvider: "okta"} },
			"only applies with match_by: ext_id"},
		{"empty provider", func(c *connectors.SystemConfig) {
			c.MatchBy, c.Options = connectors.MatchByExtID, map[string]string{OptionExtIDProvider: " "}
		}, "is empty"},
		{"unknown match_by", func(c *connectors.SystemConfig) { c.MatchBy = "username" }, `match_by "username"`},
	} {
		cfg := base
		tc.mod(&cfg)
		if _, err := Open(cfg, connectors.Deps{}); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: Open = %v, want %q", tc.name, err, tc.want)
		}
	}
}

// TestHiddenGroupsLeftOutOfTheSearchAreReadByID: the group search leaves out a hidden group
// the token's user is not in (the docs make no exception for admins); ReadUnlisted reads it
// by id, reports it unreadable with a reason when even that fails, and lets a group last
// seen visible that answers 404 count as gone.
func TestHiddenGroupsLeftOutOfTheSearchAreReadByID(t *testing.T) {
	for _, tc := range []struct {
		name     string
		o        selfcommunitysim.Options
		readable bool
	}{{"readable by id", selfcommunitysim.Options{}, true}, {"unreadable by id", selfcommunitysim.Options{HiddenUnreadableByID: true}, false}} {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t, envOptions{sim: tc.o})
			e.sim.Seed(identityTenant())
			hidden, err := e.conn.CreateGroup(t.Context(), connectors.GroupSpec{Name: "Secret", Visibility: connectors.VisibilityHidden})
			if err != nil {
				t.Fatal(err)
			}
			gone, err := e.conn.CreateGroup(t.Context(), connectors.GroupSpec{Name: "Gone", Visibility: connectors.VisibilityPublic})
			if err != nil {
				t.Fatal(err)
			}
			if err := e.conn.DeleteGroup(t.Context(), gone.ID, connectors.DeleteHard); err != nil {
				t.Fatal(err)
			}
			if _, listed := collectGroups(t, e.conn)["Secret"]; listed {
				t.Fatal("the group search listed a hidden group the admin is not in; the docs say it leaves it out")
			}
			var read []connectors.Group
			l, err := e.conn.ReadUnlisted(t.Context(), []connectors.ExpectedGroup{
				{ID: hidden.ID, Visibility: connectors.VisibilityHidden},
				{ID: gone.ID, Visibility: connectors.VisibilityPublic},
				{ID: "987654"}, // named by the configuration only
			}, func(gs []connectors.Group) error {
				read = append(read, gs...)
				return nil
			})
			if err != nil || !l.Complete {
				t.Fatalf("ReadUnlisted = %+v, %v", l, err)
			}
			wantUnreadable := []string{"987654"}
			if tc.readable {
				if len(read) != 1 || read[0].ID != hidden.ID || read[0].Visibility != connectors.VisibilityHidden {
					t.Fatalf("read %+v, want the hidden group", read)
				}
			} else {
				if len(read) != 0 {
					t.Fatalf("read %+v from a server that hides it by id too", read)
				}
				wantUnreadable = []string{hidden.ID, "987654"}
			}
			if !slices.Equal(l.Unreadable, wantUnreadable) {
				t.Fatalf("unreadable = %v, want %v (the deleted visible group is gone, not unreadable)", l.Unreadable, wantUnreadable)
			}
			for _, id := range wantUnreadable {
				if r := l.UnreadableReasons[id]; r == "" {
					t.Fatalf("no reason given for unreadable group %s", id)
				}
			}
			if !tc.readable && !strings.Contains(l.UnreadableReasons[hidden.ID], "hidden") {
				t.Fatalf("reason %q does not say the group is hidden", l.UnreadableReasons[hidden.ID])
			}
		})
	}
}
