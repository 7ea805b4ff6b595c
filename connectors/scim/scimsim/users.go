package scimsim

import (
	"net/http"
	"strings"
)

// renderUser renders a SCIM User: userName is the email, which is also the primary work
// email. Callers hold s.mu.
func (s *Server) renderUser(u *user) map[string]any {
	return map[string]any{
		"schemas":     []string{SchemaUser},
		"id":          u.id,
		"userName":    u.email,
		"displayName": strings.TrimSpace(u.first + " " + u.last),
		"name":        map[string]any{"givenName": u.first, "familyName": u.last},
		"emails":      []any{map[string]any{"value": u.email, "type": "work", "primary": true}},
		"active":      u.active,
		"meta": map[string]any{"resourceType": "User", "created": timeString(u.created),
			"lastModified": timeString(u.changed), "location": Prefix + "/Users/" + u.id},
	}
}

func (s *Server) listUsers(w http.ResponseWriter, r *http.Request) *scimError {
	clauses, filtered, ferr := s.parseFilter(r, "userName", "emails.value", "emails", "id")
	if ferr != nil {
		return ferr
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	var items []any
	for _, u := range s.users {
		if u == nil {
			continue
		}
		if filtered && !matches(clauses, func(attr string) []string {
			if attr == "id" {
				return []string{u.id}
			}
			return []string{u.email} // userName and emails.value are both the email here
		}) {
			continue
		}
		items = append(items, s.renderUser(u))
	}
	out, err := s.page(r, items)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, out)
	return nil
}

func (s *Server) getUser(w http.ResponseWriter, r *http.Request) *scimError {
	s.mu.Lock()
	defer s.mu.Unlock()
	u := s.byUser[lastSegment(r)]
	if u == nil {
		return errNotFound
	}
	writeJSON(w, http.StatusOK, s.renderUser(u))
	return nil
}
