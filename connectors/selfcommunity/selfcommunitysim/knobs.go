package selfcommunitysim

import (
	"slices"
	"strconv"

	"github.com/groupsync/groupsync/connectors/simkit"
)

var (
	_ simkit.AccountKnobs = (*Server)(nil)
	_ simkit.ArchiveKnobs = (*Server)(nil)
)

// SetNameKey makes group-name uniqueness fold names with fn (nil: the default,
// case-insensitive and trimmed), as a community whose slugs or collation fold more than
// groupsync's normalizer would: a create the engine thinks is new can then be refused as a
// duplicate. Existing groups are re-indexed under the new key.
func (s *Server) SetNameKey(fn func(string) string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.nameFold = fn
	s.byName = make(map[string]int64, len(s.groups))
	for _, id := range s.groupOrder {
		s.byName[s.nameKey(s.groups[id].name)] = id
	}
}

// SetAccountEmail changes a user's email.
func (s *Server) SetAccountEmail(email, newEmail string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	id, ok := s.byEmail[normEmail(email)]
	if !ok {
		return false
	}
	delete(s.byEmail, normEmail(email))
	s.users[id].email = newEmail
	s.byEmail[normEmail(newEmail)] = id
	return true
}

// DeactivateAccount blocks a user (status "b"); subscriptions stay.
func (s *Server) DeactivateAccount(email string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	id, ok := s.byEmail[normEmail(email)]
	if !ok {
		return false
	}
	s.users[id].status = 'b'
	return true
}

// DeleteAccount deletes a user: it leaves every group, the user list no longer shows it and
// a get answers 404.
func (s *Server) DeleteAccount(email string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	id, ok := s.byEmail[normEmail(email)]
	if !ok || id == s.o.AdminUserID {
		return false
	}
	delete(s.byEmail, normEmail(email))
	delete(s.byUsername, s.users[id].username)
	if u := s.users[id]; u.extID != "" {
		delete(s.byExtID, extKey{u.provider, u.extID})
	}
	delete(s.users, id)
	if i, found := slices.BinarySearch(s.userOrder, id); found {
		s.userOrder = slices.Delete(s.userOrder, i, i+1)
	}
	for _, g := range s.groups {
		if i, found := slices.BinarySearch(g.members, id); found {
			g.members = slices.Delete(g.members, i, i+1)
		}
	}
	return true
}

// SetGroupArchived deactivates (archived) or reactivates a group: SelfCommunity shows it
// with `active: false`.
func (s *Server) SetGroupArchived(id string, archived bool) bool {
	gid, err := strconv.ParseInt(id, 10, 64)
	if err != nil {
		return false
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	g, ok := s.groups[gid]
	if !ok {
		return false
	}
	g.active = !archived
	return true
}

// SetHiddenUnreadableByID switches Options.HiddenUnreadableByID on a running simulator: a
// hidden group then answers 404 by id to everyone not in it, admins included.
func (s *Server) SetHiddenUnreadableByID(on bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.hiddenUnreadable = on
}
