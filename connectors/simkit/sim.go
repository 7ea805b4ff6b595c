package simkit

import (
	"net/http"
	"sync"
)

// GroupState is a simulator's view of one group, in terms every simulator shares, so
// end-to-end tests can compare systems: "the target now holds what the source holds".
type GroupState struct {
	ID          string
	Name        string
	Description string
	// Visibility is public, private or hidden; "" where the system does not model it.
	Visibility string
	Archived   bool
	// MemberEmails are the members' emails, lower-cased and sorted.
	MemberEmails []string
}

// Sim is what every simulator offers besides its API: seeding, fault knobs, request
// counters, a state snapshot, and counts of effective writes.
type Sim interface {
	http.Handler
	// Seed replaces the simulator's state with the tenant: every person gets an account,
	// every group is created with its members.
	Seed(t Tenant)
	// AddPerson creates an account (no group) and returns its id in this system.
	AddPerson(p Person) string
	Faults() *Faults
	Counter() *Counter
	// Snapshot lists every group (archived included), sorted by name.
	Snapshot() []GroupState
	// Effects counts the writes that changed state, to prove nothing was applied twice.
	Effects() *Effects
}

// Effects counts effective changes: an add that added a member, a remove that removed one,
// a create that created a group. Repeated no-op writes do not count.
type Effects struct {
	mu      sync.Mutex
	creates map[string]int // by group name
	adds    map[[2]string]int
	removes map[[2]string]int
}

// NewEffects returns empty counts.
func NewEffects() *Effects {
	return &Effects{creates: map[string]int{}, adds: map[[2]string]int{}, removes: map[[2]string]int{}}
}

// Created records a group creation.
func (e *Effects) Created(name string) {
	e.mu.Lock()
	e.creates[name]++
	e.mu.Unlock()
}

// Added records that account joined group.
func (e *Effects) Added(group, account string) {
	e.mu.Lock()
	e.adds[[2]string{group, account}]++
	e.mu.Unlock()
}

// Removed records that account left group.
func (e *Effects) Removed(group, account string) {
	e.mu.Lock()
	e.removes[[2]string{group, account}]++
	e.mu.Unlock()
}

// MaxCreates returns the largest number of creations of one group name (1 = no duplicate).
func (e *Effects) MaxCreates() int {
	e.mu.Lock()
	defer e.mu.Unlock()
	m := 0
	for _, n := range e.creates {
		m = max(m, n)
	}
	return m
}

// MaxAdds returns the largest number of effective adds of one (group, account) pair.
func (e *Effects) MaxAdds() int {
	e.mu.Lock()
	defer e.mu.Unlock()
	m := 0
	for _, n := range e.adds {
		m = max(m, n)
	}
	return m
}

// Totals returns the numbers of effective creates, adds and removes.
func (e *Effects) Totals() (creates, adds, removes int) {
	e.mu.Lock()
	defer e.mu.Unlock()
	for _, n := range e.creates {
		creates += n
	}
	for _, n := range e.adds {
		adds += n
	}
	for _, n := range e.removes {
		removes += n
	}
	return
}

// Reset zeroes the counts.
func (e *Effects) Reset() {
	e.mu.Lock()
	e.creates, e.adds, e.removes = map[string]int{}, map[[2]string]int{}, map[[2]string]int{}
	e.mu.Unlock()
}

// AccountKnobs change accounts behind the API's back, as an administrator or the identity
// provider would, for model-based tests. The account is found by its current email
// (compared as the simulator's own email index does); each knob returns false when no
// account has that email. What a client sees afterwards is what that API would show.
type AccountKnobs interface {
	// SetAccountEmail changes an account's email (to another address, or the same one in
	// another case or Unicode form).
	SetAccountEmail(email, newEmail string) bool
	// DeleteAccount deletes an account: it leaves every group and lists as its API shows a
	// deleted user (gone, or in a deleted state where the API has one).
	DeleteAccount(email string) bool
	// DeactivateAccount deactivates (suspends, blocks) an account; its memberships stay.
	DeactivateAccount(email string) bool
}

// ArchiveKnobs archive and restore a group behind the API's back, where the API models
// archiving (Socialcast's archived state, SelfCommunity's inactive groups).
type ArchiveKnobs interface {
	// SetGroupArchived archives (true) or restores (false) the group with that id; false
	// when there is none.
	SetGroupArchived(id string, archived bool) bool
}
