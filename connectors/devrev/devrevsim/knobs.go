package devrevsim

import "github.com/groupsync/groupsync/connectors/simkit"

var _ simkit.AccountKnobs = (*Server)(nil)

// SetAccountEmail changes a dev user's email.
func (s *Server) SetAccountEmail(email, newEmail string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	i, ok := s.userByEmail[normalizeEmail(email)]
	if !ok {
		return false
	}
	delete(s.userByEmail, normalizeEmail(email))
	s.users[i].email = newEmail
	s.userByEmail[normalizeEmail(newEmail)] = i
	return true
}

// DeleteAccount puts a dev user in DevRev's `deleted` state and takes it out of every group.
// DevRev keeps deleted users addressable by id (dev-users.get answers with the state), so
// the user stays in the id space; an email filter no longer finds it.
func (s *Server) DeleteAccount(email string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	i, ok := s.userByEmail[normalizeEmail(email)]
	if !ok {
		return false
	}
	delete(s.userByEmail, normalizeEmail(email))
	s.users[i].state = "deleted"
	for _, g := range s.groups {
		kept := g.members[:0]
		for _, m := range g.members {
			if m.kind != kindDev || m.idx != i {
				kept = append(kept, m)
			}
		}
		g.members = kept
	}
	return true
}

// DeactivateAccount puts a dev user in DevRev's `deactivated` state; memberships stay.
func (s *Server) DeactivateAccount(email string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	i, ok := s.userByEmail[normalizeEmail(email)]
	if !ok {
		return false
	}
	s.users[i].state = "deactivated"
	return true
}
