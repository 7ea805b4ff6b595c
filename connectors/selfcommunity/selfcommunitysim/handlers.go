package selfcommunitysim

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"strings"
)

// userBrief is the trimmed User the group endpoints embed and the member list returns:
// id, username, real_name, ext_id, avatar. No email.
type userBrief struct {
	ID       int64           `json:"id"`
	Username string          `json:"username"`
	RealName string          `json:"real_name"`
	ExtID    json.RawMessage `json:"ext_id"`
	Avatar   string          `json:"avatar"`
}

// userFull is the User object `GET /api/v2/user/` and `GET /api/v2/user/{id}/` return. The
// public User schema no longer lists `email` (it left the docs in late 2022), so these
// routes never carry one, whoever asks: only the admin account search does (accountJSON).
type userFull struct {
	ID                int64           `json:"id"`
	Username          string          `json:"username"`
	RealName          string          `json:"real_name"`
	DateJoined        string          `json:"date_joined"`
	Bio               string          `json:"bio"`
	Location          string          `json:"location"`
	Description       string          `json:"description"`
	Gender            string          `json:"gender"`
	Status            string          `json:"status"`
	Website           *string         `json:"website"`
	Avatar            string          `json:"avatar"`
	Cover             *string         `json:"cover"`
	ExtID             json.RawMessage `json:"ext_id"`
	Tags              []string        `json:"tags"`
	Reputation        int             `json:"reputation"`
	CommunityBadge    bool            `json:"community_badge"`
	ConnectionStatus  *string         `json:"connection_status"`
	FollowingsCounter int             `json:"followings_counter"`
	FollowersCounter  int             `json:"followers_counter"`
	PostsCounter      int             `json:"posts_counter"`
}

// accountJSON is what the admin account search answers
// (docs/apireference/v2/account/search_an_account.md): the User with `email`,
// `email_isvalid` and the soft-delete flag `deleted`.
type accountJSON struct {
	userFull
	Email        string `json:"email"`
	EmailIsValid bool   `json:"email_isvalid"`
	Deleted      bool   `json:"deleted"`
}

type groupJSON struct {
	ID                     int64     `json:"id"`
	Name                   string    `json:"name"`
	Description            *string   `json:"description"`
	Slug                   string    `json:"slug"`
	Color                  *string   `json:"color"`
	Privacy                string    `json:"privacy"`
	Visible                bool      `json:"visible"`
	Active                 bool      `json:"active"`
	SubscriptionStatus     *string   `json:"subscription_status"`
	Subscribed             bool      `json:"subscribed"`
	ImageBigger            string    `json:"image_bigger"`
	ImageBig               string    `json:"image_big"`
	ImageMedium            string    `json:"image_medium"`
	ImageSmall             string    `json:"image_small"`
	EmotionalImage         *string   `json:"emotional_image"`
	EmotionalImagePosition int       `json:"emotional_image_position"`
	SubscribersCounter     int       `json:"subscribers_counter"`
	CreatedAt              string    `json:"created_at"`
	CreatedBy              userBrief `json:"created_by"`
	ManagedBy              userBrief `json:"managed_by"`
}

const avatarURL = "https://assets.selfcommunity.test/avatar/default.png"

func (s *Server) brief(id int64) userBrief {
	u := s.users[id]
	if u == nil {
		return userBrief{ID: id, Avatar: avatarURL}
	}
	return userBrief{ID: u.id, Username: u.username, RealName: u.realName, ExtID: u.extIDJSON(), Avatar: avatarURL}
}

func (s *Server) full(u *user) userFull {
	return userFull{ID: u.id, Username: u.username, RealName: u.realName,
		DateJoined: u.joined.Format("2006-01-02T15:04:05.000000Z07:00"), Gender: "Unspecified",
		Status: string(u.status), Avatar: avatarURL, ExtID: u.extIDJSON(), Tags: []string{}}
}

func (s *Server) account(u *user) accountJSON {
	return accountJSON{userFull: s.full(u), Email: u.email, EmailIsValid: true, Deleted: u.status == 'd'}
}

func (s *Server) render(g *group, c caller) groupJSON {
	out := groupJSON{ID: g.id, Name: g.name, Slug: g.slug, Privacy: g.privacy, Visible: g.visible, Active: g.active,
		ImageBigger:        "https://assets.selfcommunity.test/group/" + g.slug + "/bigger.png",
		ImageBig:           "https://assets.selfcommunity.test/group/" + g.slug + "/big.png",
		ImageMedium:        "https://assets.selfcommunity.test/group/" + g.slug + "/medium.png",
		ImageSmall:         "https://assets.selfcommunity.test/group/" + g.slug + "/small.png",
		SubscribersCounter: len(g.members), CreatedAt: g.created.Format("2006-01-02T15:04:05.000000Z07:00"),
		CreatedBy: s.brief(g.createdBy), ManagedBy: s.brief(g.managedBy)}
	if g.description != "" {
		d := g.description
		out.Description = &d
	}
	if g.isMember(c.id) {
		st := "subscribed"
		out.SubscriptionStatus, out.Subscribed = &st, true
	}
	return out
}

// listed reports whether group search shows g to c: "groups with visible=true, plus
// hidden groups the caller belongs to" (docs/apireference/v2/group/search_groups.md). The
// docs make no exception for admins; AdminListsHidden models a server that does.
func (s *Server) listed(g *group, c caller) bool {
	return g.privacy == "public" || g.visible || g.isMember(c.id) || (c.admin && s.o.AdminListsHidden)
}

// canSee reports whether c may read g by id: what search lists, and a hidden group also to
// its manager and to admins (unless HiddenUnreadableByID, the pessimistic reading of the
// undocumented case, where a hidden group answers 404 to everyone not in it).
func (s *Server) canSee(g *group, c caller) bool {
	if s.listed(g, c) {
		return true
	}
	return !s.hiddenUnreadable && (c.admin || g.managedBy == c.id)
}

func canManage(g *group, c caller) bool { return c.admin || g.managedBy == c.id }

// groupFor resolves the {id} path value to a group c can see; it writes the 404 itself.
// It is called with s.mu held.
func (s *Server) groupFor(w http.ResponseWriter, r *http.Request, c caller) *group {
	id, err := strconv.ParseInt(r.PathValue("id"), 10, 64)
	g := s.groups[id]
	if err != nil || g == nil || !s.canSee(g, c) {
		writeDetail(w, http.StatusNotFound, "Not found.")
		return nil
	}
	return g
}

func (s *Server) groupsSearch(w http.ResponseWriter, r *http.Request, c caller) {
	// DRF's SearchFilter: whitespace-separated terms, each matched case-insensitively.
	terms := strings.Fields(strings.ToLower(r.URL.Query().Get("search")))
	s.mu.Lock()
	var ids []int64
	for _, id := range s.groupOrder {
		g := s.groups[id]
		if s.listed(g, c) && matchesAll(strings.ToLower(g.name), terms) {
			ids = append(ids, id)
		}
	}
	s.paged(w, r, RouteGroupsSearch, len(ids), func(i int) any { return s.render(s.groups[ids[i]], c) })
}

func matchesAll(name string, terms []string) bool {
	for _, t := range terms {
		if !strings.Contains(name, t) {
			return false
		}
	}
	return true
}

func (s *Server) groupGet(w http.ResponseWriter, r *http.Request, c caller) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if g := s.groupFor(w, r, c); g != nil {
		writeJSON(w, http.StatusOK, s.render(g, c))
	}
}

// decodeBody reads a JSON object body into raw fields, answering DRF's parse error itself.
func decodeBody(w http.ResponseWriter, r *http.Request) (map[string]json.RawMessage, bool) {
	var body map[string]json.RawMessage
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, 1<<20))
	dec.UseNumber()
	if err := dec.Decode(&body); err != nil || body == nil {
		writeDetail(w, http.StatusBadRequest, "JSON parse error - expected a JSON object")
		return nil, false
	}
	return body, true
}

// groupFields validates a create/update body. For an update, cur is the group being
// changed and absent fields keep their values.
func (s *Server) groupFields(body map[string]json.RawMessage, cur *group) (group, []fieldError) {
	var g group
	if cur != nil {
		g = *cur
	}
	var errs []fieldError
	bad := func(field, msg string) { errs = append(errs, fieldError{Field: field, Messages: []string{msg}}) }
	str := func(field string) (string, bool, bool) {
		raw, ok := body[field]
		if !ok {
			return "", false, true
		}
		if bytes.Equal(bytes.TrimSpace(raw), []byte("null")) {
			return "", true, true
		}
		var v string
		if json.Unmarshal(raw, &v) != nil {
			bad(field, "Not a valid string.")
			return "", true, false
		}
		return v, true, true
	}
	if v, present, ok := str("name"); ok {
		switch {
		case present && strings.TrimSpace(v) == "":
			bad("name", "This field may not be blank.")
		case present:
			g.name = v
		case cur == nil:
			bad("name", "This field is required.")
		}
	}
	if v, present, ok := str("description"); ok && present {
		g.description = v
	}
	visibleSet := false
	if raw, ok := body["visible"]; ok {
		var v bool
		if json.Unmarshal(raw, &v) != nil {
			bad("visible", "Must be a valid boolean.")
		} else {
			g.visible, visibleSet = v, true
		}
	}
	if v, present, ok := str("privacy"); ok {
		switch {
		case present && v != "public" && v != "private":
			bad("privacy", fmt.Sprintf("%q is not a valid choice.", v))
		case present:
			g.privacy = v
		case cur == nil:
			bad("privacy", "This field is required.")
		}
	}
	if cur == nil && g.privacy == "private" && !visibleSet {
		bad("visible", "This field is required for a private group.")
	}
	if g.privacy == "public" {
		g.visible = true
	}
	if g.name != "" {
		if other, taken := s.byName[s.nameKey(g.name)]; taken && (cur == nil || other != cur.id) {
			bad("name", "group with this name already exists.")
		}
	}
	return g, errs
}

func (s *Server) groupCreate(w http.ResponseWriter, r *http.Request, c caller) {
	body, ok := decodeBody(w, r)
	if !ok {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	g, errs := s.groupFields(body, nil)
	if len(errs) > 0 {
		writeErrors(w, http.StatusBadRequest, errs)
		return
	}
	g.id = s.nextGroup
	s.nextGroup++
	g.slug = slugify(g.name, g.id)
	g.active = true
	g.created = s.o.Now().UTC()
	g.createdBy, g.managedBy = c.id, c.id
	if s.o.CreatorJoins {
		g.members = []int64{c.id}
	}
	s.groups[g.id] = &g
	s.groupOrder = append(s.groupOrder, g.id) // ids only grow, so the order stays sorted
	s.byName[s.nameKey(g.name)] = g.id
	s.effects.Created(g.name)
	writeJSON(w, http.StatusCreated, s.render(&g, c))
}

func (s *Server) groupUpdate(w http.ResponseWriter, r *http.Request, c caller) {
	body, ok := decodeBody(w, r)
	if !ok {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	cur := s.groupFor(w, r, c)
	if cur == nil {
		return
	}
	if !canManage(cur, c) {
		writeDetail(w, http.StatusForbidden, "You do not have permission to perform this action.")
		return
	}
	if _, hasName := body["name"]; r.Method == http.MethodPut && !hasName {
		writeErrors(w, http.StatusBadRequest, []fieldError{{Field: "name", Messages: []string{"This field is required."}}})
		return
	}
	g, errs := s.groupFields(body, cur)
	if len(errs) > 0 {
		writeErrors(w, http.StatusBadRequest, errs)
		return
	}
	if g.name != cur.name {
		delete(s.byName, s.nameKey(cur.name))
		s.byName[s.nameKey(g.name)] = g.id
	}
	*cur = g
	writeJSON(w, http.StatusOK, s.render(cur, c))
}

func (s *Server) groupDelete(w http.ResponseWriter, r *http.Request, c caller) {
	s.mu.Lock()
	defer s.mu.Unlock()
	g := s.groupFor(w, r, c)
	if g == nil {
		return
	}
	if !canManage(g, c) {
		writeDetail(w, http.StatusForbidden, "You do not have permission to perform this action.")
		return
	}
	delete(s.groups, g.id)
	delete(s.byName, s.nameKey(g.name))
	if i, ok := slices.BinarySearch(s.groupOrder, g.id); ok {
		s.groupOrder = slices.Delete(s.groupOrder, i, i+1)
	}
	w.WriteHeader(http.StatusNoContent)
}

func (s *Server) membersList(w http.ResponseWriter, r *http.Request, c caller) {
	s.mu.Lock()
	g := s.groupFor(w, r, c)
	if g == nil {
		s.mu.Unlock()
		return
	}
	if g.privacy == "private" && !g.isMember(c.id) && !canManage(g, c) {
		s.mu.Unlock()
		writeDetail(w, http.StatusForbidden, "You do not have permission to perform this action.")
		return
	}
	members := g.members
	s.paged(w, r, RouteMembersList, len(members), func(i int) any {
		b := s.brief(members[i])
		return b
	})
}

func (s *Server) membersAdd(w http.ResponseWriter, r *http.Request, c caller) {
	var body map[string]json.RawMessage
	if r.ContentLength != 0 {
		var ok bool
		if body, ok = decodeBody(w, r); !ok {
			return
		}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	g := s.groupFor(w, r, c)
	if g == nil {
		return
	}
	raw, given := body["users"]
	if !given {
		// Without users the caller joins.
		s.addMember(g, c.id)
		w.WriteHeader(http.StatusNoContent)
		return
	}
	if !canManage(g, c) {
		writeDetail(w, http.StatusForbidden, "You do not have permission to perform this action.")
		return
	}
	var ids []json.Number
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	if err := dec.Decode(&ids); err != nil {
		writeErrors(w, http.StatusBadRequest, []fieldError{{Field: "users", Messages: []string{"Expected a list of items."}}})
		return
	}
	var msgs []string
	uids := make([]int64, 0, len(ids))
	for _, n := range ids {
		id, err := strconv.ParseInt(n.String(), 10, 64)
		if err != nil || s.users[id] == nil {
			msgs = append(msgs, fmt.Sprintf("Invalid pk \"%s\" - object does not exist.", n))
			continue
		}
		uids = append(uids, id)
	}
	if len(msgs) > 0 {
		writeErrors(w, http.StatusBadRequest, []fieldError{{Field: "users", Messages: msgs}})
		return
	}
	for _, id := range uids {
		s.addMember(g, id)
	}
	w.WriteHeader(http.StatusNoContent)
}

func (s *Server) addMember(g *group, uid int64) {
	i, found := slices.BinarySearch(g.members, uid)
	if found {
		return
	}
	g.members = slices.Insert(g.members, i, uid)
	s.effects.Added(strconv.FormatInt(g.id, 10), strconv.FormatInt(uid, 10))
}

func (s *Server) memberRemove(w http.ResponseWriter, r *http.Request, c caller) {
	s.mu.Lock()
	defer s.mu.Unlock()
	g := s.groupFor(w, r, c)
	if g == nil {
		return
	}
	uid := c.id
	if v := r.URL.Query().Get("user"); v != "" {
		if !canManage(g, c) {
			writeDetail(w, http.StatusForbidden, "You do not have permission to perform this action.")
			return
		}
		id, err := strconv.ParseInt(v, 10, 64)
		if err != nil || s.users[id] == nil {
			writeDetail(w, http.StatusNotFound, "Not found.")
			return
		}
		uid = id
	}
	if i, found := slices.BinarySearch(g.members, uid); found {
		g.members = slices.Delete(g.members, i, i+1)
		s.effects.Removed(strconv.FormatInt(g.id, 10), strconv.FormatInt(uid, 10))
	}
	w.WriteHeader(http.StatusNoContent)
}

func (s *Server) usersList(w http.ResponseWriter, r *http.Request, c caller) {
	s.mu.Lock()
	order := s.userOrder
	s.paged(w, r, RouteUsersList, len(order), func(i int) any { return s.full(s.users[order[i]]) })
}

func (s *Server) userGet(w http.ResponseWriter, r *http.Request, c caller) {
	s.mu.Lock()
	defer s.mu.Unlock()
	id, err := strconv.ParseInt(r.PathValue("id"), 10, 64)
	u := s.users[id]
	if err != nil || u == nil {
		writeDetail(w, http.StatusNotFound, "Not found.")
		return
	}
	writeJSON(w, http.StatusOK, s.full(u))
}

// accountSearch is the admin-only `GET /api/v2/account/search/`: exactly one of email,
// username, or ext_id with provider; 404 when nobody matches.
func (s *Server) accountSearch(w http.ResponseWriter, r *http.Request, c caller) {
	if !c.admin {
		writeDetail(w, http.StatusForbidden, "You do not have permission to perform this action.")
		return
	}
	q := r.URL.Query()
	given := 0
	for _, k := range []string{"email", "username", "ext_id"} {
		if q.Get(k) != "" {
			given++
		}
	}
	if given != 1 || (q.Get("ext_id") != "" && q.Get("provider") == "") {
		writeErrors(w, http.StatusBadRequest, []fieldError{{Code: "invalid_params",
			Message: "Pass exactly one of email, username, or ext_id with provider."}})
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	var u *user
	switch {
	case q.Get("email") != "":
		u = s.users[s.byEmail[normEmail(q.Get("email"))]]
	case q.Get("username") != "":
		u = s.users[s.byUsername[q.Get("username")]]
	default:
		u = s.users[s.byExtID[extKey{q.Get("provider"), q.Get("ext_id")}]]
	}
	if u == nil {
		writeDetail(w, http.StatusNotFound, "Not found.")
		return
	}
	writeJSON(w, http.StatusOK, s.account(u))
}

// invitesList is the manager-only `GET /api/v2/group/{id}/invite/`. The simulator keeps no
// invitations (groupsync adds members directly), so a manager gets an empty page; anyone
// else a 403, as for writes.
func (s *Server) invitesList(w http.ResponseWriter, r *http.Request, c caller) {
	s.mu.Lock()
	g := s.groupFor(w, r, c)
	if g == nil {
		s.mu.Unlock()
		return
	}
	if !canManage(g, c) {
		s.mu.Unlock()
		writeDetail(w, http.StatusForbidden, "You do not have permission to perform this action.")
		return
	}
	s.paged(w, r, RouteInvitesList, 0, func(int) any { return nil })
}
