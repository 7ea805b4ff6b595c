package scimface_test

import (
	"net/http"
	"testing"

	"github.com/groupsync/groupsync/connectors"
	"github.com/groupsync/groupsync/connectors/scim"
	"github.com/groupsync/groupsync/secret"
)

// The project's own scim connector as a client of the face: discovery, paged listings,
// lookups by filter, and the writes a flow targeting a SCIM app makes.
func TestSCIMConnectorAsClientOfTheFace(t *testing.T) {
	f := newFace(t)
	a, b := f.user("a@x.example", "a@x.example"), f.user("b@x.example", "b@x.example")
	f.group("Readers", a, b)
	c, err := scim.Open(connectors.SystemConfig{Name: "face", Kind: connectors.KindSCIM, BaseURL: f.url,
		Token: secret.New(token), PageSize: 1, MaxAttempts: 1}, connectors.Deps{HTTPClient: http.DefaultClient})
	if err != nil {
		t.Fatal(err)
	}
	ctx := t.Context()
	var groups []connectors.Group
	if l, err := c.ListGroups(ctx, func(gs []connectors.Group) error { groups = append(groups, gs...); return nil }); err != nil || !l.Complete || len(groups) != 1 {
		t.Fatalf("ListGroups: %v %+v %v", groups, l, err)
	}
	var ms []connectors.Member
	if _, err := c.ListMembers(ctx, groups[0].ID, func(m []connectors.Member) error { ms = append(ms, m...); return nil }); err != nil || len(ms) != 2 {
		t.Fatalf("ListMembers: %v %v", ms, err)
	}
	acct, err := c.FindAccountByEmail(ctx, "b@x.example")
	if err != nil || acct.ID != b {
		t.Fatalf("FindAccountByEmail: %+v %v", acct, err)
	}
	w := c.(connectors.Writer)
	g, err := w.CreateGroup(ctx, connectors.GroupSpec{Name: "Writers"})
	if err != nil {
		t.Fatal(err)
	}
	if err := w.AddMembers(ctx, g.ID, []string{a, b}); err != nil {
		t.Fatal(err)
	}
	if err := w.RemoveMembers(ctx, g.ID, []string{a}); err != nil {
		t.Fatal(err)
	}
	if got := members(f.must(200, "GET", "/Groups/"+g.ID, "")); len(got) != 1 || got[0] != b {
		t.Fatalf("after the connector's writes: members %v, want only b", got)
	}
	if _, err := w.UpdateGroup(ctx, g.ID, connectors.GroupSpec{Name: "Writers EU"}); err != nil {
		t.Fatal(err)
	}
	if found, err := c.FindGroupByName(ctx, "Writers EU"); err != nil || found.ID != g.ID {
		t.Fatalf("FindGroupByName after rename: %+v %v", found, err)
	}
	if err := w.DeleteGroup(ctx, g.ID, connectors.DeleteHard); err != nil {
		t.Fatal(err)
	}
	f.must(404, "GET", "/Groups/"+g.ID, "")
}
