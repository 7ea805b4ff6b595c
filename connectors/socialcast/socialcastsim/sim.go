// Package socialcastsim is an in-memory fake of the Socialcast REST API (the Rails `.json`
// routes groupsync uses): groups, group memberships and users, with page/per_page paging,
// HTTP Basic (or bearer) auth, Rails-style error bodies, and the `{"group": …}` root node on
// single-group answers. It backs the socialcast connector's tests, the end-to-end tests and
// the demo.
//
// Facts it follows (shared/reference/apis.md §2): ids are integers and group URLs accept a
// numeric id, the `id-slug` form (`2-testgr%C3%B8up2`) or the group's name; lists stop on a
// short page and carry no total; per_page defaults to 20 and is capped at 500; a group must
// be archived before it can be destroyed, and an archived group refuses changes.
// Assumptions where Socialcast documents nothing (marked so a live tenant can correct them):
// the 429 body, the 422 body (`{"errors": {"field": ["message"]}}`, Rails' respond_with),
// the 401 body (Rails' "HTTP Basic: Access denied."), name uniqueness among active groups,
// and the cap of 500 applied to every list, not only memberships.
package socialcastsim

import (
	"crypto/subtle"
	"net/http"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"unicode"

	"github.com/groupsync/groupsync/connectors/simkit"
)

// Defaults for Options left zero.
const (
	// DefaultUsername and DefaultPassword are the apidoc's example credentials, used when
	// Options sets no credential at all.
	DefaultUsername = "emily@socialcast.com"
	DefaultPassword = "demo"
	// DefaultPerPage is Socialcast's default page size (apidoc: per_page default 20).
	DefaultPerPage = 20
	// MaxPerPage is Socialcast's per_page cap (apidoc: max 500 on memberships).
	MaxPerPage = 500
	// DefaultHost is the community host used in rendered permalinks.
	DefaultHost = "demo.socialcast.test"
)

// Route labels: the endpoint names the Counter counts and Faults match. They are the route
// templates, so the connector uses the same strings for its metrics.
const (
	RouteGroupsList    = "GET /api/groups.json"
	RouteGroupsCreate  = "POST /api/groups.json"
	RouteGroupShow     = "GET /api/groups/{id}.json"
	RouteGroupUpdate   = "PUT /api/groups/{id}.json"
	RouteGroupDestroy  = "DELETE /api/groups/{id}.json"
	RouteGroupArchive  = "DELETE /api/groups/{id}/archive.json"
	RouteMemberships   = "GET /api/groups/{id}/memberships.json"
	RouteUsersList     = "GET /api/users.json"
	RouteUserShow      = "GET /api/users/{id}.json"
	RouteUsersSearch   = "GET /api/users/search.json"
	routeUnknown       = "unknown"
	routeWrongMethodOn = "method not allowed"
)

// Options configure a Server.
type Options struct {
	// Username and Password are the HTTP Basic credentials accepted. When neither they nor
	// Token are set, DefaultUsername/DefaultPassword are used.
	Username string
	Password string
	// Token, if set, is also accepted as an OAuth2 bearer token.
	Token string
	// PageSize is the per_page used when a request names none; 0 means DefaultPerPage.
	PageSize int
	// FirstID is the first id handed out to groups, users and memberships (1 if zero).
	// Tests set it above 2^53 to prove ids survive byte-exact.
	FirstID int64
	// Host is the community host in permalinks; "" means DefaultHost.
	Host string
	// FaultSeed seeds the fault injector's random source.
	FaultSeed uint64
	// GroupsRoot makes the groups list answer `{"groups": […]}` instead of a bare array
	// (both shapes are seen in Socialcast clients).
	GroupsRoot bool
	// ListCap, when > 0, caps per_page on the groups and users lists below what was asked
	// (their maximum is undocumented): a full page then comes back shorter than per_page
	// without being the last.
	ListCap int
}

// Server is the simulator. It implements simkit.Sim.
type Server struct {
	opts    Options
	faults  *simkit.Faults
	counter *simkit.Counter
	effects *simkit.Effects
	handler http.Handler

	mu     sync.Mutex
	nextID int64
	// users are kept in ascending id order, for binary search (DeleteAccount removes one).
	users  []user
	groups map[int64]*group
	// order lists live group ids ascending (Rails' default order), for paging.
	order []int64
	// groupsRoot and ignorePage are knobs tests flip at run time.
	groupsRoot bool
	ignorePage bool
}

type user struct {
	id    int64
	name  string
	email string
	// terminated is an account an admin deactivated (Socialcast shows active: false,
	// terminated: true).
	terminated bool
}

type group struct {
	id          int64
	name        string
	description string
	permission  string // public | private | external_contributor
	archived    bool
	ruleManaged bool
	members     []membership
}

// membership is kept compact (no JSON) so a million of them cost a few tens of megabytes.
type membership struct {
	id    int64
	user  int64
	admin bool
}

var _ simkit.Sim = (*Server)(nil)

// New returns an empty simulator.
func New(o Options) *Server {
	if o.Username == "" && o.Password == "" && o.Token == "" {
		o.Username, o.Password = DefaultUsername, DefaultPassword
	}
	if o.PageSize <= 0 {
		o.PageSize = DefaultPerPage
	}
	if o.PageSize > MaxPerPage {
		o.PageSize = MaxPerPage
	}
	if o.FirstID <= 0 {
		o.FirstID = 1
	}
	if o.Host == "" {
		o.Host = DefaultHost
	}
	s := &Server{
		opts:       o,
		faults:     simkit.NewFaults(o.FaultSeed),
		counter:    simkit.NewCounter(),
		effects:    simkit.NewEffects(),
		nextID:     o.FirstID,
		groups:     map[int64]*group{},
		groupsRoot: o.GroupsRoot,
	}
	s.handler = s.faults.Middleware(http.HandlerFunc(s.serve), routeOf, writeError, s.counter)
	return s
}

// ServeHTTP implements http.Handler.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) { s.handler.ServeHTTP(w, r) }

// Faults returns the fault knobs.
func (s *Server) Faults() *simkit.Faults { return s.faults }

// Counter returns the request counter.
func (s *Server) Counter() *simkit.Counter { return s.counter }

// Effects returns the effective-write counts.
func (s *Server) Effects() *simkit.Effects { return s.effects }

// SetGroupsRoot switches the groups list between a bare array (false) and `{"groups": […]}`.
func (s *Server) SetGroupsRoot(on bool) {
	s.mu.Lock()
	s.groupsRoot = on
	s.mu.Unlock()
}

// IgnorePageParam makes every list answer page 1 whatever `page` asks for, as a server (or a
// proxy) that drops the query would: a client that trusts it pages forever.
func (s *Server) IgnorePageParam(on bool) {
	s.mu.Lock()
	s.ignorePage = on
	s.mu.Unlock()
}

// Seed replaces the state with the tenant. Ids restart at Options.FirstID: people first,
// then groups, then memberships, so the same tenant always gets the same ids.
func (s *Server) Seed(t simkit.Tenant) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.nextID = s.opts.FirstID
	s.users = make([]user, 0, len(t.People))
	for _, p := range t.People {
		s.addUserLocked(p)
	}
	s.groups = make(map[int64]*group, len(t.Groups))
	s.order = make([]int64, 0, len(t.Groups))
	userIDs := make([]int64, len(s.users))
	for i := range s.users {
		userIDs[i] = s.users[i].id
	}
	for _, tg := range t.Groups {
		g := &group{id: s.newIDLocked(), name: tg.Name, description: tg.Description, permission: "public"}
		if tg.Private {
			g.permission = "private"
		}
		g.members = make([]membership, len(tg.Members))
		for i, idx := range tg.Members {
			g.members[i] = membership{user: userIDs[idx]}
		}
		for _, m := range tg.Managers {
			if int(m) < len(g.members) {
				g.members[m].admin = true
			}
		}
		s.groups[g.id] = g
		s.order = append(s.order, g.id)
	}
	// Membership ids come after every group id, in group order, to stay deterministic.
	for _, id := range s.order {
		g := s.groups[id]
		for i := range g.members {
			g.members[i].id = s.newIDLocked()
		}
	}
}

// AddPerson creates a user and returns its id.
func (s *Server) AddPerson(p simkit.Person) string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return strconv.FormatInt(s.addUserLocked(p), 10)
}

// AddMember puts an existing user into an existing group, as an admin would in the web UI
// (the API has no documented member write). It reports whether anything changed.
func (s *Server) AddMember(groupID, userID string, admin bool) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	gid, err1 := strconv.ParseInt(groupID, 10, 64)
	uid, err2 := strconv.ParseInt(userID, 10, 64)
	g := s.groups[gid]
	if err1 != nil || err2 != nil || g == nil || s.userLocked(uid) == nil {
		return false
	}
	for _, m := range g.members {
		if m.user == uid {
			return false
		}
	}
	g.members = append(g.members, membership{id: s.newIDLocked(), user: uid, admin: admin})
	s.effects.Added(groupID, userID)
	return true
}

// SetRuleManaged marks a group's membership as driven by membership rules.
func (s *Server) SetRuleManaged(groupID string, on bool) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	gid, err := strconv.ParseInt(groupID, 10, 64)
	g := s.groups[gid]
	if err != nil || g == nil {
		return false
	}
	g.ruleManaged = on
	return true
}

// SetPermission sets a group's permission mode (public, private, external_contributor).
func (s *Server) SetPermission(groupID, permission string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	gid, err := strconv.ParseInt(groupID, 10, 64)
	g := s.groups[gid]
	if err != nil || g == nil || !validPermission(permission) {
		return false
	}
	g.permission = permission
	return true
}

// Snapshot lists every group (archived included), sorted by name, with member emails.
func (s *Server) Snapshot() []simkit.GroupState {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]simkit.GroupState, 0, len(s.order))
	for _, id := range s.order {
		g := s.groups[id]
		st := simkit.GroupState{
			ID:          strconv.FormatInt(g.id, 10),
			Name:        g.name,
			Description: g.description,
			Visibility:  visibility(g.permission),
			Archived:    g.archived,
		}
		st.MemberEmails = make([]string, 0, len(g.members))
		for _, m := range g.members {
			if u := s.userLocked(m.user); u != nil {
				st.MemberEmails = append(st.MemberEmails, strings.ToLower(strings.TrimSpace(u.email)))
			}
		}
		sort.Strings(st.MemberEmails)
		out = append(out, st)
	}
	slices.SortStableFunc(out, func(a, b simkit.GroupState) int { return strings.Compare(a.Name, b.Name) })
	return out
}

func visibility(permission string) string {
	if permission == "public" {
		return "public"
	}
	// external_contributor groups are private groups that also admit outside contributors.
	return "private"
}

func validPermission(p string) bool {
	return p == "public" || p == "private" || p == "external_contributor"
}

func (s *Server) newIDLocked() int64 {
	id := s.nextID
	s.nextID++
	return id
}

func (s *Server) addUserLocked(p simkit.Person) int64 {
	// Users are appended in id order, so userLocked can binary-search them even when
	// group ids were handed out in between.
	u := user{id: s.newIDLocked(), name: strings.TrimSpace(p.First + " " + p.Last), email: p.Email}
	s.users = append(s.users, u)
	return u.id
}

func (s *Server) userLocked(id int64) *user {
	// Ids are ascending but not contiguous once groups interleave: binary search.
	i, ok := slices.BinarySearchFunc(s.users, id, func(u user, id int64) int {
		switch {
		case u.id < id:
			return -1
		case u.id > id:
			return 1
		}
		return 0
	})
	if !ok {
		return nil
	}
	return &s.users[i]
}

// groupByParam resolves a `:group_id` path segment: numeric id, `id-slug`, or name.
func (s *Server) groupByParamLocked(param string) *group {
	if param == "" {
		return nil
	}
	digits := 0
	for digits < len(param) && param[digits] >= '0' && param[digits] <= '9' {
		digits++
	}
	// Rails' find takes the leading integer of "5-privatetestgrøup2" and ignores the slug.
	if digits > 0 && (digits == len(param) || param[digits] == '-') {
		id, err := strconv.ParseInt(param[:digits], 10, 64)
		if err != nil {
			return nil
		}
		return s.groups[id]
	}
	for _, id := range s.order {
		g := s.groups[id]
		if groupname(g.name) == param || g.name == param {
			return g
		}
	}
	return nil
}

// groupname is the group's handle as Socialcast derives it ("privatetest&grøup2" →
// "privatetestgrøup2"): lower-cased letters and digits only.
func groupname(name string) string {
	var b strings.Builder
	for _, r := range strings.ToLower(name) {
		if unicode.IsLetter(r) || unicode.IsDigit(r) {
			b.WriteRune(r)
		}
	}
	if b.Len() == 0 {
		return "group"
	}
	return b.String()
}

func (s *Server) authorized(r *http.Request) bool {
	if s.opts.Token != "" {
		if tok, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer "); ok &&
			subtle.ConstantTimeCompare([]byte(tok), []byte(s.opts.Token)) == 1 {
			return true
		}
	}
	if s.opts.Username == "" && s.opts.Password == "" {
		return false
	}
	u, p, ok := r.BasicAuth()
	return ok && subtle.ConstantTimeCompare([]byte(u), []byte(s.opts.Username)) == 1 &&
		subtle.ConstantTimeCompare([]byte(p), []byte(s.opts.Password)) == 1
}
