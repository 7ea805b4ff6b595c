package conformance

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/groupsync/groupsync/connectors"
	"github.com/groupsync/groupsync/connectors/simkit"
)

// DefaultOptions are the options the suite uses unless a test says otherwise: small pages
// so a handful of groups already spans several pages.
func DefaultOptions() Options {
	return Options{MaxAttempts: 3, MaxRetryWait: time.Minute, MaxBodyBytes: 1 << 20, Timeout: 5 * time.Second, PageSize: 5}
}

// Run runs the whole suite against the connector the factory opens.
func Run(t *testing.T, factory Factory) {
	t.Run("PagingGroups", func(t *testing.T) { testPagingGroups(t, factory) })
	t.Run("PagingMembers", func(t *testing.T) { testPagingMembers(t, factory) })
	t.Run("Accounts", func(t *testing.T) { testAccounts(t, factory) })
	t.Run("IncompleteListing", func(t *testing.T) { testIncomplete(t, factory) })
	t.Run("RateLimitHonoured", func(t *testing.T) { testRateLimit(t, factory) })
	t.Run("AbsurdRetryAfterCapped", func(t *testing.T) { testAbsurdRetryAfter(t, factory) })
	t.Run("ServerErrorsRetriedToLimit", func(t *testing.T) { testServerErrors(t, factory) })
	t.Run("ClientErrorsNotRetried", func(t *testing.T) { testClientErrors(t, factory) })
	t.Run("Cancellation", func(t *testing.T) { testCancellation(t, factory) })
	t.Run("HungRequestTimesOut", func(t *testing.T) { testHung(t, factory) })
	t.Run("MalformedBody", func(t *testing.T) { testBadBody(t, factory, false) })
	t.Run("TruncatedBody", func(t *testing.T) { testBadBody(t, factory, true) })
	t.Run("OversizedBody", func(t *testing.T) { testOversized(t, factory) })
	t.Run("NamesRoundTrip", func(t *testing.T) { testNames(t, factory) })
	t.Run("Writes", func(t *testing.T) { testWrites(t, factory) })
}

func tenant(groups, people, membersPerGroup int) simkit.Tenant {
	return simkit.Generate(simkit.GenOptions{Groups: groups, People: people, MembersPerGroup: membersPerGroup, Seed: 7})
}

// listGroups collects a listing; the suite's tenants are small, so holding them is fine.
func listGroups(ctx context.Context, c connectors.Connector) ([]connectors.Group, connectors.Listing, error) {
	var out []connectors.Group
	l, err := c.ListGroups(ctx, func(p []connectors.Group) error {
		out = append(out, p...)
		return nil
	})
	return out, l, err
}

func listMembers(ctx context.Context, c connectors.Connector, id string) ([]connectors.Member, connectors.Listing, error) {
	var out []connectors.Member
	l, err := c.ListMembers(ctx, id, func(p []connectors.Member) error {
		out = append(out, p...)
		return nil
	})
	return out, l, err
}

func groupByName(t *testing.T, c connectors.Connector, name string) connectors.Group {
	t.Helper()
	gs, _, err := listGroups(t.Context(), c)
	if err != nil {
		t.Fatalf("list groups: %v", err)
	}
	for _, g := range gs {
		if g.Name == name {
			return g
		}
	}
	t.Fatalf("group %q not listed (have %d groups)", name, len(gs))
	return connectors.Group{}
}

func testPagingGroups(t *testing.T, factory Factory) {
	o := DefaultOptions()
	for _, n := range []int{0, 1, o.PageSize, o.PageSize + 1, 4*o.PageSize + 3} {
		t.Run(fmt.Sprintf("n=%d", n), func(t *testing.T) {
			f := factory(t, o)
			tn := tenant(n, 3, 0)
			f.Sim.Seed(tn)
			before := f.Sim.Counter().Count(f.GroupsEndpoint)
			gs, l, err := listGroups(t.Context(), f.Conn)
			if err != nil {
				t.Fatalf("ListGroups: %v", err)
			}
			if !l.Complete || l.Items != n || len(gs) != n {
				t.Fatalf("listing = %+v with %d groups, want complete with %d", l, len(gs), n)
			}
			ids := map[string]bool{}
			for _, g := range gs {
				if g.ID == "" || ids[g.ID] {
					t.Fatalf("empty or duplicate id %q", g.ID)
				}
				ids[g.ID] = true
				if len(g.Raw) == 0 || g.Hash == "" {
					t.Fatalf("group %q lacks raw payload or hash", g.Name)
				}
			}
			want := make([]string, 0, n)
			for _, g := range tn.Groups {
				want = append(want, g.Name)
			}
			got := make([]string, 0, n)
			for _, g := range gs {
				got = append(got, g.Name)
			}
			slices.Sort(want)
			slices.Sort(got)
			if !slices.Equal(got, want) {
				t.Fatalf("names = %q, want %q", got, want)
			}
			if reqs, min := f.Sim.Counter().Count(f.GroupsEndpoint)-before, f.MinGroupRequests(n); reqs != min {
				t.Fatalf("%d requests to %s for %d groups, want the minimum %d", reqs, f.GroupsEndpoint, n, min)
			}
		})
	}
}

func testPagingMembers(t *testing.T, factory Factory) {
	o := DefaultOptions()
	for _, m := range []int{0, 1, o.PageSize, o.PageSize + 1, 3*o.PageSize + 2} {
		t.Run(fmt.Sprintf("m=%d", m), func(t *testing.T) {
			f := factory(t, o)
			tn := tenant(1, 3*o.PageSize+5, m)
			f.Sim.Seed(tn)
			g := groupByName(t, f.Conn, tn.Groups[0].Name)
			before := f.Sim.Counter().Count(f.MembersEndpoint)
			ms, l, err := listMembers(t.Context(), f.Conn, g.ID)
			if err != nil {
				t.Fatalf("ListMembers: %v", err)
			}
			if !l.Complete || len(ms) != m || l.Items != m {
				t.Fatalf("listing = %+v with %d members, want complete with %d", l, len(ms), m)
			}
			seen := map[string]bool{}
			for _, mem := range ms {
				if mem.GroupID != g.ID || mem.AccountID == "" || seen[mem.AccountID] {
					t.Fatalf("bad member %+v of group %s", mem, g.ID)
				}
				seen[mem.AccountID] = true
			}
			if reqs, min := f.Sim.Counter().Count(f.MembersEndpoint)-before, f.MinMemberRequests(m); reqs != min {
				t.Fatalf("%d requests to %s for %d members, want the minimum %d", reqs, f.MembersEndpoint, m, min)
			}
		})
	}
}

func testAccounts(t *testing.T, factory Factory) {
	f := factory(t, DefaultOptions())
	tn := tenant(1, 12, 4)
	tn.People[3].Email = "  Mixed.Case@Example.COM "
	f.Sim.Seed(tn)
	acc, err := f.Conn.FindAccountByEmail(t.Context(), "mixed.case@example.com")
	if err != nil {
		t.Fatalf("FindAccountByEmail: %v", err)
	}
	if acc.Email != "mixed.case@example.com" || acc.ID == "" {
		t.Fatalf("account = %+v, want normalized email and an id", acc)
	}
	if _, err := f.Conn.FindAccountByEmail(t.Context(), "nobody@example.com"); !errors.Is(err, connectors.ErrNotFound) {
		t.Fatalf("FindAccountByEmail(unknown) = %v, want ErrNotFound", err)
	}
	var all []connectors.Account
	l, err := f.Conn.ListAccounts(t.Context(), nil, func(p []connectors.Account) error {
		all = append(all, p...)
		return nil
	})
	switch {
	case errors.Is(err, connectors.ErrUnsupported):
	case err != nil:
		t.Fatalf("ListAccounts(all): %v", err)
	case !l.Complete || len(all) < len(tn.People):
		t.Fatalf("ListAccounts(all) = %+v with %d accounts, want complete with at least %d", l, len(all), len(tn.People))
	}
	// Resolving the ids that appear as members gives those accounts with their emails.
	g := groupByName(t, f.Conn, tn.Groups[0].Name)
	ms, _, err := listMembers(t.Context(), f.Conn, g.ID)
	if err != nil {
		t.Fatalf("ListMembers: %v", err)
	}
	ids := make([]string, 0, len(ms))
	for _, m := range ms {
		ids = append(ids, m.AccountID)
	}
	var got []connectors.Account
	if _, err := f.Conn.ListAccounts(t.Context(), ids, func(p []connectors.Account) error {
		got = append(got, p...)
		return nil
	}); err != nil {
		t.Fatalf("ListAccounts(ids): %v", err)
	}
	if len(got) != len(ids) {
		t.Fatalf("ListAccounts(%d ids) returned %d accounts", len(ids), len(got))
	}
	for _, a := range got {
		if a.Email == "" || a.Email != connectors.NormalizeEmail(a.Email) || !slices.Contains(ids, a.ID) {
			t.Fatalf("account %+v: want a normalized email and a requested id", a)
		}
	}
}

func testIncomplete(t *testing.T, factory Factory) {
	o := DefaultOptions()
	f := factory(t, o)
	f.Sim.Seed(tenant(4*o.PageSize, 3, 0))
	first := true
	var got int
	l, err := f.Conn.ListGroups(t.Context(), func(p []connectors.Group) error {
		got += len(p)
		if first {
			// From here on every request fails: the listing must end incomplete.
			f.Sim.Faults().StatusNext(f.GroupsEndpoint, -1, 503)
			first = false
		}
		return nil
	})
	if err == nil {
		t.Fatalf("ListGroups succeeded with %d of %d groups after the server started failing", got, 4*o.PageSize)
	}
	if l.Complete {
		t.Fatalf("a listing cut by errors was reported complete: %+v", l)
	}
	if !errors.Is(err, connectors.ErrRetryable) {
		t.Fatalf("error = %v, want ErrRetryable", err)
	}
}

func testRateLimit(t *testing.T, factory Factory) {
	o := DefaultOptions()
	f := factory(t, o)
	f.Sim.Seed(tenant(2, 3, 0))
	asked := 7 * time.Second
	f.Sim.Faults().RateLimitNext(f.GroupsEndpoint, 1, asked)
	gs, l, err := listGroups(t.Context(), f.Conn)
	if err != nil || !l.Complete || len(gs) != 2 {
		t.Fatalf("ListGroups after one 429 = %d groups, %+v, %v; want both, complete", len(gs), l, err)
	}
	want := asked
	if f.RateLimitWait > 0 {
		want = f.RateLimitWait
	}
	if w := maxWait(f.Waits()); w < want {
		t.Fatalf("longest wait %s after a 429 asking %s; the server's wait was not honoured", w, want)
	}
}

func testAbsurdRetryAfter(t *testing.T, factory Factory) {
	o := DefaultOptions()
	o.MaxRetryWait = time.Minute
	f := factory(t, o)
	f.Sim.Seed(tenant(2, 3, 0))
	f.Sim.Faults().RateLimitNext(f.GroupsEndpoint, 1, 24*time.Hour)
	_, l, err := listGroups(t.Context(), f.Conn)
	if w := maxWait(f.Waits()); w > o.MaxRetryWait {
		t.Fatalf("waited %s, more than max_retry_wait %s", w, o.MaxRetryWait)
	}
	if err != nil {
		if !errors.Is(err, connectors.ErrRateLimited) {
			t.Fatalf("error = %v, want ErrRateLimited", err)
		}
		if l.Complete {
			t.Fatalf("listing given up on a 429 reported complete")
		}
	}
}

func testServerErrors(t *testing.T, factory Factory) {
	o := DefaultOptions()
	f := factory(t, o)
	f.Sim.Seed(tenant(2, 3, 0))
	f.Sim.Faults().StatusNext(f.GroupsEndpoint, -1, 503)
	before := f.Sim.Counter().Count(f.GroupsEndpoint)
	_, l, err := listGroups(t.Context(), f.Conn)
	if !errors.Is(err, connectors.ErrRetryable) || l.Complete {
		t.Fatalf("ListGroups against a failing server = %+v, %v; want incomplete, ErrRetryable", l, err)
	}
	if reqs := f.Sim.Counter().Count(f.GroupsEndpoint) - before; reqs != o.MaxAttempts {
		t.Fatalf("%d attempts, want max attempts %d", reqs, o.MaxAttempts)
	}
	// Once the server recovers the same call succeeds.
	f.Sim.Faults().Clear()
	if _, l, err := listGroups(t.Context(), f.Conn); err != nil || !l.Complete {
		t.Fatalf("ListGroups after recovery = %+v, %v", l, err)
	}
}

func testClientErrors(t *testing.T, factory Factory) {
	for _, tc := range []struct {
		status int
		class  error
	}{{400, connectors.ErrPermanent}, {401, connectors.ErrUnauthorized}, {403, connectors.ErrUnauthorized}} {
		t.Run(fmt.Sprint(tc.status), func(t *testing.T) {
			f := factory(t, DefaultOptions())
			f.Sim.Seed(tenant(2, 3, 0))
			f.Sim.Faults().StatusNext(f.GroupsEndpoint, -1, tc.status)
			before := f.Sim.Counter().Count(f.GroupsEndpoint)
			_, l, err := listGroups(t.Context(), f.Conn)
			if !errors.Is(err, tc.class) || l.Complete {
				t.Fatalf("ListGroups on %d = %+v, %v; want incomplete, %v", tc.status, l, err, tc.class)
			}
			if reqs := f.Sim.Counter().Count(f.GroupsEndpoint) - before; reqs != 1 {
				t.Fatalf("%d requests on a %d, want 1 (no retry)", reqs, tc.status)
			}
		})
	}
}

func testCancellation(t *testing.T, factory Factory) {
	o := DefaultOptions()
	f := factory(t, o)
	f.Sim.Seed(tenant(5*o.PageSize, 3, 0))
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	var after int
	calls := 0
	l, err := f.Conn.ListGroups(ctx, func(p []connectors.Group) error {
		calls++
		if calls == 1 {
			cancel()
			after = f.Sim.Counter().Count(f.GroupsEndpoint)
		}
		return nil
	})
	if !errors.Is(err, context.Canceled) || l.Complete {
		t.Fatalf("ListGroups after cancel = %+v, %v; want incomplete, context.Canceled", l, err)
	}
	// Requests already in flight may finish, but no new page is fetched after cancel.
	if extra := f.Sim.Counter().Count(f.GroupsEndpoint) - after; extra > concurrencySlack(f) {
		t.Fatalf("%d requests sent after cancellation", extra)
	}
}

// concurrencySlack is how many requests a connector with concurrent fetches may have had in
// flight when the context was cancelled.
func concurrencySlack(f *Fixture) int {
	if f.MinGroupRequests(10) > 5 { // one request per group: fetches run concurrently
		return 16
	}
	return 0
}

func testHung(t *testing.T, factory Factory) {
	o := DefaultOptions()
	o.Timeout = 300 * time.Millisecond
	o.MaxAttempts = 1
	f := factory(t, o)
	f.Sim.Seed(tenant(2, 3, 0))
	f.Sim.Faults().HangNext(f.GroupsEndpoint, 1)
	start := time.Now()
	_, l, err := listGroups(t.Context(), f.Conn)
	if !errors.Is(err, connectors.ErrRetryable) || l.Complete {
		t.Fatalf("ListGroups with a hung request = %+v, %v; want incomplete, ErrRetryable", l, err)
	}
	if !strings.Contains(err.Error(), "timed out") {
		t.Fatalf("error %q does not say the request timed out", err)
	}
	if d := time.Since(start); d > 10*o.Timeout {
		t.Fatalf("hung request took %s to give up with timeout %s", d, o.Timeout)
	}
}

func testBadBody(t *testing.T, factory Factory, truncated bool) {
	o := DefaultOptions()
	f := factory(t, o)
	f.Sim.Seed(tenant(3*o.PageSize, 3, 0))
	if truncated {
		f.Sim.Faults().TruncateNext(f.GroupsEndpoint, -1)
	} else {
		f.Sim.Faults().MalformedNext(f.GroupsEndpoint, -1)
	}
	gs, l, err := listGroups(t.Context(), f.Conn)
	if err == nil || l.Complete {
		t.Fatalf("ListGroups over bad bodies = %d groups, %+v, %v; want an error and incomplete", len(gs), l, err)
	}
	if !errors.Is(err, connectors.ErrRetryable) && !errors.Is(err, connectors.ErrPermanent) {
		t.Fatalf("error = %v, want classified retryable or permanent", err)
	}
	if !strings.Contains(err.Error(), f.Conn.Name()) {
		t.Fatalf("error %q does not name the system %q", err, f.Conn.Name())
	}
}

func testOversized(t *testing.T, factory Factory) {
	o := DefaultOptions()
	o.MaxBodyBytes = 256
	f := factory(t, o)
	tn := tenant(o.PageSize, 3, 0)
	for i := range tn.Groups {
		tn.Groups[i].Description = strings.Repeat("long description ", 20)
	}
	f.Sim.Seed(tn)
	_, l, err := listGroups(t.Context(), f.Conn)
	if err == nil || l.Complete || !strings.Contains(err.Error(), "max_body_bytes") {
		t.Fatalf("ListGroups with bodies over the cap = %+v, %v; want an error naming max_body_bytes", l, err)
	}
}

// Names that break naive escaping: quotes, HTML, unicode, right-to-left and zero-width.
var trickyNames = []string{
	`Ünïcødé "quoted" group`,
	`<b>Bold &amp; brave</b>`,
	`O'Brien's team; DROP TABLE groups; --`,
	"עברית \u200f rtl",
	"zero\u200bwidth",
	`$tag$ dollar $$ quoted`,
}

func testNames(t *testing.T, factory Factory) {
	f := factory(t, DefaultOptions())
	tn := tenant(len(trickyNames), 3, 0)
	for i, n := range trickyNames {
		tn.Groups[i].Name = n
	}
	f.Sim.Seed(tn)
	gs, _, err := listGroups(t.Context(), f.Conn)
	if err != nil {
		t.Fatalf("ListGroups: %v", err)
	}
	got := map[string]bool{}
	for _, g := range gs {
		got[g.Name] = true
	}
	for _, n := range trickyNames {
		if !got[n] {
			t.Errorf("name %q did not round-trip byte-exact", n)
		}
	}
}

// testWrites creates a group and then, one subtest a step, updates it to a new name, adds
// and removes members and deletes it; a write the capabilities do not declare must fail with
// ErrUnsupported. A connector that is no Writer must declare no writes.
func testWrites(t *testing.T, factory Factory) {
	f := factory(t, DefaultOptions())
	tn := tenant(1, 6, 0)
	f.Sim.Seed(tn)
	caps := f.Conn.Capabilities()
	w, ok := f.Conn.(connectors.Writer)
	if !ok {
		if caps.CreateGroup || caps.AddMember || caps.UpdateGroup {
			t.Fatalf("capabilities declare writes but the connector does not implement Writer")
		}
		return
	}
	wt := &writeTest{f: f, w: w, caps: caps, people: tn.People[:3], name: `Créé "by" <groupsync> & co`}
	if !t.Run("Create", wt.create) || !caps.CreateGroup {
		return // without a created group there is nothing for the other writes to change
	}
	steps := []struct {
		name string
		run  func(*testing.T)
	}{
		{"Update", wt.update},
		{"FindAccounts", wt.findAccounts},
		{"AddMembers", wt.addMembers},
		{"RemoveMembers", wt.removeMembers},
		{"Delete", wt.delete},
	}
	for _, step := range steps {
		// Each step works on what the steps before it left: after a failure the rest would
		// fail for the same reason.
		if !t.Run(step.name, step.run) {
			return
		}
	}
}

// writeTest is the state testWrites's steps share: the connector and the group and
// accounts the earlier steps made or found.
type writeTest struct {
	f      *Fixture
	w      connectors.Writer
	caps   connectors.Capabilities
	people []simkit.Person // the accounts the member writes use
	name   string          // the created group's name
	g      connectors.Group
	ids    []string // the people's account ids
}

// create creates the group and checks that a listing, FindGroupByName and GetGroup all see
// it; without the capability CreateGroup must answer ErrUnsupported.
func (wt *writeTest) create(t *testing.T) {
	ctx := t.Context()
	spec := connectors.GroupSpec{Name: wt.name, Description: "made by the conformance suite", Visibility: connectors.VisibilityPublic}
	g, err := wt.w.CreateGroup(ctx, spec)
	if !wt.caps.CreateGroup {
		if !errors.Is(err, connectors.ErrUnsupported) {
			t.Fatalf("CreateGroup without the capability = %v, want ErrUnsupported", err)
		}
		return
	}
	if err != nil {
		t.Fatalf("CreateGroup: %v", err)
	}
	if g.ID == "" || g.Name != wt.name {
		t.Fatalf("created group = %+v", g)
	}
	wt.g = g
	if listed := groupByName(t, wt.f.Conn, wt.name); listed.ID != g.ID {
		t.Fatalf("created group listed with id %q, created as %q", listed.ID, g.ID)
	}
	if found, err := wt.f.Conn.FindGroupByName(ctx, wt.name); err != nil || found.ID != g.ID {
		t.Fatalf("FindGroupByName = %+v, %v", found, err)
	}
	if got, err := wt.f.Conn.GetGroup(ctx, g.ID); err != nil || got.Name != wt.name {
		t.Fatalf("GetGroup = %+v, %v", got, err)
	}
}

// update renames the group and checks the new name is listed; without the capability
// UpdateGroup must answer ErrUnsupported.
func (wt *writeTest) update(t *testing.T) {
	renamed := wt.name + " (renamed)"
	_, err := wt.w.UpdateGroup(t.Context(), wt.g.ID, connectors.GroupSpec{Name: renamed, Description: "updated"})
	switch {
	case !wt.caps.UpdateGroup && !errors.Is(err, connectors.ErrUnsupported):
		t.Fatalf("UpdateGroup without the capability = %v, want ErrUnsupported", err)
	case wt.caps.UpdateGroup && err != nil:
		t.Fatalf("UpdateGroup: %v", err)
	case wt.caps.UpdateGroup:
		groupByName(t, wt.f.Conn, renamed)
	}
}

// findAccounts resolves the people's emails to the account ids the member writes use.
func (wt *writeTest) findAccounts(t *testing.T) {
	for _, p := range wt.people {
		a, err := wt.f.Conn.FindAccountByEmail(t.Context(), connectors.NormalizeEmail(p.Email))
		if err != nil {
			t.Fatalf("FindAccountByEmail(%s): %v", p.Email, err)
		}
		wt.ids = append(wt.ids, a.ID)
	}
}

// addMembers adds one member, then a batch of at most MaxMembersPerWrite, then the first
// again, which must succeed and change nothing; without the capability AddMembers must
// answer ErrUnsupported.
func (wt *writeTest) addMembers(t *testing.T) {
	ctx, ids := t.Context(), wt.ids
	err := wt.w.AddMembers(ctx, wt.g.ID, ids[:1])
	if !wt.caps.AddMember {
		if !errors.Is(err, connectors.ErrUnsupported) {
			t.Fatalf("AddMembers without the capability = %v, want ErrUnsupported", err)
		}
		return
	}
	if err != nil {
		t.Fatalf("AddMembers: %v", err)
	}
	batch := ids[1:]
	if wt.caps.MaxMembersPerWrite < len(batch) {
		batch = batch[:wt.caps.MaxMembersPerWrite]
	}
	if err := wt.w.AddMembers(ctx, wt.g.ID, batch); err != nil {
		t.Fatalf("AddMembers(batch): %v", err)
	}
	// Adding someone already there succeeds and changes nothing.
	if err := wt.w.AddMembers(ctx, wt.g.ID, ids[:1]); err != nil {
		t.Fatalf("AddMembers(existing member): %v", err)
	}
	if n := wt.f.Sim.Effects().MaxAdds(); n != 1 {
		t.Fatalf("one member was effectively added %d times", n)
	}
	ms, _, err := listMembers(ctx, wt.f.Conn, wt.g.ID)
	if err != nil || len(ms) != 1+len(batch) {
		t.Fatalf("members after adds = %d, %v; want %d", len(ms), err, 1+len(batch))
	}
}

// removeMembers removes the first member twice (the second time it is absent, which must
// succeed) and checks it is no longer listed; without the capability RemoveMembers must
// answer ErrUnsupported.
func (wt *writeTest) removeMembers(t *testing.T) {
	ctx, ids := t.Context(), wt.ids
	err := wt.w.RemoveMembers(ctx, wt.g.ID, ids[:1])
	if !wt.caps.RemoveMember {
		if !errors.Is(err, connectors.ErrUnsupported) {
			t.Fatalf("RemoveMembers without the capability = %v, want ErrUnsupported", err)
		}
		return
	}
	if err != nil {
		t.Fatalf("RemoveMembers: %v", err)
	}
	if err := wt.w.RemoveMembers(ctx, wt.g.ID, ids[:1]); err != nil {
		t.Fatalf("RemoveMembers(absent member): %v", err)
	}
	ms, _, _ := listMembers(ctx, wt.f.Conn, wt.g.ID)
	for _, m := range ms {
		if m.AccountID == ids[0] {
			t.Fatalf("removed member %s still listed", ids[0])
		}
	}
}

// delete deletes the group, archiving it when only archive is declared, and checks the
// simulator no longer holds it (or holds it archived); with neither capability
// DeleteGroup must answer ErrUnsupported.
func (wt *writeTest) delete(t *testing.T) {
	mode := connectors.DeleteHard
	if !wt.caps.DeleteGroup && wt.caps.ArchiveGroup {
		mode = connectors.DeleteArchive
	}
	err := wt.w.DeleteGroup(t.Context(), wt.g.ID, mode)
	if !wt.caps.DeleteGroup && !wt.caps.ArchiveGroup {
		if !errors.Is(err, connectors.ErrUnsupported) {
			t.Fatalf("DeleteGroup without the capability = %v, want ErrUnsupported", err)
		}
		return
	}
	if err != nil {
		t.Fatalf("DeleteGroup(%s): %v", mode, err)
	}
	for _, s := range wt.f.Sim.Snapshot() {
		if s.ID == wt.g.ID && !(mode == connectors.DeleteArchive && s.Archived) {
			t.Fatalf("group %s still present after DeleteGroup(%s): %+v", wt.g.ID, mode, s)
		}
	}
}

func maxWait(ws []time.Duration) time.Duration {
	var m time.Duration
	for _, w := range ws {
		m = max(m, w)
	}
	return m
}
