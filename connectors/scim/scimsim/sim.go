// Package scimsim simulates a SCIM 2.0 service provider (RFC 7643, RFC 7644) on one
// http.Handler under Prefix: discovery (/ServiceProviderConfig, /ResourceTypes, /Schemas),
// Users (list, filter, get) and Groups (list, filter, create, get, PUT, PATCH, DELETE).
//
// What it reproduces of the RFC: bearer auth (401 with WWW-Authenticate), SCIM error bodies
// with status as a string (RFC 7644 §3.12), application/scim+json, ListResponse paging with
// startIndex/count capped at filter.maxResults (§3.4.2.4), `eq` filters joined by `or` on
// userName, emails.value, displayName and id (case-insensitive where the core schema says
// caseExact false), excludedAttributes=members, PatchOp add/remove/replace with and
// without path and with the members[value eq "…"] value filter, applied in order and all or
// nothing (§3.5.2), noTarget for a remove that matches nothing, 409 uniqueness on
// displayName, ETags (meta.version, the ETag header, If-Match → 412) and 429 with
// Retry-After. Knobs turn features off (PATCH, filtering, ETags, the whole
// ServiceProviderConfig), make members read-only in /Schemas, and make listings claim more
// than they return.
package scimsim

import (
	"fmt"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/groupsync/groupsync/connectors/simkit"
)

// Prefix is where the SCIM API lives on the handler: point base_url at server URL + Prefix.
const Prefix = "/scim/v2"

// Route labels (route templates) for Counter and Faults.
const (
	RouteSPC           = "GET /ServiceProviderConfig"
	RouteResourceTypes = "GET /ResourceTypes"
	RouteSchemas       = "GET /Schemas"
	RouteGroups        = "GET /Groups"
	RouteGroupCreate   = "POST /Groups"
	RouteGroup         = "GET /Groups/{id}"
	RouteGroupPut      = "PUT /Groups/{id}"
	RouteGroupPatch    = "PATCH /Groups/{id}"
	RouteGroupDelete   = "DELETE /Groups/{id}"
	RouteUsers         = "GET /Users"
	RouteUser          = "GET /Users/{id}"
	RouteUnknown       = "unknown"
)

// DefaultMaxResults is the page cap (filter.maxResults) unless Options say otherwise.
const DefaultMaxResults = 100

// Options configure a Server.
type Options struct {
	// Token is the bearer token every request must carry. Default "scim-sim-token".
	Token string
	// MaxResults caps a page; default DefaultMaxResults.
	MaxResults int
	// Now is the clock for meta times. Default: a fixed start advancing one second per
	// write, so output is reproducible.
	Now func() time.Time
}

// Server is the simulator. It implements simkit.Sim and simkit.AccountKnobs.
type Server struct {
	opt     Options
	faults  *simkit.Faults
	counter *simkit.Counter
	effects *simkit.Effects
	handler http.Handler

	mu     sync.Mutex
	tick   time.Time
	nextID int
	users  []*user // in creation order; nil once deleted
	byUser map[string]*user
	groups []*group // in creation order; nil once deleted
	byID   map[string]*group
	knobs  knobs
}

// knobs are the provider's features and quirks, all RFC-conformant by default.
type knobs struct {
	noPatch, noFilter, noETag, noSPC bool
	membersReadOnly                  bool
	lenientRemove                    bool
	// phantom is added to every listing's totalResults: a provider claiming more than it
	// returns.
	phantom int
}

type user struct {
	id      string
	email   string
	first   string
	last    string
	active  bool
	created time.Time
	changed time.Time
}

type group struct {
	id      string
	name    string
	members []string // user ids, in the order added
	created time.Time
	changed time.Time
	version int
}

var (
	_ simkit.Sim          = (*Server)(nil)
	_ simkit.AccountKnobs = (*Server)(nil)
)

// New returns an empty simulator.
func New(o Options) *Server {
	if o.Token == "" {
		o.Token = "scim-sim-token"
	}
	if o.MaxResults <= 0 {
		o.MaxResults = DefaultMaxResults
	}
	s := &Server{opt: o, faults: simkit.NewFaults(1), counter: simkit.NewCounter(), effects: simkit.NewEffects()}
	s.reset()
	s.handler = s.faults.Middleware(http.HandlerFunc(s.serve), route, s.writeFault, s.counter)
	return s
}

func (s *Server) reset() {
	s.tick = time.Date(2024, 1, 2, 3, 4, 5, 0, time.UTC)
	s.nextID = 0
	s.users, s.byUser = nil, map[string]*user{}
	s.groups, s.byID = nil, map[string]*group{}
}

// ServeHTTP serves the API under Prefix.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) { s.handler.ServeHTTP(w, r) }

// Token returns the bearer token the simulator accepts.
func (s *Server) Token() string { return s.opt.Token }

// Faults returns the fault knobs.
func (s *Server) Faults() *simkit.Faults { return s.faults }

// Counter returns the request counters, by route label.
func (s *Server) Counter() *simkit.Counter { return s.counter }

// Effects returns the counts of effective writes.
func (s *Server) Effects() *simkit.Effects { return s.effects }

func (s *Server) set(fn func(k *knobs)) {
	s.mu.Lock()
	fn(&s.knobs)
	s.mu.Unlock()
}

// SetPatch turns PATCH support on (the default) or off: ServiceProviderConfig says so and
// PATCH answers 501.
func (s *Server) SetPatch(on bool) { s.set(func(k *knobs) { k.noPatch = !on }) }

// SetFilter turns filtering on (the default) or off: ServiceProviderConfig says so and a
// filter is refused with 400 invalidFilter.
func (s *Server) SetFilter(on bool) { s.set(func(k *knobs) { k.noFilter = !on }) }

// SetETag turns ETags on (the default) or off: no meta.version, no ETag header, If-Match
// ignored.
func (s *Server) SetETag(on bool) { s.set(func(k *knobs) { k.noETag = !on }) }

// SetServiceProviderConfig makes /ServiceProviderConfig answer (the default) or 404.
func (s *Server) SetServiceProviderConfig(on bool) { s.set(func(k *knobs) { k.noSPC = !on }) }

// SetMembersReadOnly marks the Group schema's members readOnly in /Schemas (writes to
// members are then refused with 400 mutability).
func (s *Server) SetMembersReadOnly(on bool) { s.set(func(k *knobs) { k.membersReadOnly = on }) }

// SetLenientRemove makes a remove that matches nothing a no-op instead of noTarget.
func (s *Server) SetLenientRemove(on bool) { s.set(func(k *knobs) { k.lenientRemove = on }) }

// SetPhantomResults makes every listing claim n more totalResults than it has: a provider
// whose listing ends short.
func (s *Server) SetPhantomResults(n int) { s.set(func(k *knobs) { k.phantom = n }) }

// now returns the time of a write. Callers hold s.mu.
func (s *Server) now() time.Time {
	if s.opt.Now != nil {
		return s.opt.Now().UTC()
	}
	s.tick = s.tick.Add(time.Second)
	return s.tick
}

// newID returns a fresh id shaped like a UUID (RFC 7643 §3.1 wants them opaque). Callers
// hold s.mu.
func (s *Server) newID() string {
	s.nextID++
	return fmt.Sprintf("%08x-0000-4000-8000-%012x", s.nextID*2654435761%(1<<32), s.nextID)
}

// Seed replaces the state with the tenant: one user per person, then the groups.
func (s *Server) Seed(t simkit.Tenant) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.reset()
	ids := make([]string, len(t.People))
	for i, p := range t.People {
		ids[i] = s.addUser(p)
	}
	for _, tg := range t.Groups {
		g := &group{id: s.newID(), name: tg.Name, created: s.tick, changed: s.tick, version: 1}
		for _, m := range tg.Members {
			if !slices.Contains(g.members, ids[m]) {
				g.members = append(g.members, ids[m])
			}
		}
		s.groups = append(s.groups, g)
		s.byID[g.id] = g
	}
}

// AddPerson creates a user (no group) and returns its id; a known email returns that
// user's id.
func (s *Server) AddPerson(p simkit.Person) string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.addUser(p)
}

// addUser creates a user, or returns the one with that email. Callers hold s.mu.
func (s *Server) addUser(p simkit.Person) string {
	email := strings.TrimSpace(p.Email)
	if u := s.userByEmail(email); u != nil {
		return u.id
	}
	u := &user{id: s.newID(), email: email, first: p.First, last: p.Last, active: true, created: s.tick, changed: s.tick}
	s.users = append(s.users, u)
	s.byUser[u.id] = u
	return u.id
}

// userByEmail finds a user by email, case-insensitively (emails are caseExact false in
// the core schema). Callers hold s.mu.
func (s *Server) userByEmail(email string) *user {
	for _, u := range s.users {
		if u != nil && strings.EqualFold(u.email, strings.TrimSpace(email)) {
			return u
		}
	}
	return nil
}

// SetAccountEmail changes a user's email (and userName, which follows it here).
func (s *Server) SetAccountEmail(email, newEmail string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	u := s.userByEmail(email)
	if u == nil {
		return false
	}
	u.email, u.changed = strings.TrimSpace(newEmail), s.now()
	return true
}

// DeactivateAccount sets a user's active to false; memberships stay.
func (s *Server) DeactivateAccount(email string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	u := s.userByEmail(email)
	if u == nil {
		return false
	}
	u.active, u.changed = false, s.now()
	return true
}

// DeleteAccount deletes a user: it leaves every group, and /Users/{id} answers 404.
func (s *Server) DeleteAccount(email string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	u := s.userByEmail(email)
	if u == nil {
		return false
	}
	for i, x := range s.users {
		if x == u {
			s.users[i] = nil
		}
	}
	delete(s.byUser, u.id)
	for _, g := range s.groups {
		if g != nil && slices.Contains(g.members, u.id) {
			g.members = slices.DeleteFunc(g.members, func(id string) bool { return id == u.id })
			g.changed, g.version = s.now(), g.version+1
		}
	}
	return true
}

// Snapshot lists every group sorted by name, with members' emails lower-cased and sorted.
func (s *Server) Snapshot() []simkit.GroupState {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []simkit.GroupState
	for _, g := range s.groups {
		if g == nil {
			continue
		}
		emails := make([]string, 0, len(g.members))
		for _, id := range g.members {
			if u := s.byUser[id]; u != nil {
				emails = append(emails, strings.ToLower(u.email))
			}
		}
		slices.Sort(emails)
		out = append(out, simkit.GroupState{ID: g.id, Name: g.name, MemberEmails: emails})
	}
	slices.SortFunc(out, func(a, b simkit.GroupState) int {
		if c := strings.Compare(a.Name, b.Name); c != 0 {
			return c
		}
		return strings.Compare(a.ID, b.ID)
	})
	return out
}
