package airtablesim

import (
	"slices"
	"strings"

	"github.com/groupsync/groupsync/connectors/simkit"
)

var _ simkit.AccountKnobs = (*Server)(nil)

func emailKey(e string) string { return strings.ToLower(strings.TrimSpace(e)) }

// SetAccountEmail changes a user's email (Airtable's SCIM userName follows it).
func (s *Server) SetAccountEmail(email, newEmail string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	i, ok := s.userByEmail[emailKey(email)]
	if !ok {
		return false
	}
	delete(s.userByEmail, emailKey(email))
	s.users[i].email = strings.TrimSpace(newEmail)
	s.userByEmail[emailKey(newEmail)] = i
	return true
}

// DeactivateAccount deactivates a user (meta API state "deactivated", SCIM active false);
// group memberships stay.
func (s *Server) DeactivateAccount(email string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	i, ok := s.userByEmail[emailKey(email)]
	if !ok {
		return false
	}
	s.users[i].active = false
	return true
}

// DeleteAccount removes a user from the enterprise: it leaves every group, and neither the
// meta API nor SCIM knows its id or email any more.
func (s *Server) DeleteAccount(email string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	gone, ok := s.userByEmail[emailKey(email)]
	if !ok {
		return false
	}
	// Users are a dense slice indexed by position, so the slice is rebuilt and every index
	// into it renumbered.
	renum := func(u int32) int32 {
		if u > gone {
			return u - 1
		}
		return u
	}
	s.users = slices.Delete(s.users, int(gone), int(gone)+1)
	s.userByID = make(map[string]int32, len(s.users))
	s.userByEmail = make(map[string]int32, len(s.users))
	for i := range s.users {
		s.userByID[s.users[i].id] = int32(i)
		s.userByEmail[emailKey(s.users[i].email)] = int32(i)
	}
	for _, g := range s.groups {
		if g == nil {
			continue
		}
		g.members = slices.DeleteFunc(g.members, func(m member) bool { return m.u == gone })
		for k := range g.members {
			g.members[k].u = renum(g.members[k].u)
		}
	}
	return true
}
