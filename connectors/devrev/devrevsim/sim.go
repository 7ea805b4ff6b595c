// Package devrevsim simulates the DevRev groups API (groups.*, groups.members.*,
// dev-users.list/get, rev-users.get) closely enough to test the devrev connector: DevRev's
// paths and both GET and POST forms, cursor pagination whose last page omits next_cursor,
// the `{type, message, detail}` error bodies, 429 with Retry-After and retry_after, DON ids,
// and the request validation the spec describes (required fields, enums, JSON types).
//
// State is kept compact (indexes, not JSON) so a tenant of 10k groups, 100k people and 1M
// memberships seeds in well under a second; JSON is rendered per request.
package devrevsim

import (
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/groupsync/groupsync/connectors/simkit"
)

// Options configure a Server. Zero values take the defaults noted.
type Options struct {
	// Token is the accepted credential (as `Bearer <token>` or bare, as DevRev takes both).
	// Empty accepts any non-empty credential.
	Token string
	// PageSize is the `limit` used when a request sends none (DevRev's documented 50).
	PageSize int
	// MaxPageSize, when > 0, answers a larger `limit` with 400 bad_request (DevRev documents
	// no maximum; this lets tests model one).
	MaxPageSize int
	// Org is the dev org segment of DON ids (default "acme").
	Org string
	// GroupNumberBase is added to group numbers in ids, so tests can make ids above 2^53.
	GroupNumberBase uint64
	// RetryAfter is the wait a 429 asks for when a fault is armed with 0 (default 1 s).
	RetryAfter time.Duration
	// FaultSeed seeds the fault injector's random source.
	FaultSeed uint64
	// Now is the clock for created/modified dates and the quota window (default time.Now).
	Now func() time.Time
	// Quota, when > 0, is the per-token request budget of a 5-minute window, as DevRev
	// enforces it: every response carries X-Ratelimit-Limit/Remaining/Reset, and a request
	// over the budget gets 429 until the window resets. 0 means no quota.
	Quota int
	// QuotaWindow is the window's length (default DevRev's 5 minutes); tests shorten it to
	// run several windows in seconds.
	QuotaWindow time.Duration
}

// Server is a simulated DevRev tenant. It implements simkit.Sim.
type Server struct {
	opts    Options
	faults  *simkit.Faults
	counter *simkit.Counter
	effects *simkit.Effects
	handler http.Handler

	mu          sync.Mutex
	users       []devUser
	userByEmail map[string]int32
	revUsers    []revUser
	groups      []*group
	groupByName map[string]int32
	// repeatCursor answers the next n list requests on an endpoint that carry a cursor
	// with that same cursor as next_cursor (a server stuck in a loop).
	repeatCursor map[string]int
	// ignoreCursor serves the next n requests on an endpoint that carry a cursor from the
	// first record again, with a fresh cursor (a server that ignores the cursor).
	ignoreCursor map[string]int
	cursorSerial uint64
	quota        *simkit.Window
}

type devUser struct {
	email, fullName, state string
	created                time.Time
}

type revUser struct {
	email, fullName string
	org             int32
}

type memberKind uint8

const (
	kindDev memberKind = iota
	kindRev
	kindGroup
)

type memberRef struct {
	kind memberKind
	idx  int32
}

type group struct {
	name, description  string
	dynamic, isDefault bool
	memberType         string
	owner              int32 // dev user index, -1 for none
	originSystem       string
	externalRef        string
	members            []memberRef
	created, modified  time.Time
}

var _ simkit.Sim = (*Server)(nil)

// New returns an empty tenant.
func New(o Options) *Server {
	if o.PageSize <= 0 {
		o.PageSize = 50
	}
	if o.Org == "" {
		o.Org = "acme"
	}
	if o.RetryAfter <= 0 {
		o.RetryAfter = time.Second
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.QuotaWindow <= 0 {
		o.QuotaWindow = QuotaWindow
	}
	s := &Server{
		opts:         o,
		faults:       simkit.NewFaults(o.FaultSeed),
		counter:      simkit.NewCounter(),
		effects:      simkit.NewEffects(),
		userByEmail:  map[string]int32{},
		groupByName:  map[string]int32{},
		repeatCursor: map[string]int{},
		ignoreCursor: map[string]int{},
	}
	if o.Quota > 0 {
		s.quota = simkit.NewWindow(o.Quota, o.QuotaWindow, o.Now)
	}
	s.handler = s.faults.Middleware(http.HandlerFunc(s.serve), routeLabel, s.writeFault, s.counter)
	return s
}

// ServeHTTP implements http.Handler.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) { s.handler.ServeHTTP(w, r) }

// Faults returns the fault knobs.
func (s *Server) Faults() *simkit.Faults { return s.faults }

// Counter returns the request counter. Labels are DevRev's operation names
// ("groups.list", "groups.members.add", ...), the same for GET and POST.
func (s *Server) Counter() *simkit.Counter { return s.counter }

// Effects returns the effective-write counts.
func (s *Server) Effects() *simkit.Effects { return s.effects }

// RepeatCursorNext makes the next n requests on endpoint that carry a cursor answer with
// that same cursor as next_cursor.
func (s *Server) RepeatCursorNext(endpoint string, n int) {
	s.mu.Lock()
	s.repeatCursor[endpoint] += n
	s.mu.Unlock()
}

// QuotaWindow is DevRev's documented rate-limit window.
const QuotaWindow = 5 * time.Minute

// takeQuota spends one request of the window's budget, sets the X-Ratelimit headers and
// reports whether the request may proceed.
func (s *Server) takeQuota(w http.ResponseWriter) bool {
	if s.quota == nil {
		return true
	}
	ok, wait := s.quota.Take(w.Header())
	if !ok {
		s.writeFault(w, http.StatusTooManyRequests, wait)
	}
	return ok
}

// SpendQuota uses up the current window's budget, as another client of the same token
// would; a no-op without a quota.
func (s *Server) SpendQuota() {
	if s.quota != nil {
		s.quota.Spend()
	}
}

// IgnoreCursorNext makes the next n requests on endpoint that carry a cursor start from
// the first record again while handing out a fresh cursor.
func (s *Server) IgnoreCursorNext(endpoint string, n int) {
	s.mu.Lock()
	s.ignoreCursor[endpoint] += n
	s.mu.Unlock()
}

func (s *Server) now() time.Time { return s.opts.Now().UTC().Truncate(time.Millisecond) }

// Seed replaces the tenant: every person becomes an active dev user, every group a static
// dev-user group with its members (DevRev has no member roles, so managers are members).
// A group the tenant had before under the same name keeps its created_date, and its
// modified_date too when its description and members are the same, as the API's own
// writes leave them: a reseed that changes a few groups changes only their dates.
func (s *Server) Seed(t simkit.Tenant) {
	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.now()
	before := s.groupsByNameLocked()
	s.users = make([]devUser, 0, len(t.People))
	s.userByEmail = make(map[string]int32, len(t.People))
	s.revUsers = nil
	for _, p := range t.People {
		s.addUserLocked(p, now)
	}
	s.groups = make([]*group, 0, len(t.Groups))
	s.groupByName = make(map[string]int32, len(t.Groups))
	for _, tg := range t.Groups {
		g := &group{name: tg.Name, description: tg.Description, memberType: "dev_user", owner: -1,
			created: now, modified: now, members: make([]memberRef, len(tg.Members))}
		for i, m := range tg.Members {
			g.members[i] = memberRef{kind: kindDev, idx: m}
		}
		if old := before[g.name]; old != nil {
			g.created = old.created
			if old.description == g.description && slices.Equal(old.members, g.members) {
				g.modified = old.modified
			}
		}
		s.groupByName[g.name] = int32(len(s.groups))
		s.groups = append(s.groups, g)
	}
}

// groupsByNameLocked indexes the static dev-user groups by name, for Seed. Members are
// compared by user index, which is their DON id: the same id is the same member.
func (s *Server) groupsByNameLocked() map[string]*group {
	out := make(map[string]*group, len(s.groups))
	for _, g := range s.groups {
		if !g.dynamic && g.memberType == "dev_user" {
			out[g.name] = g
		}
	}
	return out
}

// normalizeEmail is the lookup key of the email filter (DevRev's matching is not
// documented; case and surrounding space are ignored here).
func normalizeEmail(e string) string { return strings.ToLower(strings.TrimSpace(e)) }

func (s *Server) addUserLocked(p simkit.Person, now time.Time) int32 {
	idx := int32(len(s.users))
	full := strings.TrimSpace(p.First + " " + p.Last)
	s.users = append(s.users, devUser{email: p.Email, fullName: full, state: "active", created: now})
	s.userByEmail[normalizeEmail(p.Email)] = idx
	return idx
}

// AddPerson creates an active dev user and returns its DON id.
func (s *Server) AddPerson(p simkit.Person) string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.devUserID(s.addUserLocked(p, s.now()))
}

// AddRevUser creates a rev user (a customer) in rev org org and returns its DON id.
func (s *Server) AddRevUser(email, fullName string, org int) string {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.revUsers = append(s.revUsers, revUser{email: email, fullName: fullName, org: int32(org)})
	return s.revUserID(int32(len(s.revUsers) - 1))
}

// GroupInit describes a group added with AddGroup.
type GroupInit struct {
	Name, Description string
	Dynamic           bool
	IsDefault         bool
	// MemberType is dev_user (default) or rev_user.
	MemberType string
	// Members are DON ids of dev users, rev users or groups.
	Members      []string
	OriginSystem string
	ExternalRef  string
}

// AddGroup adds a group the way DevRev itself would (a default or dynamic group, or one
// AirSync mirrors with sync_metadata) and returns its DON id.
func (s *Server) AddGroup(gi GroupInit) (string, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, dup := s.groupByName[gi.Name]; dup {
		return "", fmt.Errorf("group %q exists", gi.Name)
	}
	now := s.now()
	g := &group{name: gi.Name, description: gi.Description, dynamic: gi.Dynamic, isDefault: gi.IsDefault,
		memberType: gi.MemberType, owner: -1, originSystem: gi.OriginSystem, externalRef: gi.ExternalRef,
		created: now, modified: now}
	if g.memberType == "" {
		g.memberType = "dev_user"
	}
	for _, id := range gi.Members {
		ref, ok := s.resolveMember(id)
		if !ok {
			return "", fmt.Errorf("unknown member %q", id)
		}
		g.members = append(g.members, ref)
	}
	idx := int32(len(s.groups))
	s.groups = append(s.groups, g)
	s.groupByName[g.name] = idx
	return s.groupID(idx), nil
}

// Snapshot lists every group sorted by name, with member emails (dev and rev users; nested
// groups have none) lower-cased and sorted.
func (s *Server) Snapshot() []simkit.GroupState {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]simkit.GroupState, 0, len(s.groups))
	for i, g := range s.groups {
		st := simkit.GroupState{ID: s.groupID(int32(i)), Name: g.name, Description: g.description}
		for _, m := range g.members {
			switch m.kind {
			case kindDev:
				st.MemberEmails = append(st.MemberEmails, strings.ToLower(s.users[m.idx].email))
			case kindRev:
				st.MemberEmails = append(st.MemberEmails, strings.ToLower(s.revUsers[m.idx].email))
			}
		}
		sort.Strings(st.MemberEmails)
		out = append(out, st)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

// Ids. Groups: don:identity:dvrv-us-1:devo/<org>:group/<n>, display id grp-<n>; dev users
// …:devu/<n> (DEVU-<n>); rev users …:revo/<o>:revu/<n> (REVU-<n>). Numbers start at 1.

func (s *Server) donPrefix() string { return "don:identity:dvrv-us-1:devo/" + s.opts.Org + ":" }

func (s *Server) groupNumber(idx int32) uint64 { return s.opts.GroupNumberBase + uint64(idx) + 1 }

func (s *Server) groupID(idx int32) string {
	return s.donPrefix() + "group/" + strconv.FormatUint(s.groupNumber(idx), 10)
}

func (s *Server) groupDisplayID(idx int32) string {
	return "grp-" + strconv.FormatUint(s.groupNumber(idx), 10)
}

func (s *Server) devUserID(idx int32) string {
	return s.donPrefix() + "devu/" + strconv.Itoa(int(idx)+1)
}

func (s *Server) revUserID(idx int32) string {
	return fmt.Sprintf("%srevo/%d:revu/%d", s.donPrefix(), s.revUsers[idx].org, idx+1)
}

func (s *Server) revOrgID(org int32) string { return fmt.Sprintf("%srevo/%d", s.donPrefix(), org) }

// lookupGroup resolves a group DON or display id.
func (s *Server) lookupGroup(id string) (int32, bool) {
	var num string
	switch {
	case strings.HasPrefix(id, s.donPrefix()+"group/"):
		num = strings.TrimPrefix(id, s.donPrefix()+"group/")
	case strings.HasPrefix(id, "grp-"):
		num = strings.TrimPrefix(id, "grp-")
	default:
		return 0, false
	}
	n, err := strconv.ParseUint(num, 10, 64)
	if err != nil || n <= s.opts.GroupNumberBase || n-s.opts.GroupNumberBase > uint64(len(s.groups)) {
		return 0, false
	}
	return int32(n - s.opts.GroupNumberBase - 1), true
}

func (s *Server) lookupDevUser(id string) (int32, bool) {
	var num string
	switch {
	case strings.HasPrefix(id, s.donPrefix()+"devu/"):
		num = strings.TrimPrefix(id, s.donPrefix()+"devu/")
	case strings.HasPrefix(id, "DEVU-"):
		num = strings.TrimPrefix(id, "DEVU-")
	default:
		return 0, false
	}
	n, err := strconv.Atoi(num)
	if err != nil || n < 1 || n > len(s.users) {
		return 0, false
	}
	return int32(n - 1), true
}

func (s *Server) lookupRevUser(id string) (int32, bool) {
	var num string
	if i := strings.Index(id, ":revu/"); i >= 0 && strings.HasPrefix(id, s.donPrefix()) {
		num = id[i+len(":revu/"):]
	} else if strings.HasPrefix(id, "REVU-") {
		num = strings.TrimPrefix(id, "REVU-")
	} else {
		return 0, false
	}
	n, err := strconv.Atoi(num)
	if err != nil || n < 1 || n > len(s.revUsers) {
		return 0, false
	}
	idx := int32(n - 1)
	if strings.HasPrefix(id, s.donPrefix()) && id != s.revUserID(idx) {
		return 0, false
	}
	return idx, true
}

func (s *Server) resolveMember(id string) (memberRef, bool) {
	if i, ok := s.lookupDevUser(id); ok {
		return memberRef{kind: kindDev, idx: i}, true
	}
	if i, ok := s.lookupRevUser(id); ok {
		return memberRef{kind: kindRev, idx: i}, true
	}
	if i, ok := s.lookupGroup(id); ok {
		return memberRef{kind: kindGroup, idx: i}, true
	}
	return memberRef{}, false
}

// Rendering: JSON per request from the compact state, in the spec's shapes.

const timeFormat = "2006-01-02T15:04:05.000Z"

type userSummary struct {
	Type        string `json:"type"`
	ID          string `json:"id"`
	DisplayID   string `json:"display_id"`
	DisplayName string `json:"display_name,omitempty"`
	Email       string `json:"email,omitempty"`
	FullName    string `json:"full_name,omitempty"`
	State       string `json:"state,omitempty"`
	// rev users only
	RevOrg *orgSummary `json:"rev_org,omitempty"`
	// group members only
	Name       string `json:"name,omitempty"`
	MemberType string `json:"member_type,omitempty"`
}

type orgSummary struct {
	Type        string `json:"type,omitempty"`
	ID          string `json:"id"`
	DisplayID   string `json:"display_id"`
	DisplayName string `json:"display_name,omitempty"`
}

type syncMetadata struct {
	ExternalReference string `json:"external_reference,omitempty"`
	OriginSystem      string `json:"origin_system,omitempty"`
}

type groupJSON struct {
	ID           string        `json:"id"`
	DisplayID    string        `json:"display_id"`
	CreatedDate  string        `json:"created_date"`
	ModifiedDate string        `json:"modified_date"`
	Name         string        `json:"name"`
	Description  string        `json:"description,omitempty"`
	IsDefault    bool          `json:"is_default"`
	MemberType   string        `json:"member_type,omitempty"`
	Owner        *userSummary  `json:"owner,omitempty"`
	SyncMetadata *syncMetadata `json:"sync_metadata,omitempty"`
}

func (s *Server) renderGroup(idx int32) groupJSON {
	g := s.groups[idx]
	out := groupJSON{
		ID: s.groupID(idx), DisplayID: s.groupDisplayID(idx),
		CreatedDate: g.created.Format(timeFormat), ModifiedDate: g.modified.Format(timeFormat),
		Name: g.name, Description: g.description, IsDefault: g.isDefault, MemberType: g.memberType,
	}
	if g.owner >= 0 {
		u := s.renderDevSummary(g.owner)
		out.Owner = &u
	}
	if g.originSystem != "" || g.externalRef != "" {
		out.SyncMetadata = &syncMetadata{ExternalReference: g.externalRef, OriginSystem: g.originSystem}
	}
	return out
}

func handle(fullName, email string) string {
	if fullName != "" {
		return strings.ToLower(strings.ReplaceAll(fullName, " ", "-"))
	}
	local, _, _ := strings.Cut(email, "@")
	return local
}

func (s *Server) renderDevSummary(idx int32) userSummary {
	u := s.users[idx]
	return userSummary{Type: "dev_user", ID: s.devUserID(idx), DisplayID: "DEVU-" + strconv.Itoa(int(idx)+1),
		DisplayName: handle(u.fullName, u.email), Email: u.email, FullName: u.fullName, State: u.state}
}

func (s *Server) renderRevSummary(idx int32) userSummary {
	u := s.revUsers[idx]
	return userSummary{Type: "rev_user", ID: s.revUserID(idx), DisplayID: "REVU-" + strconv.Itoa(int(idx)+1),
		DisplayName: handle(u.fullName, u.email), Email: u.email, FullName: u.fullName, State: "active",
		RevOrg: s.renderRevOrg(u.org)}
}

func (s *Server) renderRevOrg(org int32) *orgSummary {
	return &orgSummary{Type: "rev_org", ID: s.revOrgID(org), DisplayID: "REV-" + strconv.Itoa(int(org)),
		DisplayName: "Customer " + strconv.Itoa(int(org))}
}

type devUserJSON struct {
	ID           string `json:"id"`
	DisplayID    string `json:"display_id"`
	CreatedDate  string `json:"created_date"`
	ModifiedDate string `json:"modified_date"`
	DisplayName  string `json:"display_name"`
	Email        string `json:"email"`
	FullName     string `json:"full_name,omitempty"`
	State        string `json:"state"`
}

func (s *Server) renderDevUser(idx int32) devUserJSON {
	u := s.users[idx]
	d := u.created.Format(timeFormat)
	return devUserJSON{ID: s.devUserID(idx), DisplayID: "DEVU-" + strconv.Itoa(int(idx)+1), CreatedDate: d,
		ModifiedDate: d, DisplayName: handle(u.fullName, u.email), Email: u.email, FullName: u.fullName, State: u.state}
}

// Errors in DevRev's shape: {type, message, detail?} plus the type's own fields.

func writeJSON(w http.ResponseWriter, status int, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		status, b = http.StatusInternalServerError, []byte(`{"type":"internal_error","message":"encoding response"}`)
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Content-Length", strconv.Itoa(len(b)))
	w.WriteHeader(status)
	_, _ = w.Write(b)
}

func writeError(w http.ResponseWriter, status int, typ, message string, extra map[string]any) {
	body := map[string]any{"type": typ, "message": message}
	for k, v := range extra {
		body[k] = v
	}
	writeJSON(w, status, body)
}

// writeFault writes the fault middleware's injected errors: 429 in DevRev's style, other
// statuses with the spec's type for that status.
func (s *Server) writeFault(w http.ResponseWriter, status int, retryAfter time.Duration) {
	if status == http.StatusTooManyRequests {
		if retryAfter <= 0 {
			retryAfter = s.opts.RetryAfter
		}
		secs := simkit.RetryAfterSeconds(retryAfter)
		n, _ := strconv.Atoi(secs)
		w.Header().Set("Retry-After", secs)
		if w.Header().Get("X-Ratelimit-Limit") == "" {
			w.Header().Set("X-Ratelimit-Limit", "1000")
		}
		w.Header().Set("X-Ratelimit-Remaining", "0")
		if w.Header().Get("X-Ratelimit-Reset") == "" {
			w.Header().Set("X-Ratelimit-Reset", strconv.FormatInt(s.opts.Now().Add(retryAfter).Unix(), 10))
		}
		writeError(w, status, "too_many_requests", "Rate limit exceeded", map[string]any{"retry_after": n})
		return
	}
	switch status {
	case http.StatusUnauthorized:
		writeError(w, status, "unauthenticated", "Authentication failed", nil)
	case http.StatusForbidden:
		writeError(w, status, "forbidden", "Forbidden", nil)
	case http.StatusNotFound:
		writeError(w, status, "not_found", "Not found", nil)
	case http.StatusConflict:
		writeError(w, status, "conflict", "Conflict", nil)
	case http.StatusServiceUnavailable:
		writeError(w, status, "service_unavailable", "Service unavailable", nil)
	default:
		if status >= 500 {
			writeError(w, status, "internal_error", "Internal error", map[string]any{"reference_id": "sim-ref"})
			return
		}
		writeError(w, status, "bad_request", http.StatusText(status), nil)
	}
}
