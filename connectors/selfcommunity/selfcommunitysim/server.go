// Package selfcommunitysim is an in-memory simulator of the SelfCommunity REST API v2 group
// and user endpoints, for the connector's tests, the end-to-end tests and the demo. It keeps
// the API's real shapes: paths with trailing slashes, DRF limit/offset pagination with
// absolute `next` links built from the request's Host, DRF `{"detail": ...}` errors and the
// SDK's `{"errors": [...]}` validation shape, unique group names, manager-only writes, an
// admin-only account search, static-token or HS256 JWT auth, and DRF's throttling answer
// (429 with Retry-After). State is compact structs; JSON is rendered per request.
package selfcommunitysim

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/groupsync/groupsync/connectors/simkit"
)

// Route labels (the route templates) that Counter counts and Faults match.
const (
	RouteGroupsSearch = "GET /api/v2/group/search/"
	RouteGroupCreate  = "POST /api/v2/group/"
	RouteGroupGet     = "GET /api/v2/group/{id}/"
	RouteGroupPut     = "PUT /api/v2/group/{id}/"
	RouteGroupPatch   = "PATCH /api/v2/group/{id}/"
	RouteGroupDelete  = "DELETE /api/v2/group/{id}/"
	RouteMembersList  = "GET /api/v2/group/{id}/subscribe/"
	RouteMembersAdd   = "POST /api/v2/group/{id}/subscribe/"
	RouteMemberRemove = "DELETE /api/v2/group/{id}/subscribe/"
	RouteUsersList    = "GET /api/v2/user/"
	RouteUserGet      = "GET /api/v2/user/{id}/"
	RouteAccountFind  = "GET /api/v2/account/search/"
	RouteInvitesList  = "GET /api/v2/group/{id}/invite/"
	// RouteUnmatched labels requests no route matched.
	RouteUnmatched = "unmatched"
)

// Options configure a Server. Zero values take the defaults named on each field.
type Options struct {
	// Token is a static bearer token accepted as the admin user ("" accepts none).
	Token string
	// JWTSecret, if set, makes the server accept HS256 JWTs signed with it carrying user_id,
	// token_type "access", jti and an unexpired exp.
	JWTSecret string
	// AdminUserID is the id of the community admin the static token acts as (default 1).
	// The admin account is created by New and by every Seed.
	AdminUserID int64
	// AdminEmail is the admin account's email (default admin@selfcommunity.test).
	AdminEmail string
	// PageSize is the page size when a request names no limit (default 20).
	PageSize int
	// MaxPageSize caps a requested limit (default 100).
	MaxPageSize int
	// GroupIDStart and UserIDStart are the first ids handed out (defaults 1 and 1001); set
	// them above 2^53 to test that ids survive byte-exact.
	GroupIDStart int64
	UserIDStart  int64
	// CreatorJoins subscribes the creator of a group to it, as the product UI does; off by
	// default so tests see exactly the members they wrote. Whether the API does it is
	// undocumented.
	CreatorJoins bool
	// AdminListsHidden makes group search show admins every hidden group. The docs say the
	// search returns visible groups plus the hidden groups the caller belongs to, with no
	// exception for admins, so by default an admin is listed only the hidden groups it is
	// in, like any user; whether the real API makes the exception is undocumented.
	AdminListsHidden bool
	// HiddenUnreadableByID makes `GET /api/v2/group/{id}/` (and the routes under it) of a
	// hidden group answer 404 to everyone not in it, admins and its manager included. By
	// default a hidden group the search leaves out can still be read by id by an admin or
	// its manager (undocumented either way; this is the pessimistic case).
	HiddenUnreadableByID bool
	// Now is the clock for JWT expiry and created_at (default time.Now).
	Now func() time.Time
	// FaultSeed seeds the fault set's random source.
	FaultSeed uint64
}

type user struct {
	id       int64
	username string
	realName string
	email    string
	// extID and provider are the SSO identity set at signup (ext_id, "" for none), as the
	// account search's ext_id + provider pair finds it.
	extID    string
	provider string
	status   byte
	admin    bool
	joined   time.Time
}

// extIDJSON renders ext_id as the User schema types it (an integer), or as a string when
// the provider's id is not numeric; null when the user has none.
func (u *user) extIDJSON() json.RawMessage {
	if u.extID == "" {
		return json.RawMessage("null")
	}
	if _, err := strconv.ParseInt(u.extID, 10, 64); err == nil {
		return json.RawMessage(u.extID)
	}
	b, _ := json.Marshal(u.extID)
	return b
}

// extKey indexes users by their SSO identity.
type extKey struct{ provider, extID string }

// ExternalProvider is the provider of every simulated SSO identity: the one the docs name
// for a custom SSO ("external").
const ExternalProvider = "external"

type group struct {
	id          int64
	name        string
	description string
	slug        string
	privacy     string
	visible     bool
	active      bool
	created     time.Time
	createdBy   int64
	managedBy   int64
	members     []int64 // sorted user ids
}

func (g *group) isMember(uid int64) bool {
	_, ok := slices.BinarySearch(g.members, uid)
	return ok
}

// Server is the simulator. It implements simkit.Sim.
type Server struct {
	o       Options
	mux     *http.ServeMux
	handler http.Handler
	faults  *simkit.Faults
	counter *simkit.Counter
	effects *simkit.Effects

	mu         sync.Mutex
	users      map[int64]*user
	userOrder  []int64 // ascending
	byEmail    map[string]int64
	byUsername map[string]int64
	byExtID    map[extKey]int64
	groups     map[int64]*group
	groupOrder []int64 // ascending
	byName     map[string]int64
	nextGroup  int64
	nextUser   int64
	repeatNext map[string]int
	bare       map[string]bool
	// hiddenUnreadable starts as Options.HiddenUnreadableByID (SetHiddenUnreadableByID).
	hiddenUnreadable bool
	// nameFold, when set, replaces defaultNameKey as the name uniqueness key (SetNameKey).
	nameFold func(string) string
}

var _ simkit.Sim = (*Server)(nil)

// New returns a simulator holding only the admin account.
func New(o Options) *Server {
	if o.AdminUserID <= 0 {
		o.AdminUserID = 1
	}
	if o.AdminEmail == "" {
		o.AdminEmail = "admin@selfcommunity.test"
	}
	if o.PageSize <= 0 {
		o.PageSize = 20
	}
	if o.MaxPageSize <= 0 {
		o.MaxPageSize = 100
	}
	if o.GroupIDStart <= 0 {
		o.GroupIDStart = 1
	}
	if o.UserIDStart <= 0 {
		o.UserIDStart = 1001
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	s := &Server{
		o:          o,
		mux:        http.NewServeMux(),
		faults:     simkit.NewFaults(o.FaultSeed),
		counter:    simkit.NewCounter(),
		effects:    simkit.NewEffects(),
		repeatNext: map[string]int{},
		bare:       map[string]bool{},

		hiddenUnreadable: o.HiddenUnreadableByID,
	}
	s.reset()
	s.routes()
	s.handler = s.faults.Middleware(http.HandlerFunc(s.serve), s.route, writeFault, s.counter)
	return s
}

func (s *Server) routes() {
	s.mux.HandleFunc("GET /api/v2/group/search/{$}", s.authed(s.groupsSearch))
	s.mux.HandleFunc("POST /api/v2/group/{$}", s.authed(s.groupCreate))
	s.mux.HandleFunc("GET /api/v2/group/{id}/{$}", s.authed(s.groupGet))
	s.mux.HandleFunc("PUT /api/v2/group/{id}/{$}", s.authed(s.groupUpdate))
	s.mux.HandleFunc("PATCH /api/v2/group/{id}/{$}", s.authed(s.groupUpdate))
	s.mux.HandleFunc("DELETE /api/v2/group/{id}/{$}", s.authed(s.groupDelete))
	s.mux.HandleFunc("GET /api/v2/group/{id}/subscribe/{$}", s.authed(s.membersList))
	s.mux.HandleFunc("POST /api/v2/group/{id}/subscribe/{$}", s.authed(s.membersAdd))
	s.mux.HandleFunc("DELETE /api/v2/group/{id}/subscribe/{$}", s.authed(s.memberRemove))
	s.mux.HandleFunc("GET /api/v2/user/{$}", s.authed(s.usersList))
	s.mux.HandleFunc("GET /api/v2/user/{id}/{$}", s.authed(s.userGet))
	s.mux.HandleFunc("GET /api/v2/account/search/{$}", s.authed(s.accountSearch))
	s.mux.HandleFunc("GET /api/v2/group/{id}/invite/{$}", s.authed(s.invitesList))
}

// route maps a request to its route template.
func (s *Server) route(r *http.Request) string {
	_, pattern := s.mux.Handler(r)
	if pattern == "" || !strings.HasSuffix(r.URL.Path, "/") {
		return RouteUnmatched
	}
	return strings.TrimSuffix(pattern, "{$}")
}

func (s *Server) serve(w http.ResponseWriter, r *http.Request) {
	if s.route(r) == RouteUnmatched {
		// DRF answers unknown paths and wrong methods in its own shape. A path without its
		// trailing slash is unknown too (ServeMux would redirect it; Django only does for
		// GET, and a client that depends on the redirect is one to catch in tests).
		if !strings.HasSuffix(r.URL.Path, "/") {
			writeDetail(w, http.StatusNotFound, "Not found.")
			return
		}
		for _, m := range []string{"GET", "POST", "PUT", "PATCH", "DELETE"} {
			probe := r.Clone(r.Context())
			probe.Method = m
			if s.route(probe) != RouteUnmatched {
				writeDetail(w, http.StatusMethodNotAllowed, fmt.Sprintf("Method \"%s\" not allowed.", r.Method))
				return
			}
		}
		writeDetail(w, http.StatusNotFound, "Not found.")
		return
	}
	s.mux.ServeHTTP(w, r)
}

// ServeHTTP implements http.Handler.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) { s.handler.ServeHTTP(w, r) }

// Faults returns the fault knobs.
func (s *Server) Faults() *simkit.Faults { return s.faults }

// Counter returns the request counters.
func (s *Server) Counter() *simkit.Counter { return s.counter }

// Effects returns the effective-write counts.
func (s *Server) Effects() *simkit.Effects { return s.effects }

// RepeatNextLink makes the next n pages served on route (a list route) that have a next
// page link to themselves instead, as a buggy server or proxy would: a client that follows
// links blindly loops forever.
func (s *Server) RepeatNextLink(route string, n int) {
	s.mu.Lock()
	s.repeatNext[route] += n
	s.mu.Unlock()
}

// BareArrays makes a list route answer a bare JSON array of every item instead of a page
// envelope (what SelfCommunity's docs show for some list endpoints, apis.md §1.8).
func (s *Server) BareArrays(route string, on bool) {
	s.mu.Lock()
	s.bare[route] = on
	s.mu.Unlock()
}

// reset empties the state down to the admin account. Callers hold s.mu or own s.
func (s *Server) reset() {
	s.users = map[int64]*user{}
	s.userOrder = nil
	s.byEmail = map[string]int64{}
	s.byUsername = map[string]int64{}
	s.byExtID = map[extKey]int64{}
	s.groups = map[int64]*group{}
	s.groupOrder = nil
	s.byName = map[string]int64{}
	s.nextGroup = s.o.GroupIDStart
	s.nextUser = s.o.UserIDStart
	s.putUser(&user{id: s.o.AdminUserID, username: "admin", realName: "Community Admin", email: s.o.AdminEmail,
		status: 'a', admin: true, joined: s.o.Now().UTC()})
}

func (s *Server) putUser(u *user) {
	i, _ := slices.BinarySearch(s.userOrder, u.id)
	s.userOrder = slices.Insert(s.userOrder, i, u.id)
	s.index(u)
}

// index adds u to the look-up maps. Usernames are unique, as SelfCommunity's are: a taken
// one gets the user id appended.
func (s *Server) index(u *user) {
	s.users[u.id] = u
	if _, taken := s.byUsername[u.username]; taken {
		u.username += "-" + strconv.FormatInt(u.id, 10)
	}
	s.byUsername[u.username] = u.id
	if u.email != "" {
		s.byEmail[normEmail(u.email)] = u.id
	}
	if u.extID != "" {
		s.byExtID[extKey{u.provider, u.extID}] = u.id
	}
}

func (s *Server) newUser(p simkit.Person, joined time.Time) *user {
	if s.nextUser == s.o.AdminUserID {
		s.nextUser++
	}
	id := s.nextUser
	s.nextUser++
	local := strings.TrimSpace(p.Email)
	if at := strings.IndexByte(local, '@'); at > 0 {
		local = local[:at]
	}
	u := &user{id: id, username: local, realName: strings.TrimSpace(p.First + " " + p.Last), email: p.Email,
		status: 'a', joined: joined}
	if p.ExtID != "" {
		u.extID, u.provider = p.ExtID, ExternalProvider
	}
	return u
}

// Seed replaces the state with the tenant (plus the admin account). Person i gets user id
// UserIDStart+i (skipping the admin's id); groups get ids from GroupIDStart in order.
func (s *Server) Seed(t simkit.Tenant) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.reset()
	now := s.o.Now().UTC()
	ids := make([]int64, len(t.People))
	s.userOrder = slices.Grow(s.userOrder, len(t.People))
	for i, p := range t.People {
		u := s.newUser(p, now)
		ids[i] = u.id
		s.userOrder = append(s.userOrder, u.id)
		s.index(u)
	}
	slices.Sort(s.userOrder)
	s.groupOrder = make([]int64, 0, len(t.Groups))
	for _, tg := range t.Groups {
		g := &group{id: s.nextGroup, name: tg.Name, description: tg.Description, privacy: "public",
			visible: true, active: true, created: now, createdBy: s.o.AdminUserID, managedBy: s.o.AdminUserID}
		s.nextGroup++
		if tg.Private {
			g.privacy = "private"
		}
		g.slug = slugify(g.name, g.id)
		g.members = make([]int64, 0, len(tg.Members))
		for _, m := range tg.Members {
			g.members = append(g.members, ids[m])
		}
		slices.Sort(g.members)
		g.members = slices.Compact(g.members)
		if len(tg.Managers) > 0 && int(tg.Managers[0]) < len(tg.Members) {
			g.managedBy = ids[tg.Members[tg.Managers[0]]]
		}
		s.groups[g.id] = g
		s.groupOrder = append(s.groupOrder, g.id)
		s.byName[s.nameKey(g.name)] = g.id
	}
	s.effects.Reset()
}

// AddPerson creates an account and returns its id.
func (s *Server) AddPerson(p simkit.Person) string {
	s.mu.Lock()
	defer s.mu.Unlock()
	u := s.newUser(p, s.o.Now().UTC())
	s.putUser(u)
	return strconv.FormatInt(u.id, 10)
}

// AddUser creates an account with the admin flag as given and returns its id, for tests of
// who may write.
func (s *Server) AddUser(p simkit.Person, admin bool) string {
	s.mu.Lock()
	defer s.mu.Unlock()
	u := s.newUser(p, s.o.Now().UTC())
	u.admin = admin
	s.putUser(u)
	return strconv.FormatInt(u.id, 10)
}

// SetManager makes user the manager (managed_by) of group; false if either is unknown.
func (s *Server) SetManager(groupID, userID string) bool {
	gid, err1 := strconv.ParseInt(groupID, 10, 64)
	uid, err2 := strconv.ParseInt(userID, 10, 64)
	s.mu.Lock()
	defer s.mu.Unlock()
	g, ok := s.groups[gid]
	if err1 != nil || err2 != nil || !ok || s.users[uid] == nil {
		return false
	}
	g.managedBy = uid
	return true
}

// Snapshot lists every group sorted by name.
func (s *Server) Snapshot() []simkit.GroupState {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]simkit.GroupState, 0, len(s.groups))
	for _, id := range s.groupOrder {
		g := s.groups[id]
		emails := make([]string, 0, len(g.members))
		for _, m := range g.members {
			if u := s.users[m]; u != nil {
				emails = append(emails, normEmail(u.email))
			}
		}
		sort.Strings(emails)
		out = append(out, simkit.GroupState{ID: strconv.FormatInt(g.id, 10), Name: g.name, Description: g.description,
			Visibility: visibilityOf(g), Archived: !g.active, MemberEmails: emails})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

func visibilityOf(g *group) string {
	switch {
	case g.privacy == "public":
		return "public"
	case g.visible:
		return "private"
	}
	return "hidden"
}

func normEmail(e string) string { return strings.ToLower(strings.TrimSpace(e)) }

// defaultNameKey is the uniqueness key of group names: case-insensitive, as a slug
// collision would be.
func defaultNameKey(n string) string { return strings.ToLower(strings.TrimSpace(n)) }

// nameKey is the uniqueness key of a group name under the current folding (SetNameKey).
// Callers hold s.mu.
func (s *Server) nameKey(n string) string {
	if s.nameFold != nil {
		return s.nameFold(n)
	}
	return defaultNameKey(n)
}

func slugify(name string, id int64) string {
	var b strings.Builder
	for _, r := range strings.ToLower(name) {
		switch {
		case r >= 'a' && r <= 'z', r >= '0' && r <= '9':
			b.WriteRune(r)
		case b.Len() > 0 && !strings.HasSuffix(b.String(), "-"):
			b.WriteByte('-')
		}
	}
	return strings.Trim(b.String(), "-") + "-" + strconv.FormatInt(id, 10)
}

// writeJSON renders v without HTML escaping, as DRF's renderer does.
func writeJSON(w http.ResponseWriter, status int, v any) {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Content-Length", strconv.Itoa(buf.Len()))
	w.WriteHeader(status)
	_, _ = w.Write(buf.Bytes())
}

// writeDetail writes DRF's exception shape.
func writeDetail(w http.ResponseWriter, status int, detail string) {
	writeJSON(w, status, map[string]string{"detail": detail})
}

// fieldError is one entry of the SDK's {"errors": [...]} validation shape.
type fieldError struct {
	Field    string   `json:"field,omitempty"`
	Messages []string `json:"messages,omitempty"`
	Code     string   `json:"code,omitempty"`
	Message  string   `json:"message,omitempty"`
}

func writeErrors(w http.ResponseWriter, status int, errs []fieldError) {
	writeJSON(w, status, map[string]any{"errors": errs})
}

// writeFault answers injected faults in SelfCommunity's own style. Throttling is DRF's
// Throttled exception: 429, {"detail": "Request was throttled..."} and a Retry-After header
// when a wait is known.
func writeFault(w http.ResponseWriter, status int, retryAfter time.Duration) {
	switch status {
	case http.StatusTooManyRequests:
		detail := "Request was throttled."
		if retryAfter > 0 {
			secs := simkit.RetryAfterSeconds(retryAfter)
			w.Header().Set("Retry-After", secs)
			detail = "Request was throttled. Expected available in " + secs + " seconds."
		}
		writeDetail(w, status, detail)
	case http.StatusUnauthorized:
		w.Header().Set("WWW-Authenticate", `Bearer realm="api"`)
		writeDetail(w, status, "Authentication credentials were not provided.")
	case http.StatusForbidden:
		writeDetail(w, status, "You do not have permission to perform this action.")
	case http.StatusNotFound:
		writeDetail(w, status, "Not found.")
	case http.StatusBadRequest:
		writeErrors(w, status, []fieldError{{Code: "bad_request", Message: "Bad request."}})
	default:
		if status >= 500 {
			writeDetail(w, status, "A server error occurred.")
			return
		}
		writeDetail(w, status, http.StatusText(status))
	}
}

// caller is the authenticated user of a request.
type caller struct {
	id    int64
	admin bool
}

// authed checks the bearer credential before h runs.
func (s *Server) authed(h func(http.ResponseWriter, *http.Request, caller)) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		c, msg := s.authenticate(r)
		if msg != "" {
			w.Header().Set("WWW-Authenticate", `Bearer realm="api"`)
			writeDetail(w, http.StatusUnauthorized, msg)
			return
		}
		h(w, r, c)
	}
}

func (s *Server) authenticate(r *http.Request) (caller, string) {
	h := r.Header.Get("Authorization")
	tok, ok := strings.CutPrefix(h, "Bearer ")
	if !ok || tok == "" {
		return caller{}, "Authentication credentials were not provided."
	}
	if s.o.Token != "" && tok == s.o.Token {
		return caller{id: s.o.AdminUserID, admin: true}, ""
	}
	if s.o.JWTSecret == "" || strings.Count(tok, ".") != 2 {
		return caller{}, "Invalid token."
	}
	p := jwt.NewParser(jwt.WithValidMethods([]string{"HS256"}), jwt.WithExpirationRequired(), jwt.WithIssuedAt(),
		jwt.WithTimeFunc(s.o.Now), jwt.WithJSONNumber())
	claims := jwt.MapClaims{}
	if _, err := p.ParseWithClaims(tok, claims, func(*jwt.Token) (any, error) { return []byte(s.o.JWTSecret), nil }); err != nil {
		return caller{}, "Given token not valid for any token type"
	}
	if claims["token_type"] != "access" {
		return caller{}, "Token has wrong type"
	}
	if jti, _ := claims["jti"].(string); jti == "" {
		return caller{}, "Token has no id"
	}
	n, _ := claims["user_id"].(json.Number)
	uid, err := n.Int64()
	if err != nil {
		return caller{}, "Token contained no recognizable user identification"
	}
	s.mu.Lock()
	u := s.users[uid]
	s.mu.Unlock()
	if u == nil || u.status != 'a' {
		return caller{}, "User not found"
	}
	return caller{id: uid, admin: u.admin}, ""
}

// pageParams reads DRF's limit and offset; invalid values fall back to the defaults, as
// DRF's LimitOffsetPagination does.
func (s *Server) pageParams(r *http.Request) (limit, offset int) {
	limit = s.o.PageSize
	if v, err := strconv.Atoi(r.URL.Query().Get("limit")); err == nil && v > 0 {
		limit = min(v, s.o.MaxPageSize)
	}
	if v, err := strconv.Atoi(r.URL.Query().Get("offset")); err == nil && v > 0 {
		offset = v
	}
	return limit, offset
}

// pageLink builds an absolute link to another offset of the same listing from the
// request's own Host, as DRF does.
func pageLink(r *http.Request, limit, offset int) string {
	scheme := "http"
	if r.TLS != nil {
		scheme = "https"
	}
	q := r.URL.Query()
	q.Set("limit", strconv.Itoa(limit))
	if offset > 0 {
		q.Set("offset", strconv.Itoa(offset))
	} else {
		q.Del("offset")
	}
	u := url.URL{Scheme: scheme, Host: r.Host, Path: r.URL.Path, RawQuery: q.Encode()}
	return u.String()
}

// paged renders items [offset, offset+limit) of n as a DRF page (or a bare array of all
// of them when the route is switched to bare arrays). It must be called with s.mu held:
// render runs under the lock, and paged releases it before writing the response.
func (s *Server) paged(w http.ResponseWriter, r *http.Request, route string, n int, render func(i int) any) {
	if s.bare[route] {
		all := make([]any, n)
		for i := range n {
			all[i] = render(i)
		}
		s.mu.Unlock()
		writeJSON(w, http.StatusOK, all)
		return
	}
	limit, offset := s.pageParams(r)
	end := min(offset+limit, n)
	results := make([]any, 0, max(0, end-offset))
	for i := offset; i < end; i++ {
		results = append(results, render(i))
	}
	var next, prev *string
	if end < n {
		link := pageLink(r, limit, end)
		if s.repeatNext[route] > 0 {
			s.repeatNext[route]--
			link = pageLink(r, limit, offset)
		}
		next = &link
	}
	if offset > 0 {
		link := pageLink(r, limit, max(0, offset-limit))
		prev = &link
	}
	s.mu.Unlock()
	writeJSON(w, http.StatusOK, struct {
		Count    int     `json:"count"`
		Next     *string `json:"next"`
		Previous *string `json:"previous"`
		Results  []any   `json:"results"`
	}{n, next, prev, results})
}
