package scim_test

// The interop scenario, driven against each SCIM server nobody here wrote:
// github.com/elimity-com/scim (interop_elimity_test.go) and SCIMMY
// (interop_scimmy_test.go). A peer starts empty and is seeded over SCIM itself, so the
// scenario depends on nothing but the protocol. Where a peer deviates from RFC 7644 its
// quirks say so and the scenario expects the deviation, rather than the connector bending
// to it: a peer that starts following the RFC fails here, and its quirk goes.

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"testing"

	"github.com/groupsync/groupsync/connectors"
	"github.com/groupsync/groupsync/connectors/scim"
	"github.com/groupsync/groupsync/secret"
)

// peer is a running SCIM service provider the scenario talks to.
type peer struct {
	name   string
	base   string // the SCIM base URL (…/v2)
	token  string
	client *http.Client
	quirks quirks
}

// quirks are a peer's known departures from RFC 7644 that the connector can observe.
type quirks struct {
	// eqCaseExact: `eq` compares strings exactly even for attributes the schema declares
	// caseExact false (userName, emails.value: RFC 7643 §4.1, RFC 7644 §3.4.2.2), so a
	// filtered look-up misses an address stored with capitals.
	eqCaseExact bool
	// escapes: what a filter string with RFC 7644's JSON escapes (`\"`) does.
	escapes escapeQuirk
}

type escapeQuirk int

const (
	escapesDecoded escapeQuirk = iota // as RFC 7644 §3.4.2.2 says: the name matches
	escapesKept                       // backslashes kept: the filter matches nothing
	escapesRefused                    // 400 invalidFilter: the connector scans instead
)

// do sends one request to the peer with its token and decodes the JSON answer (nil for
// an empty body).
func (p peer) do(t *testing.T, method, path string, body any) (int, map[string]any) {
	t.Helper()
	var rd *bytes.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			t.Fatalf("%s %s: %v", method, path, err)
		}
		rd = bytes.NewReader(b)
	} else {
		rd = bytes.NewReader(nil)
	}
	req, err := http.NewRequestWithContext(t.Context(), method, p.base+path, rd)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	req.Header.Set("Authorization", "Bearer "+p.token)
	req.Header.Set("Content-Type", "application/scim+json")
	resp, err := p.client.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	var out map[string]any
	if err := json.NewDecoder(resp.Body).Decode(&out); err != nil && resp.StatusCode != http.StatusNoContent {
		t.Fatalf("%s %s: %d, %v", method, path, resp.StatusCode, err)
	}
	return resp.StatusCode, out
}

// get is do for a GET that must succeed.
func (p peer) get(t *testing.T, path string) map[string]any {
	t.Helper()
	status, out := p.do(t, http.MethodGet, path, nil)
	if status != http.StatusOK {
		t.Fatalf("GET %s: %d %v", path, status, out)
	}
	return out
}

// create POSTs a resource and returns its id.
func (p peer) create(t *testing.T, path string, body map[string]any) string {
	t.Helper()
	status, out := p.do(t, http.MethodPost, path, body)
	id, _ := out["id"].(string)
	if status != http.StatusCreated || id == "" {
		t.Fatalf("POST %s: %d %v", path, status, out)
	}
	return id
}

const (
	userSchema  = "urn:ietf:params:scim:schemas:core:2.0:User"
	groupSchema = "urn:ietf:params:scim:schemas:core:2.0:Group"
)

// seed creates four users (the first with capitals in its address, the last inactive)
// and five groups "Team i", each with user i%4 as its member; it returns the user ids.
func (p peer) seed(t *testing.T) []string {
	t.Helper()
	var ids []string
	for i, email := range []string{"Ada@Example.com", "grace@example.com", "alan@example.com", "edsger@example.com"} {
		ids = append(ids, p.create(t, "/Users", map[string]any{"schemas": []string{userSchema},
			"userName": email, "displayName": fmt.Sprintf("Person %d", i), "active": i != 3,
			"emails": []any{map[string]any{"value": email, "primary": true, "type": "work"}}}))
	}
	for i := range 5 {
		p.create(t, "/Groups", map[string]any{"schemas": []string{groupSchema},
			"displayName": fmt.Sprintf("Team %d", i), "members": []any{map[string]any{"value": ids[i%len(ids)]}}})
	}
	return ids
}

// open opens the connector against the peer; options as in the config's `options`.
func (p peer) open(t *testing.T, pageSize int, options map[string]string) connectors.Connector {
	t.Helper()
	c, err := scim.Open(connectors.SystemConfig{Name: p.name, Kind: connectors.KindSCIM, BaseURL: p.base,
		Token: secret.New(p.token), PageSize: pageSize, RateLimit: 1000, Burst: 50, MaxAttempts: 2, Options: options},
		connectors.Deps{HTTPClient: p.client})
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	return c
}

// interopReads: listing to the end across pages the peer caps at 2 (it must announce
// filter.maxResults 2), accounts with their emails and states, filtered look-ups.
func interopReads(t *testing.T, p peer) {
	ids := p.seed(t)
	c := p.open(t, 10, nil)
	ctx := t.Context()
	var names []string
	l, err := c.ListGroups(ctx, func(page []connectors.Group) error {
		for _, g := range page {
			names = append(names, g.Name)
		}
		return nil
	})
	if err != nil || !l.Complete || len(names) != 5 || l.Pages != 3 {
		t.Fatalf("ListGroups = %+v, %v, %v; want 5 groups in 3 pages of the peer's maxResults 2, complete", l, names, err)
	}
	var accs []connectors.Account
	if l, err := c.ListAccounts(ctx, nil, func(page []connectors.Account) error { accs = append(accs, page...); return nil }); err != nil || !l.Complete || len(accs) != 4 {
		t.Fatalf("ListAccounts = %+v, %d, %v", l, len(accs), err)
	}
	if accs[0].Email != "ada@example.com" || accs[3].State != "inactive" || accs[0].State != "active" {
		t.Fatalf("accounts = %+v", accs)
	}
	findMixedCaseEmail(t, p, c, ids[0])
	g, err := c.FindGroupByName(ctx, "Team 3")
	if err != nil || g.Name != "Team 3" {
		t.Fatalf("FindGroupByName = %+v, %v", g, err)
	}
	if got := members(t, c, g.ID); !slices.Equal(got, ids[3:4]) {
		t.Fatalf("ListMembers(Team 3) = %v, want %v", got, ids[3:4])
	}
}

// findMixedCaseEmail looks up "Ada@Example.com" as "ADA@example.com": userName and
// emails.value are caseExact false, so a filter finds it, except on a peer whose eq is
// case-exact, where only a scan (filter: off) does.
func findMixedCaseEmail(t *testing.T, p peer, c connectors.Connector, want string) {
	t.Helper()
	a, err := c.FindAccountByEmail(t.Context(), "ADA@example.com")
	if p.quirks.eqCaseExact {
		if !errors.Is(err, connectors.ErrNotFound) {
			t.Fatalf("FindAccountByEmail through %s's case-exact eq = %+v, %v; it now honours caseExact: drop the quirk", p.name, a, err)
		}
		a, err = p.open(t, 10, map[string]string{scim.OptionFilter: "off"}).FindAccountByEmail(t.Context(), "ADA@example.com")
	}
	if err != nil || a.ID != want {
		t.Fatalf("FindAccountByEmail = %+v, %v; want %s", a, err, want)
	}
}

func members(t *testing.T, c connectors.Connector, groupID string) []string {
	t.Helper()
	var got []string
	if _, err := c.ListMembers(t.Context(), groupID, func(page []connectors.Member) error {
		for _, m := range page {
			got = append(got, m.AccountID)
		}
		return nil
	}); err != nil {
		t.Fatalf("ListMembers(%s): %v", groupID, err)
	}
	return got
}

// interopWrites: create, duplicate create, look-up of a name with quotes, rename, add
// and remove members (one absent), delete, delete again.
func interopWrites(t *testing.T, p peer) {
	ids := p.seed(t)
	c := p.open(t, 0, nil)
	w := c.(connectors.Writer)
	ctx := t.Context()
	name := `Créé "by" <groupsync> & co`
	g, err := w.CreateGroup(ctx, connectors.GroupSpec{Name: name})
	if err != nil || g.ID == "" || g.Name != name {
		t.Fatalf("CreateGroup = %+v, %v", g, err)
	}
	if _, err := w.CreateGroup(ctx, connectors.GroupSpec{Name: name}); !errors.Is(err, connectors.ErrNameTaken) {
		t.Fatalf("second CreateGroup = %v, want ErrNameTaken (409 uniqueness)", err)
	}
	findQuotedName(t, p, c, name, g.ID)
	renamed, err := w.UpdateGroup(ctx, g.ID, connectors.GroupSpec{Name: name + " (renamed)"})
	if err != nil || renamed.Name != name+" (renamed)" {
		t.Fatalf("UpdateGroup = %+v, %v", renamed, err)
	}
	writeMembers(t, w, c, g.ID, ids)
	if err := w.DeleteGroup(ctx, g.ID, connectors.DeleteHard); err != nil {
		t.Fatalf("DeleteGroup: %v", err)
	}
	if _, err := c.GetGroup(ctx, g.ID); !errors.Is(err, connectors.ErrNotFound) {
		t.Fatalf("GetGroup after delete = %v, want ErrNotFound", err)
	}
	if err := w.DeleteGroup(ctx, g.ID, connectors.DeleteHard); err != nil {
		t.Fatalf("DeleteGroup of a deleted group = %v, want success (404 is the outcome asked for)", err)
	}
}

// writeMembers adds three members (then one again), removes one present and one absent
// member (RFC 7644 §3.5.2.2 lets the peer answer noTarget; the connector copes either
// way), and checks the two left.
func writeMembers(t *testing.T, w connectors.Writer, c connectors.Connector, groupID string, ids []string) {
	t.Helper()
	ctx := t.Context()
	if err := w.AddMembers(ctx, groupID, ids[:3]); err != nil {
		t.Fatalf("AddMembers: %v", err)
	}
	if err := w.AddMembers(ctx, groupID, ids[:1]); err != nil {
		t.Fatalf("AddMembers(already a member): %v", err)
	}
	if err := w.RemoveMembers(ctx, groupID, []string{ids[0], ids[3]}); err != nil {
		t.Fatalf("RemoveMembers(one present, one absent): %v", err)
	}
	// Compared as sets: a multi-valued attribute has no order (RFC 7643 §2.4), and the face
	// lists members by user id.
	if got := members(t, c, groupID); !slices.Equal(slices.Sorted(slices.Values(got)), slices.Sorted(slices.Values(ids[1:3]))) {
		t.Fatalf("members = %v, want %v", got, ids[1:3])
	}
}

// findQuotedName looks up a name with quotes, which the connector sends with RFC 7644's
// JSON escapes, and expects what the peer's escapes quirk says; the operator's way round a
// peer that does not decode them is `filter: off` (look-ups scan the listing), which must
// find the group.
func findQuotedName(t *testing.T, p peer, c connectors.Connector, name, wantID string) {
	t.Helper()
	found, err := c.FindGroupByName(t.Context(), name)
	switch p.quirks.escapes {
	case escapesDecoded:
		if err != nil || found.ID != wantID {
			t.Fatalf("FindGroupByName(%q) = %+v, %v; want %s", name, found, err, wantID)
		}
		return
	case escapesKept:
		if !errors.Is(err, connectors.ErrNotFound) {
			t.Fatalf("FindGroupByName(%q) through %s's filter = %+v, %v; it now decodes filter strings: drop the quirk", name, p.name, found, err)
		}
	case escapesRefused:
		// The refused filter falls back to a scan of the listing, which finds it.
		if err != nil || found.ID != wantID {
			t.Fatalf("FindGroupByName(%q) after %s refused the filter = %+v, %v; want %s found by a scan", name, p.name, found, err, wantID)
		}
	}
	scan := p.open(t, 0, map[string]string{scim.OptionFilter: "off"})
	if found, err := scan.FindGroupByName(t.Context(), name); err != nil || found.ID != wantID {
		t.Fatalf("FindGroupByName(%q) with filter off = %+v, %v", name, found, err)
	}
}
