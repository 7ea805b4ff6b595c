package airtablesim

import (
	"encoding/json"
	"net/http"
	"slices"
	"strings"
	"time"
)

// metaTypes are the Web API error types by status (airtable.com/developers/web/api/errors).
var metaTypes = map[int][2]string{
	400: {"INVALID_REQUEST_UNKNOWN", "Invalid request: parameter validation failed. Check your request data."},
	401: {"AUTHENTICATION_REQUIRED", "Authentication required"},
	403: {"INVALID_PERMISSIONS_OR_MODEL_NOT_FOUND", "Invalid permissions, or the requested model was not found. Check that both your user and your token have the required permissions, and that the model names and/or ids are correct."},
	413: {"REQUEST_TOO_LARGE", "Request body is too large"},
	414: {"INVALID_REQUEST_URL_TOO_LONG", "The URL of your request exceeds the 16,000 character limit."},
	422: {"INVALID_REQUEST_UNKNOWN", "Invalid request: parameter validation failed. Check your request data."},
	429: {"RATE_LIMIT_REACHED", "Rate limit exceeded. Please try again later"},
	500: {"SERVER_ERROR", "Try again. If the problem persists, contact support."},
	502: {"SERVER_ERROR", "The service is temporarily unavailable. Please retry shortly."},
	503: {"SERVICE_UNAVAILABLE", "The service is temporarily unavailable. Please retry shortly."},
}

// writeJSON writes v with status.
func writeJSON(w http.ResponseWriter, status int, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.WriteHeader(status)
	_, _ = w.Write(b)
}

// writeMetaError writes the Web API's error body. 404s use the bare-string form some meta
// routes answer with ({"error":"NOT_FOUND"}).
func writeMetaError(w http.ResponseWriter, status int, message string) {
	if status == http.StatusNotFound {
		writeJSON(w, status, map[string]string{"error": "NOT_FOUND"})
		return
	}
	t, ok := metaTypes[status]
	if !ok {
		t = [2]string{"SERVER_ERROR", http.StatusText(status)}
	}
	if message == "" {
		message = t[1]
	}
	writeJSON(w, status, map[string]any{"error": map[string]string{"type": t[0], "message": message}})
}

// writeMetaFault is the simkit ErrorWriter for meta routes. Airtable documents no
// Retry-After header (clients wait a fixed 30 s), so none is sent.
func (s *Server) writeMetaFault(w http.ResponseWriter, status int, _ time.Duration) {
	writeMetaError(w, status, "")
}

func (s *Server) authorized(r *http.Request) bool {
	return r.Header.Get("Authorization") == "Bearer "+s.opt.Token
}

func (s *Server) serveMeta(w http.ResponseWriter, r *http.Request) {
	if len(r.URL.RequestURI()) > MaxURLLength {
		writeMetaError(w, http.StatusRequestURITooLong, "")
		return
	}
	if !s.authorized(r) {
		writeMetaError(w, http.StatusUnauthorized, "")
		return
	}
	switch route(r) {
	case RouteEnterprise:
		s.getEnterprise(w, r)
	case RouteUsers:
		s.getUsers(w, r)
	case RouteGroup:
		s.getGroup(w, r)
	default:
		writeMetaError(w, http.StatusNotFound, "")
	}
}

// checkInclude validates include[] against the values a route allows.
func checkInclude(r *http.Request, allowed ...string) bool {
	for _, v := range r.URL.Query()["include[]"] {
		if !slices.Contains(allowed, v) {
			return false
		}
	}
	return true
}

type enterpriseOut struct {
	CreatedTime                    string        `json:"createdTime"`
	DescendantEnterpriseAccountIDs []string      `json:"descendantEnterpriseAccountIds"`
	EmailDomains                   []emailDomain `json:"emailDomains"`
	GroupIDs                       []string      `json:"groupIds"`
	ID                             string        `json:"id"`
	RootEnterpriseAccountID        string        `json:"rootEnterpriseAccountId"`
	UserIDs                        []string      `json:"userIds"`
	WorkspaceIDs                   []string      `json:"workspaceIds"`
}

type emailDomain struct {
	EmailDomain   string `json:"emailDomain"`
	IsSsoRequired bool   `json:"isSsoRequired"`
}

func (s *Server) getEnterprise(w http.ResponseWriter, r *http.Request) {
	id := strings.Split(strings.Trim(r.URL.Path, "/"), "/")[3]
	if !checkInclude(r, "aggregated", "descendants") {
		writeMetaError(w, http.StatusUnprocessableEntity, "include must be aggregated or descendants")
		return
	}
	s.mu.Lock()
	if id != s.ent {
		s.mu.Unlock()
		writeMetaError(w, http.StatusForbidden, "")
		return
	}
	out := enterpriseOut{
		CreatedTime: timeString(s.entCreated), ID: s.ent, RootEnterpriseAccountID: s.ent,
		DescendantEnterpriseAccountIDs: []string{}, WorkspaceIDs: []string{},
		GroupIDs: make([]string, 0, len(s.groupByID)+len(s.dangling)),
		UserIDs:  make([]string, 0, len(s.users)),
	}
	for _, g := range s.groups {
		if g != nil {
			out.GroupIDs = append(out.GroupIDs, g.id)
		}
	}
	if s.duplicateIDs {
		out.GroupIDs = append(out.GroupIDs, out.GroupIDs...)
	}
	out.GroupIDs = append(out.GroupIDs, s.dangling...)
	for i := range s.users {
		out.UserIDs = append(out.UserIDs, s.users[i].id)
	}
	domains := make([]string, 0, len(s.domains))
	for d := range s.domains {
		domains = append(domains, d)
	}
	s.mu.Unlock()
	slices.Sort(domains)
	out.EmailDomains = make([]emailDomain, len(domains))
	for i, d := range domains {
		out.EmailDomains[i] = emailDomain{EmailDomain: d, IsSsoRequired: true}
	}
	writeJSON(w, http.StatusOK, out)
}

type groupMemberOut struct {
	CreatedTime string  `json:"createdTime"`
	Email       string  `json:"email"`
	FirstName   *string `json:"firstName"`
	LastName    *string `json:"lastName"`
	Role        string  `json:"role"`
	UserID      string  `json:"userId"`
}

type groupOut struct {
	CreatedTime         string           `json:"createdTime"`
	EnterpriseAccountID string           `json:"enterpriseAccountId"`
	ID                  string           `json:"id"`
	Members             []groupMemberOut `json:"members"`
	Name                string           `json:"name"`
	UpdatedTime         string           `json:"updatedTime"`
}

// nullable renders an empty name part as null, as Airtable does for users without one.
func nullable(s string) *string {
	if s == "" {
		return nil
	}
	return &s
}

func (s *Server) getGroup(w http.ResponseWriter, r *http.Request) {
	if !checkInclude(r, "collaborations") {
		writeMetaError(w, http.StatusUnprocessableEntity, "include must be collaborations")
		return
	}
	id := lastSegment(r)
	s.mu.Lock()
	slot, ok := s.groupByID[id]
	if !ok {
		s.mu.Unlock()
		writeMetaError(w, http.StatusNotFound, "")
		return
	}
	g := s.groups[slot]
	out := groupOut{
		CreatedTime: timeString(g.created), EnterpriseAccountID: s.ent, ID: g.id, Name: g.name,
		UpdatedTime: timeString(g.updated), Members: make([]groupMemberOut, len(g.members)),
	}
	for i, m := range g.members {
		u := &s.users[m.u]
		out.Members[i] = groupMemberOut{
			CreatedTime: timeString(m.created), Email: u.email, FirstName: nullable(u.first),
			LastName: nullable(u.last), Role: roleName(m.role), UserID: u.id,
		}
	}
	s.mu.Unlock()
	writeJSON(w, http.StatusOK, out)
}

type userGroupRef struct {
	ID string `json:"id"`
}

type userOut struct {
	CreatedTime            string         `json:"createdTime"`
	Email                  string         `json:"email"`
	Groups                 []userGroupRef `json:"groups"`
	ID                     string         `json:"id"`
	IsAdmin                bool           `json:"isAdmin"`
	IsManaged              bool           `json:"isManaged"`
	IsServiceAccount       bool           `json:"isServiceAccount"`
	IsSsoRequired          bool           `json:"isSsoRequired"`
	IsTwoFactorAuthEnabled bool           `json:"isTwoFactorAuthEnabled"`
	LastActivityTime       *string        `json:"lastActivityTime"`
	Name                   string         `json:"name"`
	State                  string         `json:"state"`
}

// getUsers answers users-by-id-or-email: id[] and email[] (at least one), matched users in
// the order asked, each once; unknown ids and emails are left out.
func (s *Server) getUsers(w http.ResponseWriter, r *http.Request) {
	ent := strings.Split(strings.Trim(r.URL.Path, "/"), "/")[3]
	q := r.URL.Query()
	ids, emails := q["id[]"], q["email[]"]
	if len(ids) == 0 && len(emails) == 0 {
		writeMetaError(w, http.StatusUnprocessableEntity, "Request must include at least one userId or email")
		return
	}
	if !checkInclude(r, "collaborations", "aggregated", "descendants") {
		writeMetaError(w, http.StatusUnprocessableEntity, "include must be collaborations, aggregated or descendants")
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if ent != s.ent {
		writeMetaError(w, http.StatusForbidden, "")
		return
	}
	seen := map[int32]bool{}
	var found []int32
	for _, id := range ids {
		if i, ok := s.userByID[id]; ok && !seen[i] {
			seen[i] = true
			found = append(found, i)
		}
	}
	for _, e := range emails {
		if i, ok := s.userByEmail[strings.ToLower(strings.TrimSpace(e))]; ok && !seen[i] {
			seen[i] = true
			found = append(found, i)
		}
	}
	out := struct {
		Users []userOut `json:"users"`
	}{Users: make([]userOut, 0, len(found))}
	for _, i := range found {
		u := &s.users[i]
		state := "provisioned"
		if !u.active {
			state = "deactivated"
		}
		refs := make([]userGroupRef, len(u.groups))
		for j, slot := range u.groups {
			refs[j] = userGroupRef{ID: s.groups[slot].id}
		}
		out.Users = append(out.Users, userOut{
			CreatedTime: timeString(u.created), Email: u.email, Groups: refs, ID: u.id, IsManaged: true,
			IsSsoRequired: true, Name: u.name(), State: state,
		})
	}
	writeJSON(w, http.StatusOK, out)
}
