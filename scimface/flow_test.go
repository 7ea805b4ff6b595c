package scimface_test

import (
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/groupsync/groupsync/config"
	"github.com/groupsync/groupsync/connectors"
	"github.com/groupsync/groupsync/connectors/sciminbound"
	"github.com/groupsync/groupsync/connectors/simkit"
	"github.com/groupsync/groupsync/connectors/simorg"
	"github.com/groupsync/groupsync/scimface"
	"github.com/groupsync/groupsync/state"
	"github.com/groupsync/groupsync/syncengine"
)

// An identity provider pushes users and a group into the face; the flow okta → devrev
// (the DevRev simulator) carries them; then the provider unassigns everyone, and the guard
// holds the removals as it would for any source (min_source_ratio, removal limits).
func TestFlowFromTheFaceIntoDevRev(t *testing.T) {
	f := newFace(t)
	org, err := simorg.Start(simorg.Spec{Name: "devrev", Kind: connectors.KindDevRev})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(org.Close)
	var people []simkit.Person
	var ids []string
	for i := range 10 {
		p := simkit.Person{Email: fmt.Sprintf("p%d@corp.example", i), First: "P", Last: fmt.Sprint(i)}
		people = append(people, p)
		ids = append(ids, f.user(p.Email, p.Email))
	}
	org.Systems["devrev"].Sim.Seed(simkit.Tenant{People: people})
	g := f.group("Platform", ids...)

	conns, err := org.Open(nil, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	conns["okta"], err = sciminbound.Open(connectors.SystemConfig{Name: "okta", Kind: connectors.KindSCIMInbound},
		connectors.Deps{Inbound: f.store.Inbound()})
	if err != nil {
		t.Fatal(err)
	}
	flow := config.Flow{Source: "okta", Targets: []string{"devrev"}, Schedule: "@every 1m", Scope: config.Scope{All: true},
		Membership: config.MembershipMirror, CreateGroups: true, DeleteGroups: config.DeleteNever,
		Limits:            config.Limits{MaxMemberRemovals: 5, MaxMemberRemovalsPercent: 20, MaxGroupDeletions: 5, MinSourceRatio: 0.8},
		MaxChangeAttempts: 3}
	cfg := &config.Config{Flows: map[string]config.Flow{"okta-devrev": flow}, Systems: map[string]config.System{
		"okta": {Kind: connectors.KindSCIMInbound}, "devrev": {Kind: connectors.KindDevRev, BaseURL: org.Systems["devrev"].Config.BaseURL}}}
	eng, err := syncengine.New(syncengine.Options{Store: f.store, Config: cfg, Connectors: conns, Holder: "face-test"})
	if err != nil {
		t.Fatal(err)
	}
	run := func() *syncengine.Result {
		t.Helper()
		res, err := eng.RunFlow(t.Context(), "okta-devrev", syncengine.RunOptions{Trigger: syncengine.TriggerOnce})
		if err != nil {
			t.Fatal(err)
		}
		return res
	}
	run()
	target := func() []string {
		for _, gs := range org.Systems["devrev"].Sim.Snapshot() {
			if gs.Name == "Platform" {
				return gs.MemberEmails
			}
		}
		return nil
	}
	if got := target(); len(got) != 10 || !slices.Contains(got, "p3@corp.example") {
		t.Fatalf("after the first run DevRev's Platform has %v, want the 10 pushed members", got)
	}

	// The writes were recorded for the trigger: not due while the burst may go on, then a
	// run request of the flow, once.
	inbound := []scimface.Inbound{{System: "okta", Flows: []string{"okta-devrev"}, Debounce: time.Hour, MaxDelay: 2 * time.Hour}}
	if err := scimface.TriggerOnce(t.Context(), f.store, inbound, nil); err != nil {
		t.Fatal(err)
	}
	if _, _, ok, _ := f.store.ClaimRunRequest(t.Context(), []string{"okta-devrev"}, "t"); ok {
		t.Fatal("writes triggered a run before their debounce")
	}
	inbound[0].Debounce = time.Nanosecond
	for range 2 {
		if err := scimface.TriggerOnce(t.Context(), f.store, inbound, nil); err != nil {
			t.Fatal(err)
		}
	}
	if _, reqs, ok, err := f.store.ClaimRunRequest(t.Context(), []string{"okta-devrev"}, "t"); !ok || len(reqs) != 1 || err != nil {
		t.Fatalf("run requests after the debounce: %v %v %v, want one", reqs, ok, err)
	}

	// The provider unassigns everyone: the guard holds the removals; DevRev keeps them.
	f.must(204, "PATCH", "/Groups/"+g, `{"schemas":["urn:ietf:params:scim:api:messages:2.0:PatchOp"],"Operations":[{"op":"remove","path":"members"}]}`)
	res := run()
	if res.Status != state.RunBlocked {
		t.Fatalf("a run after the IdP emptied the group: status %s, want blocked by the guard", res.Status)
	}
	if got := target(); len(got) != 10 {
		t.Fatalf("after a blocked run DevRev's Platform has %d members, want 10 kept", len(got))
	}
}
