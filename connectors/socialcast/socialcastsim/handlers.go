package socialcastsim

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/groupsync/groupsync/connectors/simkit"
)

type routeKind int

const (
	kindUnknown routeKind = iota
	kindWrongMethod
	kindGroupsList
	kindGroupsCreate
	kindGroupShow
	kindGroupUpdate
	kindGroupDestroy
	kindGroupArchive
	kindMemberships
	kindUsersList
	kindUsersSearch
	kindUserShow
)

type route struct {
	label string
	kind  routeKind
	param string // the :group_id or :id path segment, decoded
}

// parseRoute maps a request to its Rails route. Paths carry the `.json` format suffix; the
// id segment is the decoded path segment, so `5-privatetestgr%C3%B8up2` arrives as
// `5-privatetestgrøup2`.
func parseRoute(r *http.Request) route {
	p, ok := strings.CutPrefix(r.URL.Path, "/api/")
	if !ok {
		return route{label: routeUnknown}
	}
	p, ok = strings.CutSuffix(p, ".json")
	if !ok {
		return route{label: routeUnknown}
	}
	seg := strings.Split(p, "/")
	pick := func(param string, byMethod map[string]route) route {
		if rt, ok := byMethod[r.Method]; ok {
			rt.param = param
			return rt
		}
		// Any template of this path names the route; the method is the caller's.
		for _, rt := range byMethod {
			_, tmpl, _ := strings.Cut(rt.label, " ")
			return route{label: r.Method + " " + tmpl, kind: kindWrongMethod}
		}
		return route{label: routeUnknown}
	}
	switch {
	case len(seg) == 1 && seg[0] == "groups":
		return pick("", map[string]route{
			http.MethodGet:  {label: RouteGroupsList, kind: kindGroupsList},
			http.MethodPost: {label: RouteGroupsCreate, kind: kindGroupsCreate},
		})
	case len(seg) == 2 && seg[0] == "groups" && seg[1] != "":
		return pick(seg[1], map[string]route{
			http.MethodGet:    {label: RouteGroupShow, kind: kindGroupShow},
			http.MethodPut:    {label: RouteGroupUpdate, kind: kindGroupUpdate},
			http.MethodPatch:  {label: RouteGroupUpdate, kind: kindGroupUpdate},
			http.MethodDelete: {label: RouteGroupDestroy, kind: kindGroupDestroy},
		})
	case len(seg) == 3 && seg[0] == "groups" && seg[1] != "" && seg[2] == "archive":
		return pick(seg[1], map[string]route{http.MethodDelete: {label: RouteGroupArchive, kind: kindGroupArchive}})
	case len(seg) == 3 && seg[0] == "groups" && seg[1] != "" && seg[2] == "memberships":
		return pick(seg[1], map[string]route{http.MethodGet: {label: RouteMemberships, kind: kindMemberships}})
	case len(seg) == 1 && seg[0] == "users":
		return pick("", map[string]route{http.MethodGet: {label: RouteUsersList, kind: kindUsersList}})
	case len(seg) == 2 && seg[0] == "users" && seg[1] == "search":
		return pick("", map[string]route{http.MethodGet: {label: RouteUsersSearch, kind: kindUsersSearch}})
	case len(seg) == 2 && seg[0] == "users" && seg[1] != "":
		return pick(seg[1], map[string]route{http.MethodGet: {label: RouteUserShow, kind: kindUserShow}})
	}
	return route{label: routeUnknown}
}

func routeOf(r *http.Request) string { return parseRoute(r).label }

func (s *Server) serve(w http.ResponseWriter, r *http.Request) {
	if !s.authorized(r) {
		writeError(w, http.StatusUnauthorized, 0)
		return
	}
	rt := parseRoute(r)
	switch rt.kind {
	case kindGroupsList:
		s.listGroups(w, r)
	case kindGroupsCreate:
		s.createGroup(w, r)
	case kindGroupShow:
		s.showGroup(w, rt.param)
	case kindGroupUpdate:
		s.updateGroup(w, r, rt.param)
	case kindGroupArchive:
		s.archiveGroup(w, rt.param)
	case kindGroupDestroy:
		s.destroyGroup(w, rt.param)
	case kindMemberships:
		s.listMemberships(w, r, rt.param)
	case kindUsersList:
		s.listUsers(w, r)
	case kindUsersSearch:
		s.searchUsers(w, r)
	case kindUserShow:
		s.showUser(w, rt.param)
	case kindWrongMethod:
		writeJSON(w, http.StatusMethodNotAllowed, map[string]string{"error": "Method Not Allowed"})
	default:
		writeJSON(w, http.StatusNotFound, map[string]string{"error": "No route matches " + r.Method + " " + r.URL.Path})
	}
}

// pageParams reads page (1-based) and per_page the way Rails' will_paginate does: garbage
// and values below 1 fall back to the defaults, per_page is capped at MaxPerPage.
func (s *Server) pageParams(r *http.Request) (page, perPage int) {
	q := r.URL.Query()
	page, err := strconv.Atoi(q.Get("page"))
	if err != nil || page < 1 || s.ignorePage {
		page = 1
	}
	perPage, err = strconv.Atoi(q.Get("per_page"))
	if err != nil || perPage < 1 {
		perPage = s.opts.PageSize
	}
	return page, min(perPage, MaxPerPage)
}

func window(n, page, perPage int) (lo, hi int) {
	lo64 := int64(page-1) * int64(perPage)
	if lo64 >= int64(n) {
		return n, n
	}
	lo = int(lo64)
	return lo, min(n, lo+perPage)
}

// listCap applies Options.ListCap to an undocumented list's per_page.
func (s *Server) listCap(perPage int) int {
	if s.opts.ListCap > 0 {
		return min(perPage, s.opts.ListCap)
	}
	return perPage
}

func (s *Server) listGroups(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	page, perPage := s.pageParams(r)
	perPage = s.listCap(perPage)
	lo, hi := window(len(s.order), page, perPage)
	out := make([]groupJSON, 0, hi-lo)
	for _, id := range s.order[lo:hi] {
		out = append(out, s.renderGroupLocked(s.groups[id]))
	}
	root := s.groupsRoot
	s.mu.Unlock()
	if root {
		writeJSON(w, http.StatusOK, map[string]any{"groups": out})
		return
	}
	writeJSON(w, http.StatusOK, out)
}

func (s *Server) showGroup(w http.ResponseWriter, param string) {
	s.mu.Lock()
	g := s.groupByParamLocked(param)
	if g == nil {
		s.mu.Unlock()
		notFound(w)
		return
	}
	body := map[string]groupJSON{"group": s.renderGroupLocked(g)}
	s.mu.Unlock()
	writeJSON(w, http.StatusOK, body)
}

// validationErrors is Rails' respond_with body for an invalid record (422).
type validationErrors map[string][]string

func (v validationErrors) add(field, msg string) { v[field] = append(v[field], msg) }

func (s *Server) createGroup(w http.ResponseWriter, r *http.Request) {
	if err := r.ParseForm(); err != nil {
		writeJSON(w, http.StatusBadRequest, map[string]string{"error": "malformed form body"})
		return
	}
	name := r.PostForm.Get("group[name]")
	permission := r.PostForm.Get("group[permission_mode]")
	if permission == "" {
		permission = "public"
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	errs := validationErrors{}
	s.validateLocked(errs, nil, name, permission)
	if len(errs) > 0 {
		writeJSON(w, http.StatusUnprocessableEntity, map[string]any{"errors": errs})
		return
	}
	g := &group{id: s.newIDLocked(), name: name, description: r.PostForm.Get("group[description]"), permission: permission}
	s.groups[g.id] = g
	s.order = append(s.order, g.id)
	s.effects.Created(name)
	writeJSON(w, http.StatusCreated, map[string]groupJSON{"group": s.renderGroupLocked(g)})
}

// validateLocked checks a group's name and permission mode; self is the group being
// updated (nil on create), which may keep its own name.
func (s *Server) validateLocked(errs validationErrors, self *group, name, permission string) {
	switch {
	case strings.TrimSpace(name) == "":
		errs.add("name", "can't be blank")
	case len([]rune(name)) > 255:
		errs.add("name", "is too long (maximum is 255 characters)")
	default:
		for _, id := range s.order {
			g := s.groups[id]
			if g != self && !g.archived && strings.EqualFold(g.name, name) {
				errs.add("name", "has already been taken")
				break
			}
		}
	}
	if !validPermission(permission) {
		errs.add("permission_mode", "is not included in the list")
	}
}

func (s *Server) updateGroup(w http.ResponseWriter, r *http.Request, param string) {
	if err := r.ParseForm(); err != nil {
		writeJSON(w, http.StatusBadRequest, map[string]string{"error": "malformed form body"})
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	g := s.groupByParamLocked(param)
	if g == nil {
		notFound(w)
		return
	}
	if g.archived {
		writeJSON(w, http.StatusUnprocessableEntity, map[string]any{"errors": validationErrors{"base": {"Archived groups cannot be changed"}}})
		return
	}
	name, permission, description := g.name, g.permission, g.description
	if v, ok := r.PostForm["group[name]"]; ok {
		name = v[0]
	}
	if v, ok := r.PostForm["group[permission_mode]"]; ok {
		permission = v[0]
	}
	if v, ok := r.PostForm["group[description]"]; ok {
		description = v[0]
	}
	errs := validationErrors{}
	s.validateLocked(errs, g, name, permission)
	if len(errs) > 0 {
		writeJSON(w, http.StatusUnprocessableEntity, map[string]any{"errors": errs})
		return
	}
	g.name, g.permission, g.description = name, permission, description
	writeJSON(w, http.StatusOK, map[string]groupJSON{"group": s.renderGroupLocked(g)})
}

func (s *Server) archiveGroup(w http.ResponseWriter, param string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	g := s.groupByParamLocked(param)
	if g == nil {
		notFound(w)
		return
	}
	if g.archived {
		writeJSON(w, http.StatusUnprocessableEntity, map[string]any{"errors": validationErrors{"base": {"Group is already archived"}}})
		return
	}
	g.archived = true
	writeJSON(w, http.StatusOK, map[string]groupJSON{"group": s.renderGroupLocked(g)})
}

func (s *Server) destroyGroup(w http.ResponseWriter, param string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	g := s.groupByParamLocked(param)
	if g == nil {
		notFound(w)
		return
	}
	if !g.archived {
		writeJSON(w, http.StatusUnprocessableEntity, map[string]any{"errors": validationErrors{"base": {"Group must be archived before it can be destroyed"}}})
		return
	}
	delete(s.groups, g.id)
	for i, id := range s.order {
		if id == g.id {
			s.order = append(s.order[:i], s.order[i+1:]...)
			break
		}
	}
	w.WriteHeader(http.StatusNoContent)
}

type membershipJSON struct {
	ID      int64  `json:"id"`
	UserID  int64  `json:"user_id"`
	Role    string `json:"role"`
	RoleKey string `json:"role_key"`
}

func (s *Server) listMemberships(w http.ResponseWriter, r *http.Request, param string) {
	s.mu.Lock()
	g := s.groupByParamLocked(param)
	if g == nil {
		s.mu.Unlock()
		notFound(w)
		return
	}
	page, perPage := s.pageParams(r)
	lo, hi := window(len(g.members), page, perPage)
	out := make([]membershipJSON, 0, hi-lo)
	for _, m := range g.members[lo:hi] {
		mj := membershipJSON{ID: m.id, UserID: m.user, Role: "Member", RoleKey: "member"}
		if m.admin {
			mj.Role, mj.RoleKey = "Admin", "admin"
		}
		out = append(out, mj)
	}
	s.mu.Unlock()
	writeJSON(w, http.StatusOK, map[string]any{"group_memberships": out})
}

func (s *Server) listUsers(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	page, perPage := s.pageParams(r)
	perPage = s.listCap(perPage)
	lo, hi := window(len(s.users), page, perPage)
	out := make([]userJSON, 0, hi-lo)
	for i := lo; i < hi; i++ {
		out = append(out, s.renderUser(&s.users[i]))
	}
	s.mu.Unlock()
	writeJSON(w, http.StatusOK, map[string]any{"users": out})
}

// searchUsers matches q case-insensitively against names and emails, like the web search.
func (s *Server) searchUsers(w http.ResponseWriter, r *http.Request) {
	q := strings.ToLower(strings.TrimSpace(r.URL.Query().Get("q")))
	s.mu.Lock()
	page, perPage := s.pageParams(r)
	skip := (page - 1) * perPage
	out := []userJSON{}
	for i := range s.users {
		if q == "" || len(out) == perPage {
			break
		}
		u := &s.users[i]
		if !strings.Contains(strings.ToLower(u.name), q) && !strings.Contains(strings.ToLower(strings.TrimSpace(u.email)), q) {
			continue
		}
		if skip > 0 {
			skip--
			continue
		}
		out = append(out, s.renderUser(u))
	}
	s.mu.Unlock()
	writeJSON(w, http.StatusOK, map[string]any{"users": out})
}

func (s *Server) showUser(w http.ResponseWriter, param string) {
	id, err := strconv.ParseInt(param, 10, 64)
	s.mu.Lock()
	var u *user
	if err == nil {
		u = s.userLocked(id)
	}
	if u == nil {
		s.mu.Unlock()
		notFound(w)
		return
	}
	body := map[string]userJSON{"user": s.renderUser(u)}
	s.mu.Unlock()
	writeJSON(w, http.StatusOK, body)
}

type avatarsJSON struct {
	IsSystemDefault bool   `json:"is_system_default"`
	Square16        string `json:"square16"`
	Square30        string `json:"square30"`
	Square45        string `json:"square45"`
	Square70        string `json:"square70"`
	Square140       string `json:"square140"`
}

// groupJSON is the apidoc's group object (groups/show.html example), rendered per request.
type groupJSON struct {
	ID                         int64       `json:"id"`
	Name                       string      `json:"name"`
	HTMLName                   string      `json:"html_name"`
	URL                        string      `json:"url"`
	Type                       string      `json:"type"`
	Avatars                    avatarsJSON `json:"avatars"`
	Username                   string      `json:"username"`
	Groupname                  string      `json:"groupname"`
	Private                    bool        `json:"private"`
	ExternalContributor        bool        `json:"external_contributor"`
	ChatEnabled                bool        `json:"chat_enabled"`
	PostEnabled                bool        `json:"post_enabled"`
	ActivityURL                string      `json:"activity_url"`
	AdminIDs                   []int64     `json:"admin_ids"`
	Description                *string     `json:"description"`
	HTMLDescription            string      `json:"html_description"`
	State                      string      `json:"state"`
	Permission                 string      `json:"permission"`
	GroupType                  string      `json:"group_type"`
	MemberCount                *int        `json:"member_count"`
	RoleKey                    *string     `json:"role_key"`
	RuleManaged                bool        `json:"rule_managed"`
	CanRequestMembership       bool        `json:"can_request_membership"`
	CanCancelMembershipRequest bool        `json:"can_cancel_membership_request"`
	CanJoin                    bool        `json:"can_join"`
	CanLeave                   bool        `json:"can_leave"`
	CanAdminister              bool        `json:"can_administer"`
	ChatStreamID               *int64      `json:"chat_stream_id"`
	PostStreamID               *int64      `json:"post_stream_id"`
}

// renderGroupLocked renders g as the caller (a community admin who belongs to no group)
// sees it: role_key null, member_count null on private groups, can_* from that view.
func (s *Server) renderGroupLocked(g *group) groupJSON {
	gn := groupname(g.name)
	slug := strconv.FormatInt(g.id, 10) + "-" + url.PathEscape(gn)
	base := "https://" + s.opts.Host
	out := groupJSON{
		ID:                  g.id,
		Name:                g.name,
		HTMLName:            htmlEscape(g.name),
		URL:                 base + "/groups/" + slug,
		Type:                "Group",
		Username:            gn,
		Groupname:           gn,
		Private:             g.permission != "public",
		ExternalContributor: g.permission == "external_contributor",
		PostEnabled:         true,
		ActivityURL:         base + "/groups/" + slug + "/messages_activity",
		AdminIDs:            []int64{},
		HTMLDescription:     `<div class="markdown-body"></div>`,
		State:               "active",
		Permission:          g.permission,
		GroupType:           "standard",
		RuleManaged:         g.ruleManaged,
		CanAdminister:       true,
	}
	for _, sz := range []struct {
		dst *string
		px  int
	}{{&out.Avatars.Square16, 16}, {&out.Avatars.Square30, 30}, {&out.Avatars.Square45, 45}, {&out.Avatars.Square70, 70}, {&out.Avatars.Square140, 140}} {
		*sz.dst = fmt.Sprintf("%s/assets/avatars/default_group_square%d.png", base, sz.px)
	}
	out.Avatars.IsSystemDefault = true
	for _, m := range g.members {
		if m.admin {
			out.AdminIDs = append(out.AdminIDs, m.user)
		}
	}
	if g.description != "" {
		d := g.description
		out.Description = &d
		out.HTMLDescription = `<div class="markdown-body"><p>` + htmlEscape(d) + `</p></div>`
	}
	if g.archived {
		out.State = "archived"
		out.CanAdminister = true
	}
	if !out.Private {
		n := len(g.members)
		out.MemberCount = &n
	}
	active := !g.archived
	out.CanJoin = active && !out.Private && !g.ruleManaged
	out.CanRequestMembership = active && out.Private && !g.ruleManaged
	return out
}

type contactInfoJSON struct {
	Email       string  `json:"email"`
	Location    *string `json:"location"`
	CellPhone   *string `json:"cell_phone"`
	OfficePhone *string `json:"office_phone"`
}

type userJSON struct {
	ID                  int64           `json:"id"`
	Name                string          `json:"name"`
	HTMLName            string          `json:"html_name"`
	Username            string          `json:"username"`
	URL                 string          `json:"url"`
	Title               *string         `json:"title"`
	Active              bool            `json:"active"`
	Terminated          bool            `json:"terminated"`
	ExternalContributor bool            `json:"external_contributor"`
	ContactInfo         contactInfoJSON `json:"contact_info"`
	Following           bool            `json:"following"`
}

func (s *Server) renderUser(u *user) userJSON {
	handle, _, _ := strings.Cut(strings.TrimSpace(u.email), "@")
	return userJSON{
		ID:          u.id,
		Name:        u.name,
		HTMLName:    htmlEscape(u.name),
		Username:    handle,
		URL:         fmt.Sprintf("https://%s/users/%d-%s", s.opts.Host, u.id, url.PathEscape(handle)),
		Active:      !u.terminated,
		Terminated:  u.terminated,
		ContactInfo: contactInfoJSON{Email: u.email},
	}
}

// htmlEscaper is Rails' ERB::Util.html_escape (which differs from html.EscapeString on '"').
var htmlEscaper = strings.NewReplacer("&", "&amp;", "<", "&lt;", ">", "&gt;", `"`, "&quot;", "'", "&#39;")

func htmlEscape(s string) string { return htmlEscaper.Replace(s) }

func writeJSON(w http.ResponseWriter, status int, v any) {
	body, err := json.Marshal(v)
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.Header().Set("Content-Length", strconv.Itoa(len(body)))
	w.WriteHeader(status)
	_, _ = w.Write(body)
}

func notFound(w http.ResponseWriter) {
	writeJSON(w, http.StatusNotFound, map[string]string{"error": "Record not found"})
}

// writeError writes Socialcast's error answers: Rails' plain-text Basic-auth refusal, its
// HTML error page for 5xx, and small JSON bodies otherwise. The 429 body and its
// Retry-After header are assumptions: Socialcast documents no rate limit.
var _ simkit.ErrorWriter = writeError

func writeError(w http.ResponseWriter, status int, retryAfter time.Duration) {
	switch {
	case status == http.StatusUnauthorized:
		w.Header().Set("WWW-Authenticate", `Basic realm="Socialcast"`)
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		w.WriteHeader(status)
		_, _ = w.Write([]byte("HTTP Basic: Access denied.\n"))
	case status == http.StatusTooManyRequests:
		if retryAfter > 0 {
			w.Header().Set("Retry-After", simkit.RetryAfterSeconds(retryAfter))
		}
		writeJSON(w, status, map[string]string{"error": "Rate limit exceeded. Please retry later."})
	case status >= 500:
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		w.WriteHeader(status)
		_, _ = w.Write([]byte("<!DOCTYPE html>\n<html><head><title>We're sorry, but something went wrong (" +
			strconv.Itoa(status) + ")</title></head><body><h1>We're sorry, but something went wrong.</h1></body></html>\n"))
	default:
		writeJSON(w, status, map[string]string{"error": http.StatusText(status)})
	}
}
