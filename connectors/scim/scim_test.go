package scim_test

import (
	"errors"
	"net/http"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/groupsync/groupsync/connectors"
	"github.com/groupsync/groupsync/connectors/conformance"
	"github.com/groupsync/groupsync/connectors/scim"
	"github.com/groupsync/groupsync/connectors/scim/scimsim"
	"github.com/groupsync/groupsync/connectors/simkit"
	"github.com/groupsync/groupsync/secret"
)

func tenant(groups, people, members int) simkit.Tenant {
	return simkit.Generate(simkit.GenOptions{Groups: groups, People: people, MembersPerGroup: members, Seed: 3})
}

func memberIDs(t *testing.T, h *harness, groupID string) []string {
	t.Helper()
	var ids []string
	l, err := h.conn.ListMembers(t.Context(), groupID, func(p []connectors.Member) error {
		for _, m := range p {
			ids = append(ids, m.AccountID)
		}
		return nil
	})
	if err != nil || !l.Complete {
		t.Fatalf("ListMembers = %+v, %v", l, err)
	}
	slices.Sort(ids)
	return ids
}

func firstGroup(t *testing.T, h *harness) connectors.Group {
	t.Helper()
	var first connectors.Group
	if _, err := h.conn.ListGroups(t.Context(), func(p []connectors.Group) error {
		if first.ID == "" && len(p) > 0 {
			first = p[0]
		}
		return nil
	}); err != nil || first.ID == "" {
		t.Fatalf("ListGroups: %v (first %+v)", err, first)
	}
	return first
}

func accountID(t *testing.T, h *harness, email string) string {
	t.Helper()
	a, err := h.conn.FindAccountByEmail(t.Context(), email)
	if err != nil {
		t.Fatalf("FindAccountByEmail(%s): %v", email, err)
	}
	return a.ID
}

// TestWritesFollowDiscovery: with PATCH announced the writes are PATCHes; with PATCH
// unsupported (ServiceProviderConfig says so) they are PUTs of the whole group, and the
// members a PUT did not mean to touch survive it.
func TestWritesFollowDiscovery(t *testing.T) {
	for _, patch := range []bool{true, false} {
		t.Run(map[bool]string{true: "patch", false: "put"}[patch], func(t *testing.T) {
			h := newHarness(t, conformance.DefaultOptions())
			tn := tenant(1, 6, 3)
			h.sim.Seed(tn)
			h.sim.SetPatch(patch)
			g := firstGroup(t, h)
			before := memberIDs(t, h, g.ID)
			var newcomer string
			for _, p := range tn.People {
				if id := accountID(t, h, p.Email); !slices.Contains(before, id) {
					newcomer = id
				}
			}
			w := h.writer(t)
			if err := w.AddMembers(t.Context(), g.ID, []string{newcomer}); err != nil {
				t.Fatalf("AddMembers: %v", err)
			}
			if err := w.RemoveMembers(t.Context(), g.ID, before[:1]); err != nil {
				t.Fatalf("RemoveMembers: %v", err)
			}
			if _, err := w.UpdateGroup(t.Context(), g.ID, connectors.GroupSpec{Name: "Renamed"}); err != nil {
				t.Fatalf("UpdateGroup: %v", err)
			}
			want := append(slices.Clone(before[1:]), newcomer)
			slices.Sort(want)
			if got := memberIDs(t, h, g.ID); !slices.Equal(got, want) {
				t.Fatalf("members = %v, want %v", got, want)
			}
			patches, puts := h.sim.Counter().Count(scimsim.RouteGroupPatch), h.sim.Counter().Count(scimsim.RouteGroupPut)
			if patch && (patches != 3 || puts != 0) || !patch && (patches != 0 || puts != 3) {
				t.Fatalf("%d PATCH and %d PUT requests with patch supported=%v", patches, puts, patch)
			}
		})
	}
}

// TestPutCarriesIfMatchAndRereadsOn412: where ETags are offered a PUT is conditional, and a
// 412 (someone changed the group since it was read) makes the connector read it again and
// apply its change to the new version, not overwrite it.
func TestPutCarriesIfMatchAndRereadsOn412(t *testing.T) {
	h := newHarness(t, conformance.DefaultOptions(), func(c *connectors.SystemConfig) {
		c.Options = map[string]string{scim.OptionWriteMode: scim.WriteModePut}
	})
	tn := tenant(1, 4, 0)
	h.sim.Seed(tn)
	g := firstGroup(t, h)
	h.sim.Faults().Inject(simkit.Rule{Method: http.MethodPut, Status: http.StatusPreconditionFailed, Times: 1})
	id := accountID(t, h, tn.People[0].Email)
	if err := h.writer(t).AddMembers(t.Context(), g.ID, []string{id}); err != nil {
		t.Fatalf("AddMembers after one 412: %v", err)
	}
	if got := memberIDs(t, h, g.ID); !slices.Equal(got, []string{id}) {
		t.Fatalf("members = %v, want [%s]", got, id)
	}
	if n := h.sim.Counter().Count(scimsim.RouteGroupPut); n != 2 {
		t.Fatalf("%d PUTs, want 2 (the refused one and the one after re-reading)", n)
	}
	if h.sim.Counter().CountStatus(scimsim.RouteGroupPut, http.StatusPreconditionFailed) != 1 {
		t.Fatalf("PUT statuses: want exactly the injected 412")
	}
}

// TestShortListingIsIncomplete: a provider whose listing stops before the totalResults it
// announced yields what it returned, as an incomplete listing: nothing may be tombstoned.
func TestShortListingIsIncomplete(t *testing.T) {
	o := conformance.DefaultOptions()
	h := newHarness(t, o)
	h.sim.Seed(tenant(2*o.PageSize+1, 3, 0))
	h.sim.SetPhantomResults(4)
	n := 0
	l, err := h.conn.ListGroups(t.Context(), func(p []connectors.Group) error {
		n += len(p)
		return nil
	})
	if err != nil || l.Complete || n != 2*o.PageSize+1 {
		t.Fatalf("short listing = %+v, %d groups, %v; want incomplete with every group returned, no error", l, n, err)
	}
	if !strings.Contains(h.logs.String(), "ended short of its totalResults") {
		t.Fatalf("short listing not logged:\n%s", h.logs.String())
	}
}

// TestPagesFollowMaxResults: a provider capping pages below page_size is paged at its cap,
// each page asked for once.
func TestPagesFollowMaxResults(t *testing.T) {
	o := conformance.DefaultOptions()
	o.PageSize = 50
	sim := scimsim.New(scimsim.Options{Token: "tok", MaxResults: 4})
	h2 := harnessOn(t, sim, o)
	sim.Seed(tenant(10, 3, 0))
	var n int
	l, err := h2.conn.ListGroups(t.Context(), func(p []connectors.Group) error { n += len(p); return nil })
	if err != nil || !l.Complete || n != 10 {
		t.Fatalf("listing = %+v, %d groups, %v", l, n, err)
	}
	if reqs := sim.Counter().Count(scimsim.RouteGroups); reqs != 3 {
		t.Fatalf("%d list requests for 10 groups at maxResults 4, want 3", reqs)
	}
}

// TestWithoutServiceProviderConfig: a provider answering /ServiceProviderConfig with 404
// still works with what RFC 7644 requires of everyone: PUT writes and scanned look-ups.
func TestWithoutServiceProviderConfig(t *testing.T) {
	h := newHarness(t, conformance.DefaultOptions())
	tn := tenant(3, 4, 1)
	h.sim.Seed(tn)
	h.sim.SetServiceProviderConfig(false)
	g, err := h.conn.FindGroupByName(t.Context(), tn.Groups[2].Name)
	if err != nil || g.Name != tn.Groups[2].Name {
		t.Fatalf("FindGroupByName = %+v, %v", g, err)
	}
	id := accountID(t, h, tn.People[3].Email)
	if err := h.writer(t).AddMembers(t.Context(), g.ID, []string{id}); err != nil {
		t.Fatalf("AddMembers: %v", err)
	}
	if h.sim.Counter().Count(scimsim.RouteGroupPut) != 1 || h.sim.Counter().Count(scimsim.RouteGroupPatch) != 0 {
		t.Fatalf("without ServiceProviderConfig the write must be a PUT: %v", h.sim.Counter().Snapshot())
	}
	if h.sim.Counter().Count(scimsim.RouteUsers) == 0 {
		t.Fatalf("look-up without filter support did not scan /Users")
	}
}

// TestReadOnlyMembersRefusedUpFront: a Group schema marking members readOnly makes member
// writes ErrUnsupported without a request.
func TestReadOnlyMembersRefusedUpFront(t *testing.T) {
	h := newHarness(t, conformance.DefaultOptions())
	tn := tenant(1, 2, 0)
	h.sim.Seed(tn)
	h.sim.SetMembersReadOnly(true)
	g := firstGroup(t, h)
	err := h.writer(t).AddMembers(t.Context(), g.ID, []string{"anyone"})
	if !errors.Is(err, connectors.ErrUnsupported) {
		t.Fatalf("AddMembers with read-only members = %v, want ErrUnsupported", err)
	}
	if n := h.sim.Counter().Count(scimsim.RouteGroupPatch); n != 0 {
		t.Fatalf("%d PATCH requests sent for a write the schema forbids", n)
	}
}

// TestAccountsFromUsers: userName/emails[primary] give the email, active false the
// inactive state the mirror tombstones, and a deleted user is skipped by id.
func TestAccountsFromUsers(t *testing.T) {
	h := newHarness(t, conformance.DefaultOptions())
	tn := tenant(1, 3, 3)
	h.sim.Seed(tn)
	ids := []string{accountID(t, h, tn.People[0].Email), accountID(t, h, tn.People[1].Email), accountID(t, h, tn.People[2].Email)}
	h.sim.DeactivateAccount(tn.People[0].Email)
	h.sim.DeleteAccount(tn.People[1].Email)
	var got []connectors.Account
	l, err := h.conn.ListAccounts(t.Context(), ids, func(p []connectors.Account) error { got = append(got, p...); return nil })
	if err != nil || !l.Complete || len(got) != 2 {
		t.Fatalf("ListAccounts = %+v, %d accounts, %v; want 2 (the deleted one skipped)", l, len(got), err)
	}
	if got[0].ID != ids[0] || !connectors.AccountInactive(got[0].State) || got[0].Email != tn.People[0].Email {
		t.Fatalf("deactivated user = %+v, want inactive with its email", got[0])
	}
	if got[1].State != "active" || got[1].DisplayName == "" {
		t.Fatalf("active user = %+v", got[1])
	}
}

// TestNoEmailsOrTokensInErrors: a provider's error detail quoting an address reaches
// neither the error nor the logs, and the token is never logged.
func TestNoEmailsOrTokensInErrors(t *testing.T) {
	h := newHarness(t, conformance.DefaultOptions())
	h.sim.Seed(tenant(1, 2, 0))
	h.sim.Faults().Inject(simkit.Rule{Method: http.MethodPost, Path: "/Groups", Status: http.StatusConflict,
		ResponseBody: `{"schemas":["urn:ietf:params:scim:api:messages:2.0:Error"],"status":"409","scimType":"uniqueness","detail":"group owned by alice.secret@example.com exists"}`})
	_, err := h.writer(t).CreateGroup(t.Context(), connectors.GroupSpec{Name: "Taken"})
	if !errors.Is(err, connectors.ErrNameTaken) || !errors.Is(err, connectors.ErrPermanent) {
		t.Fatalf("CreateGroup on 409 = %v, want ErrNameTaken and ErrPermanent", err)
	}
	if _, err := h.conn.FindAccountByEmail(t.Context(), "bob.secret@example.com"); !errors.Is(err, connectors.ErrNotFound) {
		t.Fatalf("FindAccountByEmail(unknown) = %v", err)
	}
	h.sim.Faults().StatusNext(scimsim.RouteUsers, -1, 500)
	_, err2 := h.conn.FindAccountByEmail(t.Context(), "carol.secret@example.com")
	for _, s := range []string{err.Error(), err2.Error(), h.logs.String()} {
		for _, leak := range []string{"alice.secret", "bob.secret", "carol.secret", h.sim.Token()} {
			if strings.Contains(s, leak) {
				t.Fatalf("%q leaked into %q", leak, s)
			}
		}
	}
	if !strings.Contains(err.Error(), "uniqueness") || !strings.Contains(err.Error(), "scim-test") {
		t.Fatalf("error %q does not say what failed and where", err)
	}
}

// TestLenientRemoveAndNoTarget: removing an absent member succeeds whether the provider
// answers noTarget (the RFC) or ignores it.
func TestLenientRemoveAndNoTarget(t *testing.T) {
	for _, lenient := range []bool{false, true} {
		h := newHarness(t, conformance.DefaultOptions())
		tn := tenant(1, 4, 2)
		h.sim.Seed(tn)
		h.sim.SetLenientRemove(lenient)
		g := firstGroup(t, h)
		members := memberIDs(t, h, g.ID)
		outsider := accountID(t, h, tn.People[3].Email)
		if slices.Contains(members, outsider) {
			outsider = accountID(t, h, tn.People[2].Email)
		}
		if err := h.writer(t).RemoveMembers(t.Context(), g.ID, []string{members[0], outsider}); err != nil {
			t.Fatalf("lenient=%v: RemoveMembers(one present, one absent): %v", lenient, err)
		}
		if got := memberIDs(t, h, g.ID); !slices.Equal(got, members[1:]) {
			t.Fatalf("lenient=%v: members = %v, want %v", lenient, got, members[1:])
		}
	}
}

func TestOpenRefusesBadOptions(t *testing.T) {
	base := connectors.SystemConfig{Name: "s", Kind: connectors.KindSCIM, BaseURL: "https://scim.example.com/v2", Token: secret.New("t")}
	for _, tc := range []struct {
		name string
		edit func(*connectors.SystemConfig)
		want string
	}{
		{"unknown option", func(c *connectors.SystemConfig) { c.Options = map[string]string{"colour": "x"} }, "unknown option(s) colour"},
		{"write mode", func(c *connectors.SystemConfig) { c.Options = map[string]string{scim.OptionWriteMode: "post"} }, "write_mode"},
		{"filter", func(c *connectors.SystemConfig) { c.Options = map[string]string{scim.OptionFilter: "on"} }, "filter"},
		{"no token", func(c *connectors.SystemConfig) { c.Token = secret.Value{} }, "token is required"},
		{"no base", func(c *connectors.SystemConfig) { c.BaseURL = "" }, "base_url is required"},
		{"query", func(c *connectors.SystemConfig) { c.BaseURL = "https://x.example.com/scim?token=abc" }, "without query"},
		{"page size", func(c *connectors.SystemConfig) { c.PageSize = scim.MaxPageSize + 1 }, "page_size"},
	} {
		cfg := base
		tc.edit(&cfg)
		_, err := scim.Open(cfg, connectors.Deps{})
		if err == nil || !strings.Contains(err.Error(), tc.want) || strings.Contains(err.Error(), "abc") {
			t.Errorf("%s: Open = %v, want an error naming %q (and no secret)", tc.name, err, tc.want)
		}
	}
}

// TestPutSendsIfMatchOnlyWhereETagsAnnounced: a PUT carries If-Match with the ETag its
// read returned where /ServiceProviderConfig announces ETags, and none where it does not,
// even when the answers carry an ETag header (Express adds a body hash to every answer:
// not a version the provider checks).
func TestPutSendsIfMatchOnlyWhereETagsAnnounced(t *testing.T) {
	for _, etags := range []bool{true, false} {
		sim := scimsim.New(scimsim.Options{Token: "tok"})
		sim.SetETag(etags)
		var mu sync.Mutex
		var sent []string
		wrap := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.Method == http.MethodPut {
				mu.Lock()
				sent = append(sent, r.Header.Get("If-Match"))
				mu.Unlock()
			}
			if !etags {
				w.Header().Set("ETag", `W/"body-hash"`)
			}
			sim.ServeHTTP(w, r)
		})
		h := harnessVia(t, sim, wrap, conformance.DefaultOptions(), func(c *connectors.SystemConfig) {
			c.Options = map[string]string{scim.OptionWriteMode: scim.WriteModePut}
		})
		tn := tenant(1, 2, 0)
		sim.Seed(tn)
		g := firstGroup(t, h)
		want := groupETag(t, h, g.ID)
		if err := h.writer(t).AddMembers(t.Context(), g.ID, []string{accountID(t, h, tn.People[0].Email)}); err != nil {
			t.Fatalf("etags=%v: AddMembers: %v", etags, err)
		}
		if !etags {
			want = ""
		}
		mu.Lock()
		if len(sent) != 1 || sent[0] != want || (etags && want == "") {
			t.Errorf("etags=%v: If-Match on the PUTs = %q, want [%q]", etags, sent, want)
		}
		mu.Unlock()
	}
}

// groupETag reads a group's ETag header as a client would.
func groupETag(t *testing.T, h *harness, id string) string {
	t.Helper()
	req, _ := http.NewRequestWithContext(t.Context(), http.MethodGet, h.srv.URL+scimsim.Prefix+"/Groups/"+id, nil)
	req.Header.Set("Authorization", "Bearer "+h.sim.Token())
	resp, err := h.srv.Client().Do(req)
	if err != nil {
		t.Fatalf("GET group: %v", err)
	}
	resp.Body.Close()
	return resp.Header.Get("ETag")
}
