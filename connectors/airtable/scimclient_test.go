package airtable

import (
	"context"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/groupsync/groupsync/connectors"
	"github.com/groupsync/groupsync/connectors/airtable/airtablesim"
	"github.com/groupsync/groupsync/connectors/scim/scimclient"
	"github.com/groupsync/groupsync/connectors/scim/scimclient/scimclienttest"
	"github.com/groupsync/groupsync/connectors/simkit"
	"github.com/groupsync/groupsync/secret"
)

// openOn opens the connector against sim, both APIs on one server as in production.
func openOn(t *testing.T, sim *airtablesim.Server) *conn {
	t.Helper()
	srv := httptest.NewServer(sim)
	t.Cleanup(srv.Close)
	c, err := Open(connectors.SystemConfig{
		Name: "airtable-test", Kind: connectors.KindAirtable, BaseURL: srv.URL, Token: secret.New(sim.Token()),
		Options: map[string]string{OptionEnterpriseAccountID: sim.EnterpriseID(), OptionSCIMURL: srv.URL + airtablesim.SCIMPrefix},
		// The simulator has no limit to protect; 48/s would only make the suite wait.
		RateLimit: 1000, Burst: 50,
	}, connectors.Deps{HTTPClient: srv.Client(), Sleep: func(ctx context.Context, _ time.Duration) error { return ctx.Err() }})
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	return c.(*conn)
}

// TestSharedSCIMClientConformance runs the shared SCIM write client's suite on the client
// this connector writes with, configured as Open configures it (Airtable's labels, its
// error shapes with "invalid group ID" as not found, its object-form members value and
// the fallback to the array), against a server taking either form or only one.
func TestSharedSCIMClientConformance(t *testing.T) {
	for _, form := range []string{"", airtablesim.MemberValueObject, airtablesim.MemberValueArray} {
		t.Run("members value "+map[string]string{"": "either"}[form]+form, func(t *testing.T) {
			scimclienttest.Run(t, func(t *testing.T) *scimclienttest.Fixture {
				sim := airtablesim.New(airtablesim.Options{Token: "tok-" + t.Name(), MemberValue: form})
				return &scimclienttest.Fixture{Client: openOn(t, sim).groups, Sim: sim,
					PatchRoute: airtablesim.RouteSCIMPatch, PutRoute: airtablesim.RouteSCIMPut,
					MaxMembersPerWrite: MaxMembersPerWrite, UnknownID: "ugpDoesNotExist00"}
			})
		})
	}
}

// TestWritesGoThroughSharedClient: the connector's AddMembers and the shared client are
// one: the form an array-only server made the Writer fall back to is the client's state,
// and the client's next add goes out in it at once (one PATCH, no refusal).
func TestWritesGoThroughSharedClient(t *testing.T) {
	sim := airtablesim.New(airtablesim.Options{Token: "tok", MemberValue: airtablesim.MemberValueArray})
	sim.Seed(simkit.Generate(simkit.GenOptions{Groups: 1, People: 2, Seed: 5}))
	c := openOn(t, sim)
	gid := sim.Snapshot()[0].ID
	a, b := sim.AddPerson(simkit.Person{Email: "a@example.com"}), sim.AddPerson(simkit.Person{Email: "b@example.com"})
	if c.groups.AddForm() != scimclient.FormObject {
		t.Fatalf("a new connection's add form = %s, want Airtable's documented object", c.groups.AddForm())
	}
	if err := c.AddMembers(t.Context(), gid, []string{a}); err != nil {
		t.Fatalf("Writer.AddMembers: %v", err)
	}
	if c.groups.AddForm() != scimclient.FormArray {
		t.Fatalf("after the Writer's fallback the shared client's form = %s, want array", c.groups.AddForm())
	}
	sim.Counter().Reset()
	if err := c.groups.AddMembers(t.Context(), gid, []string{b}); err != nil {
		t.Fatalf("client AddMembers: %v", err)
	}
	if n, ok := sim.Counter().Count(airtablesim.RouteSCIMPatch), sim.Counter().CountStatus(airtablesim.RouteSCIMPatch, 200); n != 1 || ok != 1 {
		t.Fatalf("%d PATCHes (%d accepted) after the Writer learnt the form, want 1 accepted", n, ok)
	}
}
