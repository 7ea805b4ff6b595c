package devrev

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/groupsync/groupsync/connectors"
	"github.com/groupsync/groupsync/connectors/apiclient"
	"github.com/groupsync/groupsync/connectors/devrev/devrevsim"
	"github.com/groupsync/groupsync/connectors/simkit"
	"github.com/groupsync/groupsync/secret"
)

func TestOpenValidatesConfig(t *testing.T) {
	base := connectors.SystemConfig{Name: "dr", Kind: connectors.KindDevRev, Token: secret.New("t")}
	for _, tc := range []struct {
		name string
		edit func(*connectors.SystemConfig)
		want string
	}{
		{"unknown option", func(c *connectors.SystemConfig) { c.Options = map[string]string{"orgg": "x"} }, `unknown option "orgg"`},
		{"no token", func(c *connectors.SystemConfig) { c.Token = secret.Value{} }, "token is required"},
		{"bad scope", func(c *connectors.SystemConfig) { c.Options = map[string]string{OptionAPIScope: "alpha"} }, "api_scope must be beta or public"},
		{"empty description", func(c *connectors.SystemConfig) { c.Options = map[string]string{OptionDefaultDescription: " "} }, "default_description must not be empty"},
		{"wrong kind", func(c *connectors.SystemConfig) { c.Kind = connectors.KindAirtable }, "is not devrev"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := base
			tc.edit(&cfg)
			_, err := Open(cfg, connectors.Deps{})
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Open error = %v, want it to mention %q", err, tc.want)
			}
		})
	}
	c, err := Open(base, connectors.Deps{})
	if err != nil {
		t.Fatalf("Open with defaults: %v", err)
	}
	if got := c.(*conn).api.BaseURL(); got != DefaultBaseURL {
		t.Errorf("base url = %q, want %q", got, DefaultBaseURL)
	}
	if c.(*conn).pageSize != DefaultPageSize {
		t.Errorf("page size = %d, want %d", c.(*conn).pageSize, DefaultPageSize)
	}
}

func TestCapabilities(t *testing.T) {
	h := newHarness(t, devrevsim.Options{}, nil)
	want := connectors.Capabilities{CreateGroup: true, UpdateGroup: true, AddMember: true, RemoveMember: true,
		MaxMembersPerWrite: 1, Description: true}
	if got := h.conn.Capabilities(); got != want {
		t.Fatalf("capabilities = %+v, want %+v", got, want)
	}
	err := h.conn.DeleteGroup(t.Context(), "don:identity:dvrv-us-1:devo/acme:group/1", connectors.DeleteHard)
	if !errors.Is(err, connectors.ErrUnsupported) {
		t.Fatalf("DeleteGroup error = %v, want ErrUnsupported", err)
	}
	if n := h.sim.Counter().Total(); n != 0 {
		t.Fatalf("DeleteGroup sent %d requests, want none", n)
	}
}

// TestPullAndWrites drives a full pull and every write against the simulator.
func TestPullAndWrites(t *testing.T) {
	h := newHarness(t, devrevsim.Options{}, nil)
	tenant := simkit.Generate(simkit.GenOptions{Groups: 3, People: 40, MembersPerGroup: 12, Seed: 7})
	h.sim.Seed(tenant)
	ctx := t.Context()

	revID := h.sim.AddRevUser("Customer@Example.org", "Cus Tomer", 6)
	snap := h.sim.Snapshot()
	dynID, err := h.sim.AddGroup(devrevsim.GroupInit{Name: "Dynamic devs", Description: "computed", Dynamic: true})
	if err != nil {
		t.Fatal(err)
	}
	defID, err := h.sim.AddGroup(devrevsim.GroupInit{Name: "All devs", IsDefault: true, OriginSystem: "okta", ExternalRef: "https://okta.example/g/1"})
	if err != nil {
		t.Fatal(err)
	}
	custID, err := h.sim.AddGroup(devrevsim.GroupInit{Name: "Customers", MemberType: "rev_user", Members: []string{revID}})
	if err != nil {
		t.Fatal(err)
	}
	nestID, err := h.sim.AddGroup(devrevsim.GroupInit{Name: "Nest", Members: []string{snap[0].ID, "don:identity:dvrv-us-1:devo/acme:devu/1"}})
	if err != nil {
		t.Fatal(err)
	}

	groups, l := collectGroups(t, h.conn)
	if !l.Complete || l.Items != 7 || len(groups) != 7 {
		t.Fatalf("ListGroups = %d groups, listing %+v; want 7, complete", len(groups), l)
	}
	byID := map[string]connectors.Group{}
	for _, g := range groups {
		byID[g.ID] = g
		if g.Hash == "" || len(g.Raw) == 0 || g.ModifiedAt.IsZero() || g.State != "active" {
			t.Errorf("group %s lacks hash/raw/modified/state: %+v", g.ID, g)
		}
	}
	if !byID[dynID].MembershipManaged || byID[defID].MembershipManaged || byID[nestID].MembershipManaged {
		t.Errorf("MembershipManaged wrong: dynamic=%v default=%v nest=%v", byID[dynID].MembershipManaged, byID[defID].MembershipManaged, byID[nestID].MembershipManaged)
	}
	if !byID[defID].System || byID[nestID].System {
		t.Errorf("System wrong: default=%v nest=%v", byID[defID].System, byID[nestID].System)
	}
	var raw map[string]any
	if err := json.Unmarshal(byID[defID].Raw, &raw); err != nil || raw["sync_metadata"] == nil {
		t.Errorf("default group Raw lost sync_metadata: %s", byID[defID].Raw)
	}

	members, ml := collectMembers(t, h.conn, snap[0].ID)
	if !ml.Complete || len(members) != 12 {
		t.Fatalf("members of %s: %d, %+v; want 12 complete", snap[0].ID, len(members), ml)
	}
	for _, m := range members {
		if m.Type != connectors.MemberUser || m.Email == "" || m.Role != "member" || m.GroupID != snap[0].ID {
			t.Errorf("member %+v: want a user with email and role member", m)
		}
	}
	nested, _ := collectMembers(t, h.conn, nestID)
	if len(nested) != 2 || nested[0].Type != connectors.MemberGroup || nested[0].AccountID != snap[0].ID || nested[1].Type != connectors.MemberUser {
		t.Errorf("nested members = %+v, want the group then the dev user", nested)
	}
	cust, _ := collectMembers(t, h.conn, custID)
	if len(cust) != 1 || cust[0].Type != "user:rev_user" || cust[0].Email != "customer@example.org" {
		t.Errorf("rev members = %+v, want one user:rev_user with normalized email", cust)
	}

	accounts, al := collectAccounts(t, h.conn, nil)
	if !al.Complete || len(accounts) != 40 {
		t.Fatalf("ListAccounts(nil) = %d, %+v; want 40 complete", len(accounts), al)
	}
	for _, a := range accounts {
		if a.Email == "" || a.DisplayName == "" || a.State != "active" || a.Hash == "" {
			t.Errorf("account %+v lacks email/name/state/hash", a)
		}
	}
	// A few ids: one dev-users.get each; a missing id is skipped; a rev user via rev-users.get.
	few := []string{accounts[3].ID, accounts[5].ID, "don:identity:dvrv-us-1:devo/acme:devu/9999", revID}
	h.sim.Counter().Reset()
	got, fl := collectAccounts(t, h.conn, few)
	if !fl.Complete || len(got) != 3 || got[0].ID != accounts[3].ID || got[2].ID != revID {
		t.Fatalf("ListAccounts(few) = %+v, %+v", got, fl)
	}
	if n := h.sim.Counter().Count("dev-users.get"); n != 3 {
		t.Errorf("dev-users.get requests = %d, want 3", n)
	}
	// Many ids: one filtered listing.
	var many []string
	for _, a := range accounts[:30] {
		many = append(many, a.ID)
	}
	h.sim.Counter().Reset()
	got, _ = collectAccounts(t, h.conn, many)
	if len(got) != 30 || h.sim.Counter().Count("dev-users.get") != 0 || h.sim.Counter().Count("dev-users.list") != 4 {
		t.Errorf("ListAccounts(30 ids) = %d accounts with counts %v", len(got), h.sim.Counter().Snapshot())
	}

	a, err := h.conn.FindAccountByEmail(ctx, "  "+strings.ToUpper(tenant.People[7].Email))
	if err != nil || a.Email != tenant.People[7].Email {
		t.Fatalf("FindAccountByEmail = %+v, %v", a, err)
	}
	if _, err := h.conn.FindAccountByEmail(ctx, "nobody@example.com"); !errors.Is(err, connectors.ErrNotFound) {
		t.Fatalf("FindAccountByEmail(unknown) error = %v, want ErrNotFound", err)
	}
	g, err := h.conn.FindGroupByName(ctx, "Dynamic devs")
	if err != nil || g.ID != dynID || !g.MembershipManaged {
		t.Fatalf("FindGroupByName(dynamic) = %+v, %v", g, err)
	}
	if _, err := h.conn.FindGroupByName(ctx, "Nope"); !errors.Is(err, connectors.ErrNotFound) {
		t.Fatalf("FindGroupByName(unknown) error = %v, want ErrNotFound", err)
	}
	g, err = h.conn.GetGroup(ctx, dynID)
	if err != nil || !g.MembershipManaged || g.Name != "Dynamic devs" {
		t.Fatalf("GetGroup(dynamic) = %+v, %v", g, err)
	}
	if _, err := h.conn.GetGroup(ctx, "don:identity:dvrv-us-1:devo/acme:group/999"); !errors.Is(err, connectors.ErrNotFound) {
		t.Fatalf("GetGroup(unknown) error = %v, want ErrNotFound", err)
	}

	// Writes.
	created, err := h.conn.CreateGroup(ctx, connectors.GroupSpec{Name: "Synced team"})
	if err != nil {
		t.Fatalf("CreateGroup: %v", err)
	}
	if created.Description != DefaultDescription || created.MembershipManaged || !strings.Contains(created.ID, ":group/") {
		t.Errorf("created group = %+v", created)
	}
	if _, err := h.conn.CreateGroup(ctx, connectors.GroupSpec{Name: "Synced team", Description: "again"}); !errors.Is(err, connectors.ErrPermanent) {
		t.Errorf("duplicate CreateGroup error = %v, want a permanent conflict", err)
	}
	updated, err := h.conn.UpdateGroup(ctx, created.ID, connectors.GroupSpec{Name: "Synced team 2", Description: "Team two"})
	if err != nil || updated.Name != "Synced team 2" || updated.Description != "Team two" {
		t.Fatalf("UpdateGroup = %+v, %v", updated, err)
	}
	ids := []string{accounts[0].ID, accounts[1].ID}
	for range 2 { // the second round proves adds and removes are idempotent in effect
		for _, id := range ids {
			if err := h.conn.AddMembers(ctx, created.ID, []string{id}); err != nil {
				t.Fatalf("AddMembers: %v", err)
			}
		}
	}
	if err := h.conn.AddMembers(ctx, custID, []string{revID}); err != nil {
		t.Fatalf("AddMembers(rev user, already there): %v", err)
	}
	for range 2 {
		if err := h.conn.RemoveMembers(ctx, created.ID, []string{accounts[1].ID}); err != nil {
			t.Fatalf("RemoveMembers: %v", err)
		}
	}
	if err := h.conn.RemoveMembers(ctx, "don:identity:dvrv-us-1:devo/acme:group/999", []string{accounts[1].ID}); !errors.Is(err, connectors.ErrNotFound) {
		t.Errorf("RemoveMembers(missing group) error = %v, want ErrNotFound", err)
	}
	if err := h.conn.AddMembers(ctx, dynID, []string{accounts[1].ID}); !errors.Is(err, connectors.ErrPermanent) {
		t.Errorf("AddMembers(dynamic group) error = %v, want permanent", err)
	}
	creates, adds, removes := h.sim.Effects().Totals()
	if creates != 1 || adds != 2 || removes != 1 || h.sim.Effects().MaxAdds() != 1 {
		t.Errorf("effects creates=%d adds=%d removes=%d maxAdds=%d; want 1, 2, 1, 1", creates, adds, removes, h.sim.Effects().MaxAdds())
	}
	var state *simkit.GroupState
	for _, st := range h.sim.Snapshot() {
		if st.ID == created.ID {
			state = &st
		}
	}
	if state == nil || state.Name != "Synced team 2" || state.Description != "Team two" ||
		len(state.MemberEmails) != 1 || state.MemberEmails[0] != accounts[0].Email {
		t.Fatalf("simulator state of created group = %+v", state)
	}
}

func TestPaging(t *testing.T) {
	const size = 10
	for _, n := range []int{0, 1, size, size + 1, 5*size + 3} {
		t.Run(fmt.Sprint(n), func(t *testing.T) {
			h := newHarness(t, devrevsim.Options{}, nil)
			tenant := simkit.Generate(simkit.GenOptions{Groups: n, People: max(n, 1), MembersPerGroup: n, Seed: 1})
			if n == 0 {
				tenant.Groups = []simkit.TenantGroup{{Name: "empty"}}
			}
			h.sim.Seed(tenant)
			minPages := max(1, (n+size-1)/size)

			groups, l := collectGroups(t, h.conn)
			wantGroups := max(n, 1)
			wantPages := max(1, (wantGroups+size-1)/size)
			if len(groups) != wantGroups || !l.Complete || l.Pages != wantPages+1 {
				t.Errorf("groups: %d, %+v; want %d complete in %d pages (+1 dynamic probe)", len(groups), l, wantGroups, wantPages)
			}
			if c := h.sim.Counter().Count("groups.list"); c != wantPages+1 {
				t.Errorf("groups.list requests = %d, want %d", c, wantPages+1)
			}
			members, ml := collectMembers(t, h.conn, groups[0].ID)
			if len(members) != n || !ml.Complete || ml.Pages != minPages || h.sim.Counter().Count("groups.members.list") != minPages {
				t.Errorf("members: %d, %+v, %d requests; want %d in %d pages", len(members), ml, h.sim.Counter().Count("groups.members.list"), n, minPages)
			}
			accounts, al := collectAccounts(t, h.conn, nil)
			people := max(n, 1)
			if len(accounts) != people || !al.Complete || al.Pages != max(1, (people+size-1)/size) {
				t.Errorf("accounts: %d, %+v; want %d", len(accounts), al, people)
			}
			seen := map[string]bool{}
			for _, a := range accounts {
				if seen[a.ID] {
					t.Fatalf("account %s listed twice", a.ID)
				}
				seen[a.ID] = true
			}
		})
	}
}

func TestRepeatedCursorStops(t *testing.T) {
	h := newHarness(t, devrevsim.Options{}, nil)
	h.sim.Seed(simkit.Generate(simkit.GenOptions{Groups: 1, People: 50, MembersPerGroup: 50}))
	gid := h.sim.Snapshot()[0].ID
	h.sim.RepeatCursorNext("groups.members.list", 1)
	l, err := h.conn.ListMembers(t.Context(), gid, func([]connectors.Member) error { return nil })
	if err == nil || !strings.Contains(err.Error(), "repeated a pagination cursor") || l.Complete {
		t.Fatalf("ListMembers with a looping cursor = %+v, %v; want a repeated-cursor error, incomplete", l, err)
	}
	if n := h.sim.Counter().Count("groups.members.list"); n != 2 {
		t.Fatalf("requests = %d, want 2 (stopped at the repeat)", n)
	}
}

func TestIgnoredCursorStops(t *testing.T) {
	h := newHarness(t, devrevsim.Options{}, nil)
	h.sim.Seed(simkit.Generate(simkit.GenOptions{Groups: 1, People: 50, MembersPerGroup: 50}))
	gid := h.sim.Snapshot()[0].ID
	h.sim.IgnoreCursorNext("groups.members.list", 1)
	l, err := h.conn.ListMembers(t.Context(), gid, func([]connectors.Member) error { return nil })
	if err == nil || !strings.Contains(err.Error(), "repeats the records") || l.Complete {
		t.Fatalf("ListMembers against a server ignoring the cursor = %+v, %v; want a repeated-page error, incomplete", l, err)
	}
	if n := h.sim.Counter().Count("groups.members.list"); n != 2 {
		t.Fatalf("requests = %d, want 2 (stopped at the repeat)", n)
	}
}

func TestErrors(t *testing.T) {
	seed := simkit.Generate(simkit.GenOptions{Groups: 1, People: 25, MembersPerGroup: 25})
	listMembers := func(h *harness) (connectors.Listing, error) {
		return h.conn.ListMembers(t.Context(), h.sim.Snapshot()[0].ID, func([]connectors.Member) error { return nil })
	}

	t.Run("unauthorized", func(t *testing.T) {
		h := newHarness(t, devrevsim.Options{Token: "the-right-token"}, nil)
		h.sim.Seed(seed)
		l, err := h.conn.ListGroups(t.Context(), func([]connectors.Group) error { return nil })
		if !errors.Is(err, connectors.ErrUnauthorized) || l.Complete {
			t.Fatalf("ListGroups with a wrong token = %+v, %v; want ErrUnauthorized", l, err)
		}
		if !strings.Contains(err.Error(), "unauthenticated") {
			t.Errorf("error %q does not carry DevRev's type", err)
		}
		if strings.Contains(err.Error(), testToken) || strings.Contains(h.logs.String(), testToken) {
			t.Fatalf("token leaked: error %q, logs %q", err, h.logs.String())
		}
		if n := h.sim.Counter().Count("groups.list"); n != 1 {
			t.Errorf("401 retried: %d requests", n)
		}
	})

	t.Run("rate limited then success", func(t *testing.T) {
		h := newHarness(t, devrevsim.Options{}, nil)
		h.sim.Seed(seed)
		h.sim.Faults().RateLimitNext("groups.members.list", 1, 7*time.Second)
		l, err := listMembers(h)
		if err != nil || !l.Complete {
			t.Fatalf("ListMembers after a 429 = %+v, %v", l, err)
		}
		waits := h.Waits()
		if len(waits) == 0 || waits[0] < 7*time.Second || waits[0] > 8*time.Second {
			t.Fatalf("waits = %v, want the 7s the 429 asked for", waits)
		}
	})

	t.Run("rate limit wait beyond max_retry_wait", func(t *testing.T) {
		h := newHarness(t, devrevsim.Options{}, func(c *connectors.SystemConfig) { c.MaxRetryWait = 5 * time.Second })
		h.sim.Seed(seed)
		h.sim.Faults().RateLimitNext("groups.members.list", 1, time.Hour)
		_, err := listMembers(h)
		if !errors.Is(err, connectors.ErrRateLimited) || connectors.RetryAfterOf(err) < time.Hour {
			t.Fatalf("error = %v, want ErrRateLimited carrying the hour", err)
		}
	})

	t.Run("5xx retried up to max attempts", func(t *testing.T) {
		h := newHarness(t, devrevsim.Options{}, nil)
		h.sim.Seed(seed)
		h.sim.Faults().StatusNext("groups.members.list", -1, 503)
		l, err := listMembers(h)
		if !errors.Is(err, connectors.ErrRetryable) || l.Complete || !strings.Contains(err.Error(), "service_unavailable") {
			t.Fatalf("error = %v, listing %+v", err, l)
		}
		if n := h.sim.Counter().Count("groups.members.list"); n != 3 {
			t.Fatalf("requests = %d, want MaxAttempts (3)", n)
		}
	})

	t.Run("4xx not retried", func(t *testing.T) {
		h := newHarness(t, devrevsim.Options{}, nil)
		h.sim.Seed(seed)
		h.sim.Faults().StatusNext("groups.members.list", 1, 400)
		_, err := listMembers(h)
		if !errors.Is(err, connectors.ErrPermanent) {
			t.Fatalf("error = %v, want permanent", err)
		}
		if n := h.sim.Counter().Count("groups.members.list"); n != 1 {
			t.Fatalf("requests = %d, want 1", n)
		}
	})

	t.Run("create not repeated after 5xx", func(t *testing.T) {
		h := newHarness(t, devrevsim.Options{}, nil)
		h.sim.Faults().StatusNext("groups.create", 1, 500)
		if _, err := h.conn.CreateGroup(t.Context(), connectors.GroupSpec{Name: "x"}); !errors.Is(err, connectors.ErrRetryable) {
			t.Fatalf("error = %v, want retryable", err)
		}
		if n := h.sim.Counter().Count("groups.create"); n != 1 {
			t.Fatalf("groups.create sent %d times, want 1", n)
		}
	})

	t.Run("truncated body", func(t *testing.T) {
		h := newHarness(t, devrevsim.Options{}, nil)
		h.sim.Seed(seed)
		h.sim.Faults().TruncateNext("groups.members.list", 3)
		l, err := listMembers(h)
		if err == nil || l.Complete {
			t.Fatalf("ListMembers with truncated bodies = %+v, %v; want an error, incomplete", l, err)
		}
	})

	t.Run("truncated once then whole", func(t *testing.T) {
		h := newHarness(t, devrevsim.Options{}, nil)
		h.sim.Seed(seed)
		h.sim.Faults().TruncateNext("groups.members.list", 1)
		l, err := listMembers(h)
		if err != nil || !l.Complete || l.Items != 25 {
			t.Fatalf("ListMembers = %+v, %v; want the retry to complete it", l, err)
		}
	})

	t.Run("malformed JSON mid-listing", func(t *testing.T) {
		h := newHarness(t, devrevsim.Options{}, nil)
		h.sim.Seed(seed)
		var pages int
		h.sim.Faults().MalformedNext("groups.members.list", 1)
		l, err := h.conn.ListMembers(t.Context(), h.sim.Snapshot()[0].ID, func([]connectors.Member) error {
			pages++
			return nil
		})
		if !errors.Is(err, connectors.ErrPermanent) || l.Complete || !strings.Contains(err.Error(), "malformed response body") {
			t.Fatalf("ListMembers = %+v, %v; want a malformed-body error, incomplete", l, err)
		}
	})

	t.Run("cancellation stops at once", func(t *testing.T) {
		h := newHarness(t, devrevsim.Options{}, nil)
		h.sim.Seed(seed)
		ctx, cancel := context.WithCancel(t.Context())
		l, err := h.conn.ListMembers(ctx, h.sim.Snapshot()[0].ID, func([]connectors.Member) error {
			cancel()
			return nil
		})
		if !errors.Is(err, context.Canceled) || l.Complete {
			t.Fatalf("ListMembers after cancel = %+v, %v", l, err)
		}
		if n := h.sim.Counter().Count("groups.members.list"); n != 1 {
			t.Fatalf("requests after cancel = %d, want 1", n)
		}
	})

	t.Run("hung request cancelled", func(t *testing.T) {
		h := newHarness(t, devrevsim.Options{}, nil)
		h.sim.Seed(seed)
		h.sim.Faults().HangNext("groups.members.list", 1)
		ctx, cancel := context.WithCancel(t.Context())
		done := make(chan error, 1)
		go func() {
			_, err := h.conn.ListMembers(ctx, h.sim.Snapshot()[0].ID, func([]connectors.Member) error { return nil })
			done <- err
		}()
		deadline := time.Now().Add(5 * time.Second)
		for h.sim.Counter().Count("groups.members.list") == 0 {
			if time.Now().After(deadline) {
				t.Fatal("request never reached the simulator")
			}
			time.Sleep(time.Millisecond)
		}
		cancel()
		select {
		case err := <-done:
			if !errors.Is(err, context.Canceled) {
				t.Fatalf("error = %v, want context.Canceled", err)
			}
		case <-time.After(5 * time.Second):
			t.Fatal("ListMembers did not return after cancel")
		}
	})

	t.Run("fn error stops the listing", func(t *testing.T) {
		h := newHarness(t, devrevsim.Options{}, nil)
		h.sim.Seed(seed)
		boom := errors.New("boom")
		l, err := h.conn.ListMembers(t.Context(), h.sim.Snapshot()[0].ID, func([]connectors.Member) error { return boom })
		if !errors.Is(err, boom) || l.Complete {
			t.Fatalf("= %+v, %v; want boom, incomplete", l, err)
		}
	})
}

func TestNamesAndIDsRoundTrip(t *testing.T) {
	// Group numbers above 2^53 would lose digits through a float64.
	h := newHarness(t, devrevsim.Options{GroupNumberBase: 1<<53 + 1}, nil)
	names := []string{"Ünïcødé 团队 🚀", "<b>&amp;</b>", `Quote "double" and 'single'`, `back\slash`}
	created := map[string]string{}
	for _, n := range names {
		g, err := h.conn.CreateGroup(t.Context(), connectors.GroupSpec{Name: n, Description: n + " desc"})
		if err != nil {
			t.Fatalf("CreateGroup(%q): %v", n, err)
		}
		created[g.ID] = n
	}
	groups, _ := collectGroups(t, h.conn)
	for _, g := range groups {
		if created[g.ID] != g.Name || g.Description != g.Name+" desc" {
			t.Errorf("group %s: name %q desc %q, want %q", g.ID, g.Name, g.Description, created[g.ID])
		}
		if !strings.HasSuffix(g.ID, ":group/9007199254740994") && !strings.Contains(g.ID, ":group/900719925474099") {
			t.Errorf("id %s lost its big number", g.ID)
		}
		got, err := h.conn.GetGroup(t.Context(), g.ID)
		if err != nil || got.ID != g.ID || got.Name != g.Name {
			t.Errorf("GetGroup(%s) = %+v, %v", g.ID, got, err)
		}
	}
	if _, ok := created["don:identity:dvrv-us-1:devo/acme:group/9007199254740994"]; !ok {
		t.Errorf("first id = %v, want group/9007199254740994", created)
	}
	for _, n := range names {
		g, err := h.conn.FindGroupByName(t.Context(), n)
		if err != nil || g.Name != n {
			t.Errorf("FindGroupByName(%q) = %+v, %v", n, g, err)
		}
	}
}

func TestHeaders(t *testing.T) {
	h := newHarness(t, devrevsim.Options{}, nil)
	collectGroups(t, h.conn)
	for _, r := range h.Sent() {
		if got := r.Header.Get("Authorization"); got != "Bearer "+testToken {
			t.Errorf("%s: Authorization = %q", r.Path, got)
		}
		if got := r.Header.Get("X-Devrev-Scope"); got != "beta" {
			t.Errorf("%s: X-Devrev-Scope = %q, want beta", r.Path, got)
		}
		if r.Method != "POST" || r.Header.Get("Content-Type") != "application/json" {
			t.Errorf("%s: %s %s, want a JSON POST", r.Path, r.Method, r.Header.Get("Content-Type"))
		}
	}
	h = newHarness(t, devrevsim.Options{}, func(c *connectors.SystemConfig) {
		c.Options = map[string]string{OptionAPIScope: "public"}
	})
	collectGroups(t, h.conn)
	for _, r := range h.Sent() {
		if _, ok := r.Header["X-Devrev-Scope"]; ok {
			t.Errorf("api_scope public still sent X-Devrev-Scope")
		}
	}
}

// BenchmarkListGroups10k lists 10k groups in pages of 100 through the simulator.
func BenchmarkListGroups10k(b *testing.B) {
	h := newHarness(b, devrevsim.Options{}, func(c *connectors.SystemConfig) { c.PageSize = 100 })
	h.sim.Seed(simkit.Generate(simkit.GenOptions{Groups: 10_000, People: 10, Seed: 1}))
	b.ResetTimer()
	for range b.N {
		n := 0
		l, err := h.conn.ListGroups(b.Context(), func(gs []connectors.Group) error {
			n += len(gs)
			return nil
		})
		if err != nil || !l.Complete || n != 10_000 {
			b.Fatalf("listing %+v, %d groups, %v", l, n, err)
		}
	}
}

// fakeClock is a clock that moves only when the client sleeps.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) Sleep(ctx context.Context, d time.Duration) error {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
	return ctx.Err()
}

// TestPausesWhenQuotaSpent: DevRev reports its remaining budget on every response; when it
// reaches zero the connector waits for the window to reset instead of provoking a 429.
func TestPausesWhenQuotaSpent(t *testing.T) {
	clock := &fakeClock{t: time.Now()}
	h := newHarness(t, devrevsim.Options{Quota: 3, Now: clock.Now}, nil)
	h.onSleep = clock.Sleep
	h.sim.Seed(simkit.Generate(simkit.GenOptions{Groups: 1, People: 2}))
	id := h.sim.Snapshot()[0].ID
	for i := range 7 {
		if _, err := h.conn.GetGroup(t.Context(), id); err != nil {
			t.Fatalf("GetGroup #%d: %v", i, err)
		}
	}
	if n := h.sim.Counter().CountStatus("groups.get", 429) + h.sim.Counter().CountStatus("groups.list", 429); n != 0 {
		t.Fatalf("%d requests were throttled; the connector did not pause on X-Ratelimit-Remaining: 0", n)
	}
	var pauses []time.Duration
	for _, w := range h.Waits() {
		if w > time.Minute {
			pauses = append(pauses, w)
		}
	}
	if len(pauses) < 2 || pauses[0] > QuotaWindow+2*time.Second {
		t.Fatalf("waits = %v, want a pause up to the window reset each time the budget ran out", h.Waits())
	}
}

// TestSpentWindowWaitedOut: another client of the same token spent DevRev's 5-minute window;
// the 429 asks for the rest of it, and with the connector's defaults the listing waits for
// the reset and completes (the generic 2-minute max_retry_wait failed it at once).
func TestSpentWindowWaitedOut(t *testing.T) {
	clock := &fakeClock{t: time.Now()}
	h := newHarness(t, devrevsim.Options{Quota: 1000, Now: clock.Now}, nil)
	h.onSleep = clock.Sleep
	h.sim.Seed(simkit.Generate(simkit.GenOptions{Groups: 25, People: 2}))
	h.sim.SpendQuota()
	gs, l := collectGroups(t, h.conn)
	if len(gs) != 25 || !l.Complete {
		t.Fatalf("listed %d groups (complete %v), want all 25", len(gs), l.Complete)
	}
	if n := h.sim.Counter().CountStatus("groups.list", 429); n != 1 {
		t.Fatalf("%d 429s, want the one that announced the spent window", n)
	}
	var longest time.Duration
	for _, w := range h.Waits() {
		longest = max(longest, w)
	}
	if longest < 4*time.Minute {
		t.Fatalf("longest wait %s; want the rest of the 5-minute window waited out", longest)
	}
}

// TestLongListingUnderSmallWindow: a window of 20 requests per 2 s (real time) and a client
// allowed 1e6 req/s: a listing of 60 pages paces itself to the X-Ratelimit headers and
// finishes without a single 429.
func TestLongListingUnderSmallWindow(t *testing.T) {
	h := newHarness(t, devrevsim.Options{Quota: 20, QuotaWindow: 2 * time.Second}, func(c *connectors.SystemConfig) {
		c.PageSize = 1
	})
	h.onSleep = func(ctx context.Context, d time.Duration) error { return apiclient.SleepContext(ctx, d) }
	h.sim.Seed(simkit.Generate(simkit.GenOptions{Groups: 50, People: 2}))
	gs, l := collectGroups(t, h.conn)
	if len(gs) != 50 || !l.Complete {
		t.Fatalf("listed %d groups (complete %v), want all 50", len(gs), l.Complete)
	}
	if n := h.sim.Counter().CountStatus("groups.list", 429); n != 0 {
		t.Fatalf("%d requests throttled (429); the listing ran the window dry", n)
	}
	if n := h.sim.Counter().Count("groups.list"); n < 50 {
		t.Fatalf("%d list requests for 50 one-group pages", n)
	}
}

// TestNotFoundMeansGoneOnlyFromDevRev: dev-users.get answering 404 with DevRev's own
// not_found body means the account is gone (skipped); a 404 with any other body (a wrong
// route, a proxy) fails the lookup instead of dropping the account. A duplicate add,
// answered with one of the spec's 400s, is success.
func TestNotFoundMeansGoneOnlyFromDevRev(t *testing.T) {
	h := newHarness(t, devrevsim.Options{}, nil)
	h.sim.Seed(simkit.Generate(simkit.GenOptions{Groups: 1, People: 3, MembersPerGroup: 2, Seed: 4}))
	ctx := t.Context()
	members, _ := collectMembers(t, h.conn, firstGroupID(t, h.conn))
	id := members[0].AccountID
	h.sim.Faults().Inject(simkit.Rule{Path: "dev-users.get", Status: 404, ResponseBody: `{"error": "no route"}`, Times: 1})
	if _, err := h.conn.ListAccounts(ctx, []string{id}, func([]connectors.Account) error { return nil }); err == nil {
		t.Fatal("a 404 without DevRev's not_found body was taken as a deleted account")
	}
	gone := "don:identity:dvrv-us-1:devo/acme:devu/999999"
	as, _ := collectAccounts(t, h.conn, []string{gone, id})
	if len(as) != 1 || as[0].ID != id {
		t.Fatalf("accounts = %+v, want only %s (the other is gone)", as, id)
	}
	if err := h.conn.AddMembers(ctx, firstGroupID(t, h.conn), []string{id}); err != nil {
		t.Fatalf("adding a member who is already there: %v", err)
	}
}

func firstGroupID(t *testing.T, c connectors.Connector) string {
	t.Helper()
	gs, _ := collectGroups(t, c)
	if len(gs) == 0 {
		t.Fatal("no groups")
	}
	return gs[0].ID
}
