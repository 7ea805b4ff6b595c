package airtable_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/groupsync/groupsync/logctx/logtest"

	"github.com/groupsync/groupsync/connectors"
	"github.com/groupsync/groupsync/connectors/airtable"
	"github.com/groupsync/groupsync/connectors/airtable/airtablesim"
	"github.com/groupsync/groupsync/connectors/simkit"
	"github.com/groupsync/groupsync/secret"
)

func tenant(groups, people, members int) simkit.Tenant {
	return simkit.Generate(simkit.GenOptions{Groups: groups, People: people, MembersPerGroup: members, Seed: 11})
}

func TestOpenValidatesConfig(t *testing.T) {
	valid := func() connectors.SystemConfig {
		return connectors.SystemConfig{
			Name: "at", Kind: connectors.KindAirtable, Token: secret.New("t"),
			Options: map[string]string{airtable.OptionEnterpriseAccountID: "entUBq2RGdihxl3vU"},
		}
	}
	for _, tc := range []struct {
		name   string
		mutate func(*connectors.SystemConfig)
		want   string
	}{
		{"unknown option named", func(c *connectors.SystemConfig) { c.Options["scim_ur1"] = "x"; c.Options["zeta"] = "y" }, "unknown option(s) scim_ur1, zeta"},
		{"enterprise id required", func(c *connectors.SystemConfig) { delete(c.Options, airtable.OptionEnterpriseAccountID) }, "enterprise_account_id is required"},
		{"enterprise id is an id", func(c *connectors.SystemConfig) { c.Options[airtable.OptionEnterpriseAccountID] = "ent/../x" }, "letters and digits"},
		{"token required", func(c *connectors.SystemConfig) { c.Token = secret.Value{} }, "token is required"},
		{"no basic auth", func(c *connectors.SystemConfig) { c.Password = secret.New("p") }, "only token is used"},
		{"scim url absolute", func(c *connectors.SystemConfig) { c.Options[airtable.OptionSCIMURL] = "/scim/v2" }, "scim_url"},
		{"base url absolute", func(c *connectors.SystemConfig) { c.BaseURL = "ftp://api.airtable.com" }, "base_url"},
		{"page size bounded", func(c *connectors.SystemConfig) { c.PageSize = 500 }, "page_size 500"},
		{"wrong kind", func(c *connectors.SystemConfig) { c.Kind = connectors.KindDevRev }, "kind"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := valid()
			tc.mutate(&cfg)
			_, err := airtable.Open(cfg, connectors.Deps{})
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Open = %v, want an error containing %q", err, tc.want)
			}
		})
	}
	c, err := airtable.Open(valid(), connectors.Deps{})
	if err != nil {
		t.Fatalf("Open(valid): %v", err)
	}
	var logs logtest.Buffer
	fast := valid()
	fast.RateLimit = 60
	if _, err := airtable.Open(fast, connectors.Deps{Logger: slog.New(slog.NewTextHandler(&logs, nil))}); err != nil {
		t.Fatalf("Open(rate_limit 60): %v", err)
	}
	if !strings.Contains(logs.String(), "published limit") {
		t.Fatalf("no warning for a rate over Airtable's published limit; logs: %s", logs.String())
	}
	want := connectors.Capabilities{CreateGroup: true, UpdateGroup: true, DeleteGroup: true, AddMember: true,
		RemoveMember: true, MaxMembersPerWrite: airtable.MaxMembersPerWrite}
	if got := c.Capabilities(); got != want {
		t.Fatalf("Capabilities = %+v, want %+v (no archive, roles, visibility or description in Airtable)", got, want)
	}
	if c.Kind() != connectors.KindAirtable || c.Name() != "at" {
		t.Fatalf("Kind/Name = %s/%s", c.Kind(), c.Name())
	}
}

// TestPullAndWrites drives the whole pull and every write against the simulator and checks
// the simulator's state afterwards.
func TestPullAndWrites(t *testing.T) {
	h := newHarness(t, defaultOptions())
	tn := tenant(3, 10, 4)
	tn.People[tn.Groups[0].Members[1]].Email = " Ada.Upper@Example.COM"
	h.sim.Seed(tn)
	ctx := t.Context()
	il, ok := h.conn.(connectors.InlineMemberLister)
	if !ok {
		t.Fatal("connector does not implement InlineMemberLister")
	}

	// Pull: groups with members inline, one request per group plus one for the ids.
	h.sim.Counter().Reset()
	byName := map[string]connectors.Group{}
	members := map[string][]connectors.Member{}
	l, err := il.ListGroupsWithMembers(ctx, func(g connectors.Group, ms []connectors.Member, complete bool) error {
		if !complete {
			t.Errorf("group %s members reported incomplete", g.Name)
		}
		byName[g.Name] = g
		members[g.ID] = ms
		return nil
	})
	if err != nil || !l.Complete || l.Items != 3 {
		t.Fatalf("ListGroupsWithMembers = %+v, %v; want complete with 3 groups", l, err)
	}
	if n := h.sim.Counter().Count(airtablesim.RouteEnterprise); n != 1 {
		t.Fatalf("%d enterprise requests, want 1", n)
	}
	if n := h.sim.Counter().Count(airtablesim.RouteGroup); n != 3 {
		t.Fatalf("%d group requests for 3 groups, want 3", n)
	}
	g0 := byName[tn.Groups[0].Name]
	if g0.ID == "" || !strings.HasPrefix(g0.ID, "ugp") || len(g0.ID) != 17 {
		t.Fatalf("group id %q, want ugp + 14 characters", g0.ID)
	}
	if g0.CreatedAt.IsZero() || g0.ModifiedAt.IsZero() || g0.State != "active" || g0.Hash == "" {
		t.Fatalf("group fields not filled: %+v", g0)
	}
	if strings.Contains(string(g0.Raw), `"members"`) || !strings.Contains(string(g0.Raw), `"enterpriseAccountId"`) {
		t.Fatalf("raw group %s: want the group's fields without the member list", g0.Raw)
	}
	var sawManager, sawUpper bool
	for _, m := range members[g0.ID] {
		if m.GroupID != g0.ID || !strings.HasPrefix(m.AccountID, "usr") || m.Type != connectors.MemberUser || m.Email == "" {
			t.Fatalf("member %+v lacks group, account, type or email", m)
		}
		sawManager = sawManager || m.Role == "manager"
		sawUpper = sawUpper || m.Email == "ada.upper@example.com"
		if m.Role != "manager" && m.Role != "member" {
			t.Fatalf("role %q", m.Role)
		}
	}
	if !sawManager || !sawUpper {
		t.Fatalf("members of %s: manager seen %v, normalized email seen %v", g0.Name, sawManager, sawUpper)
	}

	// ListGroups and ListMembers agree with the inline listing.
	var listed []connectors.Group
	if l, err := h.conn.ListGroups(ctx, func(p []connectors.Group) error { listed = append(listed, p...); return nil }); err != nil || !l.Complete || l.Items != 3 {
		t.Fatalf("ListGroups = %+v, %v", l, err)
	}
	for _, g := range listed {
		if byName[g.Name].Hash != g.Hash {
			t.Fatalf("group %s hashes differ between listings", g.Name)
		}
	}
	var ms []connectors.Member
	if l, err := h.conn.ListMembers(ctx, g0.ID, func(p []connectors.Member) error { ms = append(ms, p...); return nil }); err != nil || !l.Complete || len(ms) != 4 {
		t.Fatalf("ListMembers = %d members, %+v, %v; want 4", len(ms), l, err)
	}

	// Accounts: all, by ids (unknown ids skipped), by email.
	var all []connectors.Account
	if l, err := h.conn.ListAccounts(ctx, nil, func(p []connectors.Account) error { all = append(all, p...); return nil }); err != nil || !l.Complete || len(all) != 10 {
		t.Fatalf("ListAccounts(nil) = %d accounts, %+v, %v; want 10", len(all), l, err)
	}
	ids := []string{ms[0].AccountID, "usrDoesNotExist00", ms[1].AccountID, ms[0].AccountID}
	var got []connectors.Account
	if _, err := h.conn.ListAccounts(ctx, ids, func(p []connectors.Account) error { got = append(got, p...); return nil }); err != nil || len(got) != 2 {
		t.Fatalf("ListAccounts(ids) = %d accounts, %v; want the 2 existing ones once", len(got), err)
	}
	for _, a := range got {
		if a.Email == "" || a.State != "provisioned" || a.DisplayName == "" || a.Hash == "" || len(a.Raw) == 0 {
			t.Fatalf("account %+v lacks fields", a)
		}
	}
	acc, err := h.conn.FindAccountByEmail(ctx, "ADA.upper@example.com ")
	if err != nil || acc.Email != "ada.upper@example.com" {
		t.Fatalf("FindAccountByEmail = %+v, %v", acc, err)
	}
	if _, err := h.conn.FindAccountByEmail(ctx, "nobody@example.com"); !errors.Is(err, connectors.ErrNotFound) {
		t.Fatalf("FindAccountByEmail(unknown) = %v, want ErrNotFound", err)
	}

	// Writes.
	w := h.writer(t)
	name := `Ops "core" \ <b>&amp;</b> — Zoë`
	h.sim.Counter().Reset()
	created, err := w.CreateGroup(ctx, connectors.GroupSpec{Name: name, Description: "ignored", Visibility: connectors.VisibilityPrivate})
	if err != nil {
		t.Fatalf("CreateGroup: %v", err)
	}
	if created.Name != name || created.CreatedAt.IsZero() || strings.Contains(string(created.Raw), "schemas") {
		t.Fatalf("created = %+v; want the meta API's view of the new group", created)
	}
	if _, err := w.CreateGroup(ctx, connectors.GroupSpec{Name: name}); !errors.Is(err, connectors.ErrPermanent) {
		t.Fatalf("CreateGroup(duplicate name) = %v, want ErrPermanent (409 uniqueness)", err)
	}
	if found, err := h.conn.FindGroupByName(ctx, name); err != nil || found.ID != created.ID || found.Hash != created.Hash {
		t.Fatalf("FindGroupByName = %+v, %v; want %s with the same hash", found, err, created.ID)
	}
	// What the SCIM filter returns is matched by connectors.NormalizeName, the key the
	// planner adopts by (the filter itself ignores case).
	if found, err := h.conn.FindGroupByName(ctx, strings.ToUpper(name)); err != nil || found.ID != created.ID {
		t.Fatalf("FindGroupByName(other case) = %+v, %v; want %s (same name key)", found, err, created.ID)
	}
	if _, err := h.conn.FindGroupByName(ctx, name+" 2"); !errors.Is(err, connectors.ErrNotFound) {
		t.Fatalf("FindGroupByName(another name) = %v, want ErrNotFound", err)
	}

	renamed := name + " (renamed)"
	if g, err := w.UpdateGroup(ctx, created.ID, connectors.GroupSpec{Name: renamed}); err != nil || g.Name != renamed {
		t.Fatalf("UpdateGroup = %+v, %v", g, err)
	}

	var addIDs []string
	for _, a := range all[:4] {
		addIDs = append(addIDs, a.ID)
	}
	before := h.sim.Counter().Count(airtablesim.RouteSCIMPatch)
	if err := w.AddMembers(ctx, created.ID, addIDs); err != nil {
		t.Fatalf("AddMembers: %v", err)
	}
	if err := w.AddMembers(ctx, created.ID, addIDs[:2]); err != nil {
		t.Fatalf("AddMembers(present members): %v", err)
	}
	if n := h.sim.Counter().Count(airtablesim.RouteSCIMPatch) - before; n != 2 {
		t.Fatalf("%d PATCH requests for two add calls, want 2 (one PatchOp per call)", n)
	}
	if n := h.sim.Effects().MaxAdds(); n != 1 {
		t.Fatalf("a member was effectively added %d times", n)
	}
	// Remove two present and one absent member: the PatchOp is refused (noTarget), the
	// connector reads the group and removes the present ones.
	if err := w.RemoveMembers(ctx, created.ID, []string{addIDs[0], addIDs[1]}); err != nil {
		t.Fatalf("RemoveMembers: %v", err)
	}
	if err := w.RemoveMembers(ctx, created.ID, []string{addIDs[1], addIDs[2]}); err != nil {
		t.Fatalf("RemoveMembers(one absent): %v", err)
	}
	if err := w.RemoveMembers(ctx, created.ID, []string{addIDs[0]}); err != nil {
		t.Fatalf("RemoveMembers(all absent): %v", err)
	}
	state := snapshotByID(h.sim, created.ID)
	if state == nil || state.Name != renamed || len(state.MemberEmails) != 1 {
		t.Fatalf("group after writes = %+v; want renamed with 1 member left", state)
	}
	if want := strings.ToLower(all[3].Email); state.MemberEmails[0] != want {
		t.Fatalf("member left = %q, want %q", state.MemberEmails[0], want)
	}

	// Roles are read-only through SCIM: a manager stays a manager when others are added.
	manager := ""
	for id, role := range h.sim.MemberRoles(g0.ID) {
		if role == "manager" {
			manager = id
		}
	}
	if err := w.AddMembers(ctx, g0.ID, []string{all[9].ID, manager}); err != nil {
		t.Fatalf("AddMembers(existing group): %v", err)
	}
	if h.sim.MemberRoles(g0.ID)[manager] != "manager" {
		t.Fatalf("manager %s lost the role after a SCIM add", manager)
	}

	if err := w.AddMembers(ctx, created.ID, make([]string, airtable.MaxMembersPerWrite+1)); !errors.Is(err, connectors.ErrPermanent) {
		t.Fatalf("AddMembers(over the batch cap) = %v, want ErrPermanent", err)
	}
	if err := w.DeleteGroup(ctx, created.ID, connectors.DeleteArchive); !errors.Is(err, connectors.ErrUnsupported) {
		t.Fatalf("DeleteGroup(archive) = %v, want ErrUnsupported", err)
	}
	if err := w.DeleteGroup(ctx, created.ID, connectors.DeleteHard); err != nil {
		t.Fatalf("DeleteGroup: %v", err)
	}
	if snapshotByID(h.sim, created.ID) != nil {
		t.Fatalf("group %s still present after delete", created.ID)
	}
	if err := w.DeleteGroup(ctx, created.ID, connectors.DeleteHard); err != nil {
		t.Fatalf("DeleteGroup(already gone) = %v, want success", err)
	}
	if _, err := h.conn.GetGroup(ctx, created.ID); !errors.Is(err, connectors.ErrNotFound) {
		t.Fatalf("GetGroup(deleted) = %v, want ErrNotFound", err)
	}
	if err := w.AddMembers(ctx, created.ID, addIDs[:1]); !errors.Is(err, connectors.ErrNotFound) {
		t.Fatalf("AddMembers(deleted group) = %v, want ErrNotFound (SCIM 400 invalid group ID)", err)
	}
	if _, err := w.UpdateGroup(ctx, created.ID, connectors.GroupSpec{Name: "x"}); !errors.Is(err, connectors.ErrNotFound) {
		t.Fatalf("UpdateGroup(deleted group) = %v, want ErrNotFound", err)
	}
}

func snapshotByID(sim *airtablesim.Server, id string) *simkit.GroupState {
	for _, s := range sim.Snapshot() {
		if s.ID == id {
			return &s
		}
	}
	return nil
}

func TestRemoveAbsentMemberWhenServerIsLenient(t *testing.T) {
	h := newHarness(t, defaultOptions())
	h.sim.Seed(tenant(1, 4, 2))
	h.sim.SetLenientRemove(true)
	g := h.sim.Snapshot()[0]
	extra := h.sim.AddPerson(simkit.Person{Email: "extra@example.com"})
	before := h.sim.Counter().Total()
	if err := h.writer(t).RemoveMembers(t.Context(), g.ID, []string{extra}); err != nil {
		t.Fatalf("RemoveMembers(absent) = %v", err)
	}
	if n := h.sim.Counter().Total() - before; n != 1 {
		t.Fatalf("%d requests, want 1 when the server accepts an absent remove", n)
	}
}

// TestAccountPaging: ListAccounts(nil) costs one enterprise request and one users request
// per page_size ids.
func TestAccountPaging(t *testing.T) {
	o := defaultOptions()
	for _, n := range []int{0, 1, o.PageSize, o.PageSize + 1, 4*o.PageSize + 3} {
		t.Run(fmt.Sprint(n), func(t *testing.T) {
			h := newHarness(t, o)
			h.sim.Seed(tenant(0, n, 0))
			h.sim.Counter().Reset()
			seen := map[string]bool{}
			l, err := h.conn.ListAccounts(t.Context(), nil, func(p []connectors.Account) error {
				if len(p) > o.PageSize {
					t.Errorf("page of %d accounts, page size %d", len(p), o.PageSize)
				}
				for _, a := range p {
					seen[a.ID] = true
				}
				return nil
			})
			if err != nil || !l.Complete || l.Items != n || len(seen) != n {
				t.Fatalf("ListAccounts = %+v, %v, %d distinct; want complete with %d", l, err, len(seen), n)
			}
			want := (n + o.PageSize - 1) / o.PageSize
			if got := h.sim.Counter().Count(airtablesim.RouteUsers); got != want {
				t.Fatalf("%d users requests for %d accounts, want %d", got, n, want)
			}
			if l.Pages != want+1 {
				t.Fatalf("Pages = %d, want %d (enterprise + users requests)", l.Pages, want+1)
			}
		})
	}
}

// TestListGroupsPages: ListGroups hands groups over in pages of page_size.
func TestListGroupsPages(t *testing.T) {
	o := defaultOptions()
	h := newHarness(t, o)
	h.sim.Seed(tenant(2*o.PageSize+2, 3, 1))
	var sizes []int
	l, err := h.conn.ListGroups(t.Context(), func(p []connectors.Group) error { sizes = append(sizes, len(p)); return nil })
	if err != nil || !l.Complete || l.Items != 2*o.PageSize+2 {
		t.Fatalf("ListGroups = %+v, %v", l, err)
	}
	if !slices.Equal(sizes, []int{o.PageSize, o.PageSize, 2}) {
		t.Fatalf("page sizes %v", sizes)
	}
}

// TestConcurrentFetches: group fetches overlap up to the configured concurrency, and the
// callback is never entered concurrently.
func TestConcurrentFetches(t *testing.T) {
	const conc = 4
	h := newHarness(t, defaultOptions(), func(c *connectors.SystemConfig) { c.Concurrency = conc; c.RateLimit = 50; c.Burst = 20 })
	h.sim.Seed(tenant(24, 6, 2))
	h.sim.Faults().Latency(20 * time.Millisecond)
	var inFlight, peak atomic.Int32
	gauge := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n := inFlight.Add(1)
		defer inFlight.Add(-1)
		for {
			p := peak.Load()
			if n <= p || peak.CompareAndSwap(p, n) {
				break
			}
		}
		h.sim.ServeHTTP(w, r)
	})
	srv := httptest.NewServer(gauge)
	t.Cleanup(srv.Close)
	h.cfg.BaseURL = srv.URL
	h.cfg.Options[airtable.OptionSCIMURL] = srv.URL + airtablesim.SCIMPrefix
	conn := h.open(t, srv.Client())

	var inFn atomic.Int32
	n := 0
	l, err := conn.(connectors.InlineMemberLister).ListGroupsWithMembers(t.Context(), func(connectors.Group, []connectors.Member, bool) error {
		if inFn.Add(1) != 1 {
			t.Error("callback entered concurrently")
		}
		defer inFn.Add(-1)
		n++
		return nil
	})
	if err != nil || !l.Complete || n != 24 {
		t.Fatalf("listing = %+v, %v, %d groups", l, err, n)
	}
	if p := peak.Load(); p < 2 || p > conc {
		t.Fatalf("peak of %d requests in flight, want between 2 and %d", p, conc)
	}
}

func TestListingKeepsUnreadableAndSkipsRepeatedGroups(t *testing.T) {
	h := newHarness(t, defaultOptions())
	h.sim.Seed(tenant(7, 3, 1))
	h.sim.DuplicateGroupIDs(true)
	h.sim.AddDanglingGroupID()
	var ids []string
	l, err := h.conn.ListGroups(t.Context(), func(p []connectors.Group) error {
		for _, g := range p {
			ids = append(ids, g.ID)
		}
		return nil
	})
	// The dangling id (404) is not taken as a group gone: it is unreadable, and the
	// listing incomplete, so the mirror keeps whatever it knew of it.
	if err != nil || l.Complete || len(ids) != 7 || len(l.Unreadable) != 1 {
		t.Fatalf("ListGroups = %+v, %v, %d groups; want the 7 live groups once, the dangling one unreadable, incomplete", l, err, len(ids))
	}
	slices.Sort(ids)
	if len(slices.Compact(ids)) != 7 {
		t.Fatalf("a group was delivered twice: %v", ids)
	}
}

func TestUnauthorizedNeverLeaksToken(t *testing.T) {
	const canary = "patCANARY.0123456789abcdef0123456789abcdef"
	h := newHarness(t, defaultOptions(), func(c *connectors.SystemConfig) { c.Token = secret.New(canary) })
	h.sim.Seed(tenant(2, 3, 1))
	_, l, err := listAll(t.Context(), h.conn)
	if !errors.Is(err, connectors.ErrUnauthorized) || l.Complete {
		t.Fatalf("ListGroups with a wrong token = %+v, %v; want ErrUnauthorized", l, err)
	}
	if !strings.Contains(err.Error(), "AUTHENTICATION_REQUIRED") {
		t.Fatalf("error %q does not carry Airtable's error type", err)
	}
	_, serr := h.conn.FindGroupByName(t.Context(), "x")
	if !errors.Is(serr, connectors.ErrUnauthorized) {
		t.Fatalf("SCIM with a wrong token = %v, want ErrUnauthorized", serr)
	}
	for _, s := range []string{err.Error(), serr.Error(), fmt.Sprintf("%+v %#v", err, h.cfg), h.logs.String()} {
		if strings.Contains(s, canary) || strings.Contains(s, "CANARY") {
			t.Fatalf("token leaked into %q", s)
		}
	}
}

func listAll(ctx context.Context, c connectors.Connector) ([]connectors.Group, connectors.Listing, error) {
	var out []connectors.Group
	l, err := c.ListGroups(ctx, func(p []connectors.Group) error { out = append(out, p...); return nil })
	return out, l, err
}

// TestRateLimitLockout: a 429 anywhere holds every request back for Airtable's 30 s, meta
// and SCIM alike, and the listing then completes.
func TestRateLimitLockout(t *testing.T) {
	h := newHarness(t, defaultOptions())
	h.sim.Seed(tenant(3, 3, 1))
	h.sim.Faults().RateLimitNext(airtablesim.RouteEnterprise, 1, 0)
	gs, l, err := listAll(t.Context(), h.conn)
	if err != nil || !l.Complete || len(gs) != 3 {
		t.Fatalf("ListGroups after a 429 = %+v, %v", l, err)
	}
	if !slices.Contains(h.Waits(), airtable.RateLimitPenalty) {
		t.Fatalf("waits %v, want the 30 s penalty", h.Waits())
	}
	if n := h.sim.Counter().CountStatus(airtablesim.RouteEnterprise, http.StatusTooManyRequests); n != 1 {
		t.Fatalf("%d 429s, want 1", n)
	}
	// A 429 on SCIM is honoured the same way.
	h.sim.Faults().RateLimitNext(airtablesim.RouteSCIMList, 1, 0)
	if _, err := h.conn.FindGroupByName(t.Context(), gs[0].Name); err != nil {
		t.Fatalf("FindGroupByName after a SCIM 429: %v", err)
	}
}

// TestServerLimitLockout: against the simulator's own 30 s lockout, a throttled client
// gives up with ErrRateLimited once the wait exceeds max_retry_wait, never hammering.
func TestServerLimitLockout(t *testing.T) {
	o := defaultOptions()
	o.MaxRetryWait = 10 * time.Second
	h := newHarness(t, o)
	h.sim.Seed(tenant(3, 3, 1))
	h.sim.Faults().Limit(1, 1, 30*time.Second)
	_, l, err := listAll(t.Context(), h.conn)
	if !errors.Is(err, connectors.ErrRateLimited) || l.Complete {
		t.Fatalf("ListGroups under a server lockout = %+v, %v; want ErrRateLimited, incomplete", l, err)
	}
	if total := h.sim.Counter().Total(); total != 2 {
		t.Fatalf("%d requests, want 2 (one allowed, one 429 then give up)", total)
	}
}

func TestBadBodiesOnEnterprise(t *testing.T) {
	for _, truncated := range []bool{false, true} {
		t.Run(fmt.Sprint("truncated=", truncated), func(t *testing.T) {
			h := newHarness(t, defaultOptions())
			h.sim.Seed(tenant(3, 3, 1))
			if truncated {
				h.sim.Faults().TruncateNext(airtablesim.RouteEnterprise, -1)
			} else {
				h.sim.Faults().MalformedNext(airtablesim.RouteEnterprise, -1)
			}
			_, l, err := listAll(t.Context(), h.conn)
			if err == nil || l.Complete || !strings.Contains(err.Error(), "airtable-test") {
				t.Fatalf("ListGroups = %+v, %v; want a named error, incomplete", l, err)
			}
			wantClass := connectors.ErrPermanent
			if truncated {
				wantClass = connectors.ErrRetryable
			}
			if !errors.Is(err, wantClass) {
				t.Fatalf("error %v, want %v", err, wantClass)
			}
		})
	}
}

func TestSCIMStatusAsString(t *testing.T) {
	h := newHarness(t, defaultOptions())
	h.sim.Seed(tenant(1, 3, 1))
	h.sim.SetSCIMStatusAsString(true)
	err := h.writer(t).AddMembers(t.Context(), "ugpDoesNotExist00", []string{"usrX"})
	if !errors.Is(err, connectors.ErrNotFound) || !strings.Contains(err.Error(), "invalid group ID") {
		t.Fatalf("AddMembers(unknown group) = %v, want ErrNotFound with the API's detail", err)
	}
}

// TestSCIMOnAnotherHost: with SCIM on a different host the connector uses two clients
// and still reads and writes.
func TestSCIMOnAnotherHost(t *testing.T) {
	h := newHarness(t, defaultOptions())
	h.sim.Seed(tenant(1, 3, 1))
	other := httptest.NewServer(h.sim) // same state, different host:port
	t.Cleanup(other.Close)
	h.cfg.Options[airtable.OptionSCIMURL] = other.URL + airtablesim.SCIMPrefix
	conn := h.open(t, h.srv.Client())
	g, err := conn.(connectors.Writer).CreateGroup(t.Context(), connectors.GroupSpec{Name: "elsewhere"})
	if err != nil || g.CreatedAt.IsZero() {
		t.Fatalf("CreateGroup via the other host = %+v, %v", g, err)
	}
	if found, err := conn.FindGroupByName(t.Context(), "elsewhere"); err != nil || found.ID != g.ID {
		t.Fatalf("FindGroupByName = %+v, %v", found, err)
	}
}

func TestNamesRoundTripThroughWrites(t *testing.T) {
	h := newHarness(t, defaultOptions())
	h.sim.Seed(tenant(0, 1, 0))
	w := h.writer(t)
	for _, name := range []string{`<b>&amp;</b>`, `say "hi" \o/`, "Ünïcødé 日本語 \u200f", `a\"b`, "tab\there"} {
		g, err := w.CreateGroup(t.Context(), connectors.GroupSpec{Name: name})
		if err != nil {
			t.Fatalf("CreateGroup(%q): %v", name, err)
		}
		if g.Name != name {
			t.Fatalf("created name %q, want %q", g.Name, name)
		}
		found, err := h.conn.FindGroupByName(t.Context(), name)
		if err != nil || found.ID != g.ID || found.Name != name {
			t.Fatalf("FindGroupByName(%q) = %+v, %v", name, found, err)
		}
	}
}

func TestCancellationStopsWorkers(t *testing.T) {
	h := newHarness(t, defaultOptions())
	h.sim.Seed(tenant(30, 3, 1))
	h.sim.Faults().Latency(5 * time.Millisecond)
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	var once sync.Once
	l, err := h.conn.(connectors.InlineMemberLister).ListGroupsWithMembers(ctx, func(connectors.Group, []connectors.Member, bool) error {
		once.Do(cancel)
		return nil
	})
	if !errors.Is(err, context.Canceled) || l.Complete {
		t.Fatalf("listing after cancel = %+v, %v", l, err)
	}
	if n := h.sim.Counter().Count(airtablesim.RouteGroup); n > 1+airtable.DefaultConcurrency+1 {
		t.Fatalf("%d group requests after cancelling on the first group", n)
	}
}

// BenchmarkListGroupsWithMembers pulls 1,000 groups of 50 members from the simulator with
// the limiter opened up, to measure the connector's own cost per group.
func BenchmarkListGroupsWithMembers(b *testing.B) {
	sim := airtablesim.New(airtablesim.Options{})
	sim.Seed(simkit.Generate(simkit.GenOptions{Groups: 1000, People: 5000, MembersPerGroup: 50, Seed: 1}))
	srv := httptest.NewServer(sim)
	b.Cleanup(srv.Close)
	conn, err := airtable.Open(connectors.SystemConfig{
		Name: "bench", BaseURL: srv.URL, Token: secret.New(sim.Token()), RateLimit: 1e6, Burst: 1000,
		Options: map[string]string{airtable.OptionEnterpriseAccountID: sim.EnterpriseID(), airtable.OptionSCIMURL: srv.URL + airtablesim.SCIMPrefix},
	}, connectors.Deps{HTTPClient: srv.Client()})
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		members := 0
		l, err := conn.(connectors.InlineMemberLister).ListGroupsWithMembers(b.Context(), func(_ connectors.Group, ms []connectors.Member, _ bool) error {
			members += len(ms)
			return nil
		})
		if err != nil || !l.Complete || members != 50_000 {
			b.Fatalf("listing %+v, %v, %d members", l, err, members)
		}
	}
}

type labelRecorder struct {
	mu     sync.Mutex
	labels map[string]int
}

func (r *labelRecorder) ObserveRequest(_, endpoint string, _ int, _ time.Duration) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.labels[endpoint]++
}

func (r *labelRecorder) ObserveRetry(string, string, time.Duration, bool) {}

// TestMetricLabelsAreRouteTemplates: every request is observed under a route template (the
// simulator's own labels), never with an id in it.
func TestMetricLabelsAreRouteTemplates(t *testing.T) {
	h := newHarness(t, defaultOptions())
	h.sim.Seed(tenant(2, 4, 2))
	rec := &labelRecorder{labels: map[string]int{}}
	conn, err := airtable.Open(h.cfg, connectors.Deps{HTTPClient: h.srv.Client(), Observer: rec, Sleep: h.sleep})
	if err != nil {
		t.Fatal(err)
	}
	ctx := t.Context()
	gs, _, err := listAll(ctx, conn)
	if err != nil {
		t.Fatal(err)
	}
	w := conn.(connectors.Writer)
	g, err := w.CreateGroup(ctx, connectors.GroupSpec{Name: "metrics"})
	if err != nil {
		t.Fatal(err)
	}
	acc, err := conn.FindAccountByEmail(ctx, "user000001@example.com")
	if err != nil {
		t.Fatal(err)
	}
	for _, step := range []error{
		w.AddMembers(ctx, g.ID, []string{acc.ID}),
		w.RemoveMembers(ctx, g.ID, []string{acc.ID}),
		w.RemoveMembers(ctx, g.ID, []string{acc.ID}), // absent: noTarget, then a SCIM read
		w.DeleteGroup(ctx, g.ID, connectors.DeleteHard),
	} {
		if step != nil {
			t.Fatal(step)
		}
	}
	if _, err := conn.FindGroupByName(ctx, gs[0].Name); err != nil {
		t.Fatal(err)
	}
	routes := map[string]bool{}
	for _, r := range []string{airtablesim.RouteEnterprise, airtablesim.RouteUsers, airtablesim.RouteGroup, airtablesim.RouteSCIMList,
		airtablesim.RouteSCIMCreate, airtablesim.RouteSCIMGet, airtablesim.RouteSCIMPatch, airtablesim.RouteSCIMDelete} {
		routes[r] = true
	}
	rec.mu.Lock()
	defer rec.mu.Unlock()
	for label := range rec.labels {
		if !routes[label] {
			t.Errorf("request observed under %q, not a route template", label)
		}
		delete(routes, label)
	}
	if len(routes) != 0 {
		t.Errorf("routes never observed: %v", routes)
	}
	for label, n := range rec.labels {
		if got := h.sim.Counter().Count(label); got != n {
			t.Errorf("%s: connector observed %d requests, simulator counted %d", label, n, got)
		}
	}
}

// TestSCIMAddTakesEitherMembersForm: the connector sends Airtable's documented form (one add
// per member, a single object value) and, against a server that takes only RFC 7644's array,
// falls back to it once and keeps it; both servers end with the members added.
func TestSCIMAddTakesEitherMembersForm(t *testing.T) {
	for _, form := range []string{airtablesim.MemberValueObject, airtablesim.MemberValueArray} {
		t.Run(form, func(t *testing.T) {
			h := newHarness(t, defaultOptions())
			h.sim.SetMemberValue(form)
			h.sim.Seed(tenant(1, 6, 0))
			ctx := t.Context()
			var gid string
			if _, err := h.conn.ListGroups(ctx, func(gs []connectors.Group) error { gid = gs[0].ID; return nil }); err != nil {
				t.Fatal(err)
			}
			var ids []string
			if _, err := h.conn.ListAccounts(ctx, nil, func(as []connectors.Account) error {
				for _, a := range as {
					ids = append(ids, a.ID)
				}
				return nil
			}); err != nil {
				t.Fatal(err)
			}
			for _, batch := range [][]string{ids[:3], ids[3:]} {
				if err := h.conn.(connectors.Writer).AddMembers(ctx, gid, batch); err != nil {
					t.Fatalf("add against a server taking the %s form: %v", form, err)
				}
			}
			want := 2
			if form == airtablesim.MemberValueArray {
				want = 3 // the first batch is refused once in the documented form
			}
			if n := h.sim.Counter().Count(airtablesim.RouteSCIMPatch); n != want {
				t.Fatalf("%d PATCH calls, want %d", n, want)
			}
			if _, adds, _ := h.sim.Effects().Totals(); adds != len(ids) {
				t.Fatalf("%d members added, want %d", adds, len(ids))
			}
		})
	}
}
