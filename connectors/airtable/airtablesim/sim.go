// Package airtablesim simulates the two Airtable APIs the airtable connector uses, on one
// http.Handler: the Web API's enterprise meta endpoints under /v0/meta/ (read groups with
// members inline, enterprise account, users by id or email) and SCIM 2.0 under /scim/v2/
// (group list/filter, create, get, put, patch, delete; user list/filter). State is held
// in compact structs and rendered per request, so a tenant of 10k groups, 100k people and
// 1M memberships seeds in well under a second.
//
// What it reproduces: Bearer auth (401 in each API's own shape), the meta error shapes
// ({"error":{"type","message"}} and the bare {"error":"NOT_FOUND"}), SCIM error bodies with
// a numeric status, 400 "invalid group ID" for unknown SCIM groups, displayName uniqueness
// (409 uniqueness, RFC 7644 §3.3; Airtable documents the rule but not the status), SCIM
// ListResponse envelopes with startIndex/count, PatchOp operations applied in order and
// all-or-nothing, and the rate-limit signal: 429 with no Retry-After (Airtable documents
// none) and, with Faults().Limit(rate, burst, 30*time.Second), a 30 s lockout.
package airtablesim

import (
	"fmt"
	"math/rand/v2"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/groupsync/groupsync/connectors/simkit"
)

// Route labels (route templates) for Counter and Faults.
const (
	RouteEnterprise = "GET /v0/meta/enterpriseAccounts/{enterpriseAccountId}"
	RouteUsers      = "GET /v0/meta/enterpriseAccounts/{enterpriseAccountId}/users"
	RouteGroup      = "GET /v0/meta/groups/{groupId}"
	RouteSCIMList   = "GET /scim/v2/Groups"
	RouteSCIMCreate = "POST /scim/v2/Groups"
	RouteSCIMGet    = "GET /scim/v2/Groups/{groupId}"
	RouteSCIMPut    = "PUT /scim/v2/Groups/{groupId}"
	RouteSCIMPatch  = "PATCH /scim/v2/Groups/{groupId}"
	RouteSCIMDelete = "DELETE /scim/v2/Groups/{groupId}"
	RouteSCIMUsers  = "GET /scim/v2/Users"
	RouteSCIMUser   = "GET /scim/v2/Users/{userId}"
	RouteUnknown    = "unknown"
)

// SCIMPrefix is where the SCIM API lives on the handler; point the connector's scim_url at
// server URL + SCIMPrefix.
const SCIMPrefix = "/scim/v2"

// MaxURLLength is the Web API's URL length limit (16,000 characters).
const MaxURLLength = 16000

// Options configure a Server.
type Options struct {
	// Token is the bearer token every request must carry. Default "airtable-sim-token".
	Token string
	// EnterpriseID is the enterprise account id. Default: generated from Seed.
	EnterpriseID string
	// Seed makes generated ids and fault randomness deterministic. Default 1.
	Seed uint64
	// PageSize caps a SCIM list page (the API returns every item when count is absent);
	// 0 means no cap.
	PageSize int
	// Now is the clock for createdTime/updatedTime. Default: a fixed start
	// (2024-01-02T03:04:05.000Z) that advances one second per write, so output is
	// reproducible.
	Now func() time.Time
	// MemberValue is the form a SCIM PATCH add on members must take: "" accepts both,
	// MemberValueObject only Airtable's documented single object ({"value": "usr…"}),
	// MemberValueArray only RFC 7644's array ([{"value": "usr…"}]).
	MemberValue string
}

// SetMemberValue changes Options.MemberValue: the form of members value a SCIM add takes.
func (s *Server) SetMemberValue(form string) {
	s.mu.Lock()
	s.opt.MemberValue = form
	s.mu.Unlock()
}

// Forms of a SCIM PATCH add's members value (Options.MemberValue).
const (
	MemberValueObject = "object"
	MemberValueArray  = "array"
)

// Server is the simulator. It implements simkit.Sim.
type Server struct {
	opt     Options
	faults  *simkit.Faults
	counter *simkit.Counter
	effects *simkit.Effects
	meta    http.Handler
	scim    http.Handler

	mu          sync.Mutex
	rng         *rand.Rand
	ent         string
	entCreated  time.Time
	tick        time.Time
	users       []user
	userByID    map[string]int32
	userByEmail map[string]int32 // lower-cased email
	domains     map[string]bool
	groups      []*group // slots; nil once deleted
	groupByID   map[string]int32
	groupByName map[string]int32 // exact name (uniqueness)

	// knobs
	lenientRemove bool
	statusString  bool
	duplicateIDs  bool
	dangling      []string
}

type user struct {
	id      string
	email   string
	first   string
	last    string
	active  bool
	created time.Time
	groups  []int32 // group slots, for the users endpoint's groups[]
}

const (
	roleMember uint8 = iota
	roleManager
)

type member struct {
	u       int32
	role    uint8
	created time.Time
}

type group struct {
	id      string
	name    string
	created time.Time
	updated time.Time
	members []member // sorted by u
}

var _ simkit.Sim = (*Server)(nil)

// New returns an empty simulator.
func New(o Options) *Server {
	if o.Token == "" {
		o.Token = "airtable-sim-token"
	}
	if o.Seed == 0 {
		o.Seed = 1
	}
	s := &Server{
		opt:     o,
		faults:  simkit.NewFaults(o.Seed),
		counter: simkit.NewCounter(),
		effects: simkit.NewEffects(),
	}
	s.reset()
	s.meta = s.faults.Middleware(http.HandlerFunc(s.serveMeta), route, s.writeMetaFault, s.counter)
	s.scim = s.faults.Middleware(http.HandlerFunc(s.serveSCIM), route, s.writeSCIMFault, s.counter)
	return s
}

func (s *Server) reset() {
	s.rng = rand.New(rand.NewPCG(s.opt.Seed, s.opt.Seed^0x5bd1e995))
	s.tick = time.Date(2024, 1, 2, 3, 4, 5, 0, time.UTC)
	s.users = nil
	s.userByID = map[string]int32{}
	s.userByEmail = map[string]int32{}
	s.domains = map[string]bool{}
	s.groups = nil
	s.groupByID = map[string]int32{}
	s.groupByName = map[string]int32{}
	s.dangling = nil
	s.ent = s.opt.EnterpriseID
	if s.ent == "" {
		s.ent = s.newID("ent", nil)
	}
	s.entCreated = s.tick
}

// ServeHTTP routes to the meta or the SCIM API; both share faults, counters and state.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.URL.Path == SCIMPrefix || strings.HasPrefix(r.URL.Path, SCIMPrefix+"/") {
		s.scim.ServeHTTP(w, r)
		return
	}
	s.meta.ServeHTTP(w, r)
}

// route maps a request to its route label.
func route(r *http.Request) string {
	p := strings.TrimSuffix(r.URL.Path, "/")
	seg := strings.Split(strings.TrimPrefix(p, "/"), "/")
	switch {
	case len(seg) == 4 && seg[0] == "v0" && seg[1] == "meta" && seg[2] == "enterpriseAccounts" && r.Method == http.MethodGet:
		return RouteEnterprise
	case len(seg) == 5 && seg[0] == "v0" && seg[1] == "meta" && seg[2] == "enterpriseAccounts" && seg[4] == "users" && r.Method == http.MethodGet:
		return RouteUsers
	case len(seg) == 4 && seg[0] == "v0" && seg[1] == "meta" && seg[2] == "groups" && r.Method == http.MethodGet:
		return RouteGroup
	case len(seg) == 3 && seg[0] == "scim" && seg[1] == "v2" && seg[2] == "Groups":
		switch r.Method {
		case http.MethodGet:
			return RouteSCIMList
		case http.MethodPost:
			return RouteSCIMCreate
		}
	case len(seg) == 4 && seg[0] == "scim" && seg[1] == "v2" && seg[2] == "Groups":
		switch r.Method {
		case http.MethodGet:
			return RouteSCIMGet
		case http.MethodPut:
			return RouteSCIMPut
		case http.MethodPatch:
			return RouteSCIMPatch
		case http.MethodDelete:
			return RouteSCIMDelete
		}
	case len(seg) == 3 && seg[0] == "scim" && seg[1] == "v2" && seg[2] == "Users" && r.Method == http.MethodGet:
		return RouteSCIMUsers
	case len(seg) == 4 && seg[0] == "scim" && seg[1] == "v2" && seg[2] == "Users" && r.Method == http.MethodGet:
		return RouteSCIMUser
	}
	return RouteUnknown
}

// lastSegment is the id in /…/{id}.
func lastSegment(r *http.Request) string {
	p := strings.TrimSuffix(r.URL.Path, "/")
	return p[strings.LastIndexByte(p, '/')+1:]
}

const idAlphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"

// newID returns prefix + 14 alphanumerics, unique within taken. Callers hold s.mu.
func (s *Server) newID(prefix string, taken func(string) bool) string {
	for {
		b := make([]byte, 3+14)
		copy(b, prefix)
		for i := 3; i < len(b); i++ {
			b[i] = idAlphabet[s.rng.IntN(len(idAlphabet))]
		}
		id := string(b)
		if taken == nil || !taken(id) {
			return id
		}
	}
}

func (s *Server) userTaken(id string) bool  { _, ok := s.userByID[id]; return ok }
func (s *Server) groupTaken(id string) bool { _, ok := s.groupByID[id]; return ok }

// now returns the time of a write. Callers hold s.mu.
func (s *Server) now() time.Time {
	if s.opt.Now != nil {
		return s.opt.Now().UTC()
	}
	s.tick = s.tick.Add(time.Second)
	return s.tick
}

// Faults returns the fault knobs.
func (s *Server) Faults() *simkit.Faults { return s.faults }

// Counter returns the request counters, by route label.
func (s *Server) Counter() *simkit.Counter { return s.counter }

// Effects returns the counts of effective writes.
func (s *Server) Effects() *simkit.Effects { return s.effects }

// Token returns the bearer token the simulator accepts.
func (s *Server) Token() string { return s.opt.Token }

// EnterpriseID returns the enterprise account id.
func (s *Server) EnterpriseID() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.ent
}

// SetLenientRemove makes a PatchOp remove of an absent member a no-op instead of the RFC
// 7644 noTarget error (Airtable's behaviour here is undocumented; the connector must cope
// with both).
func (s *Server) SetLenientRemove(on bool) {
	s.mu.Lock()
	s.lenientRemove = on
	s.mu.Unlock()
}

// SetSCIMStatusAsString renders the SCIM error status as a string ("400", as RFC 7644
// says) instead of a number (as Airtable's examples show).
func (s *Server) SetSCIMStatusAsString(on bool) {
	s.mu.Lock()
	s.statusString = on
	s.mu.Unlock()
}

// DuplicateGroupIDs makes the enterprise account list every group id twice.
func (s *Server) DuplicateGroupIDs(on bool) {
	s.mu.Lock()
	s.duplicateIDs = on
	s.mu.Unlock()
}

// AddDanglingGroupID makes the enterprise account list a group id that no longer exists
// (a group deleted between the id listing and its fetch) and returns it.
func (s *Server) AddDanglingGroupID() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	id := s.newID("ugp", s.groupTaken)
	s.dangling = append(s.dangling, id)
	return id
}

// Seed replaces the state with the tenant: one user per person, then the groups.
func (s *Server) Seed(t simkit.Tenant) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.reset()
	s.users = make([]user, 0, len(t.People))
	s.userByID = make(map[string]int32, len(t.People))
	s.userByEmail = make(map[string]int32, len(t.People))
	idx := make([]int32, len(t.People))
	for i, p := range t.People {
		idx[i] = s.addUser(p)
	}
	s.groups = make([]*group, 0, len(t.Groups))
	for _, tg := range t.Groups {
		g := &group{id: s.newID("ugp", s.groupTaken), name: tg.Name, created: s.tick, updated: s.tick}
		managers := make(map[int32]bool, len(tg.Managers))
		for _, m := range tg.Managers {
			if int(m) < len(tg.Members) {
				managers[idx[tg.Members[m]]] = true
			}
		}
		g.members = make([]member, 0, len(tg.Members))
		for _, pi := range tg.Members {
			m := member{u: idx[pi], created: s.tick}
			if managers[m.u] {
				m.role = roleManager
			}
			g.members = append(g.members, m)
		}
		slices.SortFunc(g.members, func(a, b member) int { return int(a.u - b.u) })
		g.members = slices.CompactFunc(g.members, func(a, b member) bool { return a.u == b.u })
		s.insertGroup(g)
	}
}

// AddPerson creates a user (no group) and returns its id; an email already known returns
// the existing user's id.
func (s *Server) AddPerson(p simkit.Person) string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.users[s.addUser(p)].id
}

// addUser creates a user or returns the one with that email. Callers hold s.mu.
func (s *Server) addUser(p simkit.Person) int32 {
	email := strings.TrimSpace(p.Email)
	key := strings.ToLower(email)
	if i, ok := s.userByEmail[key]; ok {
		return i
	}
	i := int32(len(s.users))
	s.users = append(s.users, user{id: s.newID("usr", s.userTaken), email: email, first: p.First, last: p.Last, active: true, created: s.tick})
	s.userByID[s.users[i].id] = i
	s.userByEmail[key] = i
	if at := strings.LastIndexByte(key, '@'); at >= 0 {
		s.domains[key[at+1:]] = true
	}
	return i
}

// insertGroup stores a new group and indexes it. Callers hold s.mu.
func (s *Server) insertGroup(g *group) {
	slot := int32(len(s.groups))
	s.groups = append(s.groups, g)
	s.groupByID[g.id] = slot
	s.groupByName[g.name] = slot
	for _, m := range g.members {
		s.users[m.u].groups = append(s.users[m.u].groups, slot)
	}
}

// Snapshot lists every group sorted by name, with members' emails lower-cased and sorted.
func (s *Server) Snapshot() []simkit.GroupState {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]simkit.GroupState, 0, len(s.groupByID))
	for _, g := range s.groups {
		if g == nil {
			continue
		}
		emails := make([]string, len(g.members))
		for i, m := range g.members {
			emails[i] = strings.ToLower(s.users[m.u].email)
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

// MemberRoles returns a group's members as user id → role ("member" or "manager"), for
// tests that check roles survive SCIM writes.
func (s *Server) MemberRoles(groupID string) map[string]string {
	s.mu.Lock()
	defer s.mu.Unlock()
	slot, ok := s.groupByID[groupID]
	if !ok {
		return nil
	}
	out := map[string]string{}
	for _, m := range s.groups[slot].members {
		out[s.users[m.u].id] = roleName(m.role)
	}
	return out
}

func roleName(r uint8) string {
	if r == roleManager {
		return "manager"
	}
	return "member"
}

// timeString renders Airtable's ISO 8601 times with milliseconds.
func timeString(t time.Time) string { return t.UTC().Format("2006-01-02T15:04:05.000Z") }

func (u *user) name() string { return strings.TrimSpace(u.first + " " + u.last) }

func (s *Server) String() string { return fmt.Sprintf("airtablesim(%s)", s.ent) }
