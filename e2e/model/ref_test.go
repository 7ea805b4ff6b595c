package model

import (
	"fmt"
	"maps"
	"math/rand/v2"
	"slices"
	"strings"

	"github.com/groupsync/groupsync/config"
	"github.com/groupsync/groupsync/connectors"
	"github.com/groupsync/groupsync/connectors/simkit"
)

// The reference model: what the sources hold, the accounts' states, and per target which
// target group stands for which source group. It steps once per fault-free run of a flow,
// following the documented rules (README "Links and name conflicts", "Removals only on
// positive knowledge"), so after the runs settle every target can be compared with it.

// acctState is an account's state in one system, as the model's churn left it.
type acctState int

const (
	acctLive acctState = iota
	acctDeactivated
	acctDeleted
	// acctMoved: the account's email was changed to another address.
	acctMoved
)

// account is one person's account in one system.
type account struct {
	state acctState
	// email is the address the system holds now (case and Unicode form as set).
	email string
}

type model struct {
	people []simkit.Person
	// keys are the people's normalized emails: the model's name for a person.
	keys    []string
	flows   []*flowModel
	targets map[string]*targetModel
	// accounts[system][person key] is that person's account in the system.
	accounts map[string]map[string]*account
	// names counts fresh names, so no two are alike.
	names int
	// rereadEveryRun: accounts.max_age is tiny, so every run re-reads the accounts it relies
	// on and follows an email changed in a target at once. Otherwise (the default 24 h) such
	// a change is followed only when the row is old or contradicted, and the model does not
	// know when within a test: a moved account's memberships are not checked.
	rereadEveryRun bool
}

type flowModel struct {
	name, source string
	targets      []string
	delete       config.DeletePolicy
	membership   config.MembershipMode
	prefix       string
	groups       map[string]*sgroup
	// seeded are the groups the source was seeded with, until their ids are known.
	seeded []*sgroup
	// accountIDs map a person key to the source account id.
	accountIDs map[string]string
}

// sgroup is a source group.
type sgroup struct {
	flow    *flowModel
	id      string
	name    string
	members map[string]bool
	live    bool
	// mirrorName and mirrorLive are the group as its flow's last run pulled it: what other
	// flows see of it in the mirror (name claims across flows).
	mirrorName string
	mirrorLive bool
}

// tgroup is a target group the engine created or adopted.
type tgroup struct {
	// id is learned the first time a check finds the group.
	id string
	// name is the name the engine last gave it.
	name string
	// owner is the source group it stands for; nil once released (delete_groups: never) or
	// unlinked (archived behind the engine's back).
	owner    *sgroup
	archived bool
}

type targetModel struct {
	name   string
	caps   connectors.Capabilities
	groups []*tgroup
	// conflicts are the source groups planned as name_conflict in this target.
	conflicts map[*sgroup]bool
	// archivedHoldsName, when set, is the target's own uniqueness key of group names, which
	// archived groups hold too: it refuses a new group named like an archived one
	// (SelfCommunity's names are unique among inactive groups, compared lower-cased and
	// trimmed, not by groupsync's normalizer).
	archivedHoldsName func(string) string
	// stuck are the source groups whose create the target refuses because an archived
	// group holds the name (see InvariantArchivedIsNotGone in the report of this test).
	stuck map[*sgroup]bool
}

func key(name string) string { return connectors.NormalizeName(name) }

// newModel draws the people, the two flows with their policies and their seeded groups.
func newModel(rng *rand.Rand) *model {
	m := &model{targets: map[string]*targetModel{}, accounts: map[string]map[string]*account{}, rereadEveryRun: rng.IntN(2) == 0}
	tn := simkit.Generate(simkit.GenOptions{People: 12, Seed: rng.Uint64()})
	for i, p := range tn.People {
		// Some addresses are not ASCII, so their Unicode form can change (NFC ↔ NFD).
		if i%3 == 0 {
			p.Email = fmt.Sprintf("zoé.%s", p.Email)
		}
		m.people = append(m.people, p)
		m.keys = append(m.keys, connectors.NormalizeEmail(p.Email))
	}
	policies := []config.DeletePolicy{config.DeleteNever, config.DeleteArchive, config.DeleteHard}
	modes := []config.MembershipMode{config.MembershipMirror, config.MembershipAddOnly}
	m.flows = []*flowModel{
		{name: "alpha", source: "at", targets: []string{"scm", "dvt"}, prefix: "Team"},
		{name: "beta", source: "at2", targets: []string{"scm"}, prefix: "Club"},
	}
	for _, f := range m.flows {
		f.delete, f.membership = policies[rng.IntN(len(policies))], modes[rng.IntN(len(modes))]
		f.groups = map[string]*sgroup{}
		for range 3 {
			g := &sgroup{flow: f, name: m.freshName(rng, f), members: map[string]bool{}, live: true}
			for _, k := range m.keys {
				if rng.IntN(3) == 0 {
					g.members[k] = true
				}
			}
			f.seeded = append(f.seeded, g)
		}
	}
	for _, sys := range []string{"at", "at2", "scm", "dvt"} {
		m.accounts[sys] = map[string]*account{}
		for i, k := range m.keys {
			m.accounts[sys][k] = &account{email: m.people[i].Email}
		}
	}
	m.targets["scm"] = &targetModel{name: "scm", caps: connectors.Capabilities{DeleteGroup: true},
		conflicts: map[*sgroup]bool{}, stuck: map[*sgroup]bool{}}
	if !*strictArchived {
		m.targets["scm"].archivedHoldsName = func(n string) string { return strings.ToLower(strings.TrimSpace(n)) }
	}
	m.targets["dvt"] = &targetModel{name: "dvt", caps: connectors.Capabilities{}, conflicts: map[*sgroup]bool{}, stuck: map[*sgroup]bool{}}
	return m
}

var words = []string{"Engineering", "Café", "Design", "Sales", "Straße", "Support", "Légal", "Data"}

// freshName is a name no other group has had.
func (m *model) freshName(rng *rand.Rand, f *flowModel) string {
	m.names++
	return fmt.Sprintf("%s %s %03d", f.prefix, words[rng.IntN(len(words))], m.names)
}

func (f *flowModel) config() config.Flow {
	return config.Flow{Source: f.source, Targets: f.targets, Schedule: "@every 1m", Scope: config.Scope{All: true},
		Matching: config.Matching{By: "email"}, Membership: f.membership, CreateGroups: true,
		DeleteGroups: f.delete, MaxChangeAttempts: 3,
		Limits: config.Limits{MaxMemberRemovals: 1000, MaxMemberRemovalsPercent: 100, MaxGroupDeletions: 100}}
}

// tenant is what the flow's source is seeded with.
func (f *flowModel) tenant(people []simkit.Person) simkit.Tenant {
	tn := simkit.Tenant{People: people}
	for _, g := range f.seeded {
		tg := simkit.TenantGroup{Name: g.name}
		for i, p := range people {
			if g.members[connectors.NormalizeEmail(p.Email)] {
				tg.Members = append(tg.Members, int32(i))
			}
		}
		tn.Groups = append(tn.Groups, tg)
	}
	return tn
}

func (m *model) flow(name string) *flowModel {
	for _, f := range m.flows {
		if f.name == name {
			return f
		}
	}
	panic("no flow " + name)
}

// sortedGroups lists a flow's groups by id, so the model steps in a stable order.
func (f *flowModel) sortedGroups() []*sgroup {
	out := slices.Collect(maps.Values(f.groups))
	slices.SortFunc(out, func(a, b *sgroup) int {
		if len(a.id) != len(b.id) {
			return len(a.id) - len(b.id)
		}
		return compare(a.id, b.id)
	})
	return out
}

func compare(a, b string) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

// ran records that a flow ran (fault-free or not): its pull put its source's groups in the
// mirror as they are now.
func (m *model) ran(flow string) {
	for _, g := range m.flow(flow).groups {
		g.mirrorName, g.mirrorLive = g.name, g.live
	}
}

// owned returns the target group that stands for g in t, or nil.
func (t *targetModel) owned(g *sgroup) *tgroup {
	for _, tg := range t.groups {
		if tg.owner == g {
			return tg
		}
	}
	return nil
}

// claims counts, per name key, the live source groups without a target group in t that
// claim the name: the flow's own (as they are now) and other flows' (as the mirror holds
// them). One claimant may adopt or create; two are a name conflict.
func (m *model) claims(f *flowModel, t *targetModel) map[string]int {
	n := map[string]int{}
	for _, of := range m.flows {
		if !slices.Contains(of.targets, t.name) {
			continue
		}
		for _, g := range of.groups {
			name, live := g.name, g.live
			if of != f {
				name, live = g.mirrorName, g.mirrorLive
			}
			if live && t.owned(g) == nil {
				n[key(name)]++
			}
		}
	}
	return n
}

// step is one fault-free run of flow f in the model. It reports whether the run writes a
// group (create, adopt, rename, delete): a second run is then needed only if such a write
// made room for another one (a deleted group's name for a recreated group).
func (m *model) step(f *flowModel) bool {
	wrote := false
	for _, tn := range f.targets {
		t := m.targets[tn]
		if m.link(f, t) {
			wrote = true
		}
		if m.plan(f, t) {
			wrote = true
		}
	}
	return wrote
}

// link is LinkFlow: release the target groups of deleted source groups (never, or a target
// that cannot archive or delete them), then adopt unclaimed, live, same-named groups by a
// single claimant.
func (m *model) link(f *flowModel, t *targetModel) bool {
	adopted := false
	keeps := (f.delete == config.DeleteArchive && !t.caps.ArchiveGroup) || (f.delete == config.DeleteHard && !t.caps.DeleteGroup)
	if f.delete == config.DeleteNever || keeps {
		for _, tg := range t.groups {
			if tg.owner != nil && tg.owner.flow == f && !tg.owner.live {
				tg.owner = nil
			}
		}
	}
	cl := m.claims(f, t)
	for _, g := range f.sortedGroups() {
		if !g.live || t.owned(g) != nil || cl[key(g.name)] != 1 {
			continue
		}
		for _, tg := range t.groups {
			if tg.owner == nil && !tg.archived && key(tg.name) == key(g.name) {
				tg.owner, adopted = g, true
				delete(t.conflicts, g)
				break
			}
		}
	}
	return adopted
}

// plan is PlanFlow and its push for one target: a target group archived behind the
// engine's back is let go (neither target can restore); an unlinked group is created, or a
// name conflict when a linked live group holds its name or another group claims it;
// renames follow the source; deleted source groups' target groups are deleted where the
// policy and the target allow. Conflicts are decided on the plan's view, in which a group the
// run deletes no longer holds its name (deletions are pushed first).
func (m *model) plan(f *flowModel, t *targetModel) bool {
	wrote := false
	for _, tg := range t.groups {
		if tg.owner != nil && tg.owner.flow == f && tg.owner.live && tg.archived {
			tg.owner = nil
		}
	}
	deleting := f.delete == config.DeleteHard && t.caps.DeleteGroup
	taken := map[string]bool{}
	for _, tg := range t.groups {
		// A group this run deletes (its source group is gone) frees its name first.
		if tg.owner != nil && !tg.archived && !(deleting && tg.owner.flow == f && !tg.owner.live) {
			taken[key(tg.name)] = true
		}
	}
	cl := m.claims(f, t)
	var created []*tgroup
	for _, g := range f.sortedGroups() {
		if !g.live || t.owned(g) != nil {
			delete(t.conflicts, g)
			delete(t.stuck, g)
			continue
		}
		if taken[key(g.name)] || cl[key(g.name)] > 1 {
			t.conflicts[g] = true
			continue
		}
		delete(t.conflicts, g)
		if t.archivedNamed(g.name) {
			t.stuck[g] = true
			continue
		}
		delete(t.stuck, g)
		created = append(created, &tgroup{name: g.name, owner: g})
		wrote = true
	}
	for _, tg := range t.groups {
		switch o := tg.owner; {
		case o == nil || o.flow != f:
		case o.live && tg.name != o.name:
			tg.name, wrote = o.name, true
		}
	}
	if f.delete == config.DeleteHard && t.caps.DeleteGroup {
		t.groups = slices.DeleteFunc(t.groups, func(tg *tgroup) bool {
			gone := tg.owner != nil && tg.owner.flow == f && !tg.owner.live
			wrote = wrote || gone
			return gone
		})
	}
	t.groups = append(t.groups, created...)
	return wrote
}

// archivedNamed reports whether an archived group of t holds that name.
func (t *targetModel) archivedNamed(name string) bool {
	if t.archivedHoldsName == nil {
		return false
	}
	for _, tg := range t.groups {
		if tg.archived && t.archivedHoldsName(tg.name) == t.archivedHoldsName(name) {
			return true
		}
	}
	return false
}

// care reports whether the model knows what a person's membership in a target group
// should be: not when the source or the target account is deactivated (the rules say
// nothing about access of a deactivated account), nor for a target account moved to
// another address or deleted, which the engine need not have re-read yet (see
// rereadEveryRun): within accounts.max_age it may still add the old account by id, and the
// simulators, like DevRev's API (whose spec lists no refusal), accept that add.
func (m *model) care(f *flowModel, t, k string) bool {
	ts := m.accounts[t][k].state
	unread := ts == acctMoved || ts == acctDeleted
	return m.accounts[f.source][k].state != acctDeactivated && ts != acctDeactivated && (!unread || m.rereadEveryRun)
}

// desired is the members g should have in target t: its source members whose target
// account is live with the same address.
func (m *model) desired(g *sgroup, t string) map[string]bool {
	out := map[string]bool{}
	for k := range g.members {
		if m.accounts[g.flow.source][k].state == acctLive && m.accounts[t][k].state == acctLive {
			out[k] = true
		}
	}
	return out
}

// person maps an email a target shows to the person key, or "" for an unknown address.
// A deleted account keeps its address here: a group may hold it (see care).
func (m *model) person(t, email string) string {
	e := connectors.NormalizeEmail(email)
	for k, a := range m.accounts[t] {
		if connectors.NormalizeEmail(a.email) == e {
			return k
		}
	}
	return ""
}
