package socialcastsim

import (
	"slices"
	"strconv"
	"strings"

	"github.com/groupsync/groupsync/connectors/simkit"
)

var (
	_ simkit.AccountKnobs = (*Server)(nil)
	_ simkit.ArchiveKnobs = (*Server)(nil)
)

func emailKey(e string) string { return strings.ToLower(strings.TrimSpace(e)) }

// userByEmailLocked finds a user by email, compared case-insensitively. Callers hold s.mu.
func (s *Server) userByEmailLocked(email string) int {
	return slices.IndexFunc(s.users, func(u user) bool { return emailKey(u.email) == emailKey(email) })
}

// SetAccountEmail changes a user's contact email.
func (s *Server) SetAccountEmail(email, newEmail string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	i := s.userByEmailLocked(email)
	if i < 0 {
		return false
	}
	s.users[i].email = newEmail
	return true
}

// DeactivateAccount terminates a user (active: false, terminated: true); memberships stay.
func (s *Server) DeactivateAccount(email string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	i := s.userByEmailLocked(email)
	if i < 0 {
		return false
	}
	s.users[i].terminated = true
	return true
}

// DeleteAccount deletes a user: it leaves every group and its id answers 404.
func (s *Server) DeleteAccount(email string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	i := s.userByEmailLocked(email)
	if i < 0 {
		return false
	}
	id := s.users[i].id
	s.users = slices.Delete(s.users, i, i+1)
	for _, g := range s.groups {
		g.members = slices.DeleteFunc(g.members, func(m membership) bool { return m.user == id })
	}
	return true
}

// SetGroupArchived archives or un-archives a group, as an admin would in the web UI.
func (s *Server) SetGroupArchived(id string, archived bool) bool {
	gid, err := strconv.ParseInt(id, 10, 64)
	if err != nil {
		return false
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	g := s.groups[gid]
	if g == nil {
		return false
	}
	g.archived = archived
	return true
}
