// Package scimclienttest is the suite a configured scimclient.Client passes against its
// provider's simulator: the group lifecycle, member batches (repeats, absent members, one
// request per batch), refusals before any request, unknown groups as ErrNotFound, and
// conditional PUTs. Each SCIM writer runs it on the very client its connector writes
// with, so the writers provably share one client and one behaviour.
package scimclienttest

import (
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"testing"

	"github.com/groupsync/groupsync/connectors"
	"github.com/groupsync/groupsync/connectors/scim/scimclient"
	"github.com/groupsync/groupsync/connectors/simkit"
)

// Fixture is one client opened against a fresh, empty simulator.
type Fixture struct {
	Client *scimclient.Client
	Sim    simkit.Sim
	// PatchRoute and PutRoute are the simulator's labels for a group PATCH and PUT.
	PatchRoute, PutRoute string
	// Put and ETags say how the client's Target writes: by PUT, conditional on ETags.
	Put, ETags bool
	// MaxMembersPerWrite is the client's batch cap (0: scimclient's default).
	MaxMembersPerWrite int
	// UnknownID is a group id the provider has never issued, in its own id format.
	UnknownID string
}

// Factory opens a client against a fresh simulator; it must use t.Cleanup for teardown.
type Factory func(t *testing.T) *Fixture

// Run runs the suite.
func Run(t *testing.T, factory Factory) {
	t.Run("Lifecycle", func(t *testing.T) { testLifecycle(t, factory(t)) })
	t.Run("Members", func(t *testing.T) { testMembers(t, factory(t)) })
	t.Run("RefusedBeforeAnyRequest", func(t *testing.T) { testRefusals(t, factory(t)) })
	t.Run("UnknownGroupNotFound", func(t *testing.T) { testUnknown(t, factory(t)) })
	t.Run("ConditionalPut", func(t *testing.T) { testConditionalPut(t, factory(t)) })
}

// users adds n people to the simulator and returns their ids and emails.
func users(f *Fixture, n int) ([]string, []string) {
	var ids, emails []string
	for i := range n {
		email := fmt.Sprintf("member%02d@example.com", i)
		ids = append(ids, f.Sim.AddPerson(simkit.Person{Email: email, First: "Member", Last: fmt.Sprint(i)}))
		emails = append(emails, email)
	}
	return ids, emails
}

func state(f *Fixture, id string) *simkit.GroupState {
	for _, g := range f.Sim.Snapshot() {
		if g.ID == id {
			return &g
		}
	}
	return nil
}

// accepted counts the writes the simulator took (2xx) on the write route in use.
func accepted(f *Fixture) int {
	route := f.PatchRoute
	if f.Put {
		route = f.PutRoute
	}
	n := 0
	for _, status := range []int{http.StatusOK, http.StatusNoContent} {
		n += f.Sim.Counter().CountStatus(route, status)
	}
	return n
}

func create(t *testing.T, f *Fixture, name string) scimclient.Group {
	t.Helper()
	g, err := f.Client.Create(t.Context(), name)
	if err != nil || g.ID == "" {
		t.Fatalf("Create(%q) = %+v, %v", name, g, err)
	}
	return g
}

// testLifecycle: create (a name needing escapes), a duplicate refused as ErrNameTaken,
// read back, rename, delete, and a second delete that succeeds.
func testLifecycle(t *testing.T, f *Fixture) {
	ctx := t.Context()
	name := `Ops "core" \ <b>&amp;</b> — Zoë`
	g := create(t, f, name)
	if g.DisplayName == nil || *g.DisplayName != name {
		t.Fatalf("created displayName %v, want %q", g.DisplayName, name)
	}
	if _, err := f.Client.Create(ctx, name); !errors.Is(err, connectors.ErrNameTaken) {
		t.Fatalf("Create(same name) = %v, want ErrNameTaken", err)
	}
	if n := f.Sim.Effects().MaxCreates(); n != 1 {
		t.Fatalf("the group was created %d times", n)
	}
	read, err := f.Client.Get(ctx, g.ID, nil)
	if err != nil || read.ID != g.ID || read.DisplayName == nil || *read.DisplayName != name {
		t.Fatalf("Get = %+v, %v", read, err)
	}
	if f.ETags && read.Version == "" {
		t.Fatalf("Get of a provider with ETags returned no version")
	}
	renamed := name + " (renamed)"
	if _, err := f.Client.Rename(ctx, g.ID, renamed); err != nil {
		t.Fatalf("Rename: %v", err)
	}
	if s := state(f, g.ID); s == nil || s.Name != renamed {
		t.Fatalf("group after rename = %+v, want %q", s, renamed)
	}
	if err := f.Client.Delete(ctx, g.ID); err != nil {
		t.Fatalf("Delete: %v", err)
	}
	if state(f, g.ID) != nil {
		t.Fatalf("group %s still present after Delete", g.ID)
	}
	if _, err := f.Client.Get(ctx, g.ID, nil); !errors.Is(err, connectors.ErrNotFound) {
		t.Fatalf("Get(deleted) = %v, want ErrNotFound", err)
	}
	if err := f.Client.Delete(ctx, g.ID); err != nil {
		t.Fatalf("Delete(already gone) = %v, want success", err)
	}
}

// testMembers: a batch is one accepted write; repeats and present members add nothing;
// a remove naming an absent member removes the present ones; removing only absent ones
// succeeds; the simulator and the client's own read agree on who is left.
func testMembers(t *testing.T, f *Fixture) {
	ctx := t.Context()
	ids, emails := users(f, 4)
	g := create(t, f, "members")
	before := accepted(f)
	if err := f.Client.AddMembers(ctx, g.ID, ids[:3]); err != nil {
		t.Fatalf("AddMembers: %v", err)
	}
	if n := accepted(f) - before; n != 1 {
		t.Fatalf("%d writes accepted for one batch of 3, want 1", n)
	}
	if err := f.Client.AddMembers(ctx, g.ID, []string{ids[0], ids[0], ids[1]}); err != nil {
		t.Fatalf("AddMembers(present, repeated): %v", err)
	}
	if n := f.Sim.Effects().MaxAdds(); n != 1 {
		t.Fatalf("a member was effectively added %d times", n)
	}
	if err := f.Client.RemoveMembers(ctx, g.ID, []string{ids[0], ids[3]}); err != nil {
		t.Fatalf("RemoveMembers(one present, one absent): %v", err)
	}
	if err := f.Client.RemoveMembers(ctx, g.ID, ids[3:]); err != nil {
		t.Fatalf("RemoveMembers(absent only): %v", err)
	}
	if s := state(f, g.ID); s == nil || !slices.Equal(s.MemberEmails, emails[1:3]) {
		t.Fatalf("members in the simulator = %+v, want %v", s, emails[1:3])
	}
	read, err := f.Client.Get(ctx, g.ID, nil)
	if err != nil {
		t.Fatalf("Get: %v", err)
	}
	got, err := read.Members()
	slices.Sort(got)
	want := slices.Sorted(slices.Values(ids[1:3]))
	if err != nil || !slices.Equal(got, want) {
		t.Fatalf("Members() = %v, %v; want %v", got, err, want)
	}
}

// testRefusals: what cannot succeed is refused as ErrPermanent without a request.
func testRefusals(t *testing.T, f *Fixture) {
	ctx := t.Context()
	ids, _ := users(f, 1)
	g := create(t, f, "refusals")
	limit := f.MaxMembersPerWrite
	if limit == 0 {
		limit = scimclient.DefaultMaxMembersPerWrite
	}
	over := make([]string, limit+1)
	for i := range over {
		over[i] = fmt.Sprintf("id%d", i)
	}
	before := f.Sim.Counter().Total()
	for what, err := range map[string]error{
		"add over the cap":     f.Client.AddMembers(ctx, g.ID, over),
		"remove over the cap":  f.Client.RemoveMembers(ctx, g.ID, over),
		"add an empty id":      f.Client.AddMembers(ctx, g.ID, []string{ids[0], ""}),
		"create a blank name":  func() error { _, err := f.Client.Create(ctx, " \t"); return err }(),
		"rename to no name":    func() error { _, err := f.Client.Rename(ctx, g.ID, ""); return err }(),
		"add to no group":      f.Client.AddMembers(ctx, "", ids),
		"read no group":        func() error { _, err := f.Client.Get(ctx, "", nil); return err }(),
		"delete no group":      f.Client.Delete(ctx, ""),
		"remove from no group": f.Client.RemoveMembers(ctx, "", ids),
	} {
		if !errors.Is(err, connectors.ErrPermanent) {
			t.Errorf("%s = %v, want ErrPermanent", what, err)
		}
	}
	if n := f.Sim.Counter().Total() - before; n != 0 {
		t.Errorf("%d requests sent for writes refused up front", n)
	}
}

// testUnknown: every write to a group the provider never had is ErrNotFound (so the engine
// re-plans rather than retrying), whatever status the provider answers it with.
func testUnknown(t *testing.T, f *Fixture) {
	ctx := t.Context()
	ids, _ := users(f, 1)
	for what, err := range map[string]error{
		"get":    func() error { _, err := f.Client.Get(ctx, f.UnknownID, nil); return err }(),
		"rename": func() error { _, err := f.Client.Rename(ctx, f.UnknownID, "x"); return err }(),
		"add":    f.Client.AddMembers(ctx, f.UnknownID, ids),
		"remove": f.Client.RemoveMembers(ctx, f.UnknownID, ids),
	} {
		if !errors.Is(err, connectors.ErrNotFound) {
			t.Errorf("%s of an unknown group = %v, want ErrNotFound", what, err)
		}
	}
}

// testConditionalPut: where the client writes by PUT with ETags, a 412 (the group changed
// since it was read) reads it again and applies the change to the new version.
func testConditionalPut(t *testing.T, f *Fixture) {
	if !f.Put || !f.ETags {
		t.Skip("the client writes by PATCH or without ETags: no PUT is conditional")
	}
	ids, emails := users(f, 1)
	g := create(t, f, "conditional")
	f.Sim.Faults().Inject(simkit.Rule{Method: http.MethodPut, Status: http.StatusPreconditionFailed, Times: 1})
	if err := f.Client.AddMembers(t.Context(), g.ID, ids); err != nil {
		t.Fatalf("AddMembers after one 412: %v", err)
	}
	if n := f.Sim.Counter().Count(f.PutRoute); n != 2 {
		t.Fatalf("%d PUTs, want 2 (the refused one and the one after reading again)", n)
	}
	if s := state(f, g.ID); s == nil || strings.Join(s.MemberEmails, ",") != emails[0] {
		t.Fatalf("members = %+v, want %s", s, emails[0])
	}
}
