// Package demo holds what `groupsync demo` needs besides the engine: a sample organisation
// spread over the four simulated systems, the demo configuration that syncs it, and the
// choice of a Postgres to hold the demo mirror (the operator's, a local one, or a private
// one started from the machine's PostgreSQL binaries).
package demo

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"

	"github.com/groupsync/groupsync/connectors"
	"github.com/groupsync/groupsync/connectors/simkit"
	"github.com/groupsync/groupsync/connectors/simorg"
)

// The demo's system names; they are the keys under systems: in the demo configuration.
const (
	SystemAirtable      = "airtable"
	SystemDevRev        = "devrev"
	SystemSelfCommunity = "selfcommunity"
	SystemSocialcast    = "socialcast"
)

// The demo's flows, in the order the demo runs them (also their sorted order). The teams
// run first so that the councils flow already sees the DevRev groups the teams created.
const (
	FlowTeams       = "airtable-teams"
	FlowCouncils    = "devrev-councils"
	FlowCommunities = "socialcast-communities"
)

// Flows lists the demo flows in run order.
var Flows = []string{FlowTeams, FlowCouncils, FlowCommunities}

// CouncilPrefix starts the names of the DevRev groups pushed to Airtable. The teams flow
// excludes it, so the two flows between Airtable and DevRev never push a group both ways.
const CouncilPrefix = "DevRev "

// Size of the sample organisation.
const (
	peopleCount = 300
	// The last contractorCount people only have DevRev accounts: council members without
	// an Airtable account (no_account on the councils flow).
	contractorCount = 10
	// staffCount is how many people are staff: everyone before the contractors.
	staffCount  = peopleCount - contractorCount
	emailDomain = "acme.example"
)

// Group is a group of the sample organisation as one system holds it before the demo runs.
type Group struct {
	Name        string
	Description string
	Private     bool
	// Members are indexes into Org.People.
	Members []int
}

// Org is the sample organisation: everyone who works there, and what each system holds
// before the first sync. It is the same on every call of SampleOrg.
type Org struct {
	People []simkit.Person
	// Accounts says, per system, who has an account there (indexes into People).
	Accounts map[string][]int
	// Groups are the groups each system holds before the demo runs.
	Groups map[string][]Group
	// Notes tell a newcomer which differences the demo reconciles.
	Notes []string
}

var (
	firstNames = []string{"Ada", "Grace", "Alan", "Edsger", "Barbara", "Ken", "Frances", "Donald", "Margaret", "Dennis",
		"Radia", "Linus", "Sophie", "Tim", "Hedy", "John", "Anita", "Guido", "Karen", "Niklaus", "Zoë", "José", "Łukasz", "Aïcha"}
	lastNames = []string{"Lovelace", "Hopper", "Turing", "Dijkstra", "Liskov", "Thompson", "Allen", "Knuth", "Hamilton",
		"Ritchie", "Perlman", "Torvalds", "Wilson", "Berners-Lee", "Lamarr", "McCarthy", "Borg", "van Rossum", "Spärck Jones", "Wirth"}
	// emailFold spells the accented letters of the names in ASCII for their email addresses.
	emailFold = strings.NewReplacer("ë", "e", "é", "e", "ł", "l", "ï", "i", "ä", "a", " ", "", "'", "")

	teams = []string{"Engineering", "Platform Engineering", "Data & Analytics", "Design", "Product Management",
		"Sales EMEA", "Sales Americas", "Customer Support", "Support — Tier 2", "Finance", "Legal", "People Ops",
		"Marketing", "Security", "Site Reliability", "Research", "Facilities", "Partnerships", "Office Zürich",
		"Office São Paulo", "Office Kraków", "Équipe Paris", "All Managers", "Onboarding 2026"}
	councils = []string{CouncilPrefix + "Product Council", CouncilPrefix + "Beta Testers",
		CouncilPrefix + "Customer Advisory Board", CouncilPrefix + "Hackathon Crew"}
	communities = []string{"Book Club", "Running Club", "Café Crème Lovers", "Photography", "Parents @ Work",
		"Board Games Night", "Volunteering", "Musique & Chorale"}
)

// SampleOrg builds the sample organisation. A fixed seed makes it deterministic.
func SampleOrg() *Org {
	rng := rand.New(rand.NewPCG(2026, 5))
	o := &Org{People: samplePeople(), Accounts: sampleAccounts()}
	// The builders draw from rng in this order: reordering them changes the organisation.
	teamGroups := sampleTeams(rng, o.Accounts[SystemAirtable])
	councilGroups := sampleCouncils(rng, o.Accounts[SystemDevRev])
	communityGroups := sampleCommunities(rng, o.Accounts[SystemSocialcast])
	eng, pc, bc := teamGroups[0], councilGroups[0], communityGroups[0]
	engInDevRev := engineeringInDevRev(eng)
	pcInAirtable := councilInAirtable(pc)
	bcInSelfCommunity := bookClubInSelfCommunity(bc)
	o.Groups = map[string][]Group{
		SystemAirtable:      append(teamGroups, pcInAirtable),
		SystemDevRev:        append(slices.Clone(councilGroups), engInDevRev),
		SystemSocialcast:    communityGroups,
		SystemSelfCommunity: {bcInSelfCommunity},
	}
	o.Notes = []string{
		fmt.Sprintf("DevRev already has %q: the %s flow adopts it as %q (no duplicate) and removes its one extra member.", engInDevRev.Name, FlowTeams, eng.Name),
		fmt.Sprintf("SelfCommunity already has %q: the %s flow adopts it as %q.", bcInSelfCommunity.Name, FlowCommunities, bc.Name),
		fmt.Sprintf("Airtable already has %q: the %s flow adopts it and mirrors DevRev's members.", pcInAirtable.Name, FlowCouncils),
		"People without an account in a target are skipped as no_account (never invented).",
		fmt.Sprintf("The %s flow leaves out %q groups: they flow DevRev → Airtable only, never both ways.", FlowTeams, CouncilPrefix+"*"),
	}
	return o
}

// samplePeople names everyone in the organisation, with an email address in emailDomain.
func samplePeople() []simkit.Person {
	var people []simkit.Person
	for i := range peopleCount {
		first, last := firstNames[i%len(firstNames)], lastNames[(i/len(firstNames))%len(lastNames)]
		local := emailFold.Replace(strings.ToLower(first + "." + last))
		people = append(people, simkit.Person{Email: local + "@" + emailDomain, First: first, Last: last})
	}
	return people
}

// isContractor reports whether person i is a contractor, with a DevRev account only.
func isContractor(i int) bool { return i >= staffCount }

// noDevRev reports whether person i is one of the few staff who never got a DevRev
// account: their memberships there are reported no_account instead of failing the run.
func noDevRev(i int) bool { return i < staffCount && i%50 == 7 }

// noSelfCommunity is noDevRev for SelfCommunity.
func noSelfCommunity(i int) bool { return i < staffCount && i%60 == 13 }

// onSocialcast reports whether person i has a Socialcast account. Socialcast is the older
// community tool: a part of the staff ever signed up.
func onSocialcast(i int) bool { return i < staffCount && (i < 100 || i%2 == 0) }

// sampleAccounts says, per system, who has an account there (indexes into People).
func sampleAccounts() map[string][]int {
	accounts := map[string][]int{}
	for i := range peopleCount {
		if !isContractor(i) {
			accounts[SystemAirtable] = append(accounts[SystemAirtable], i)
		}
		if !noDevRev(i) {
			accounts[SystemDevRev] = append(accounts[SystemDevRev], i)
		}
		if !isContractor(i) && !noSelfCommunity(i) {
			accounts[SystemSelfCommunity] = append(accounts[SystemSelfCommunity], i)
		}
		if onSocialcast(i) {
			accounts[SystemSocialcast] = append(accounts[SystemSocialcast], i)
		}
	}
	return accounts
}

// pick draws n of from at random, sorted.
func pick(rng *rand.Rand, from []int, n int) []int {
	out := make([]int, 0, n)
	for _, k := range rng.Perm(len(from))[:n] {
		out = append(out, from[k])
	}
	slices.Sort(out)
	return out
}

// sampleTeams builds Airtable's teams, source of the teams flow, from its accounts.
func sampleTeams(rng *rand.Rand, accounts []int) []Group {
	var teamGroups []Group
	for i, name := range teams {
		g := Group{Name: name, Description: fmt.Sprintf("The %s team", name),
			Members: pick(rng, accounts, 6+rng.IntN(25))}
		if name == "Onboarding 2026" {
			// Everyone without a DevRev or SelfCommunity account starts here, so the run
			// shows no_account for sure.
			for p := range staffCount {
				if noDevRev(p) || noSelfCommunity(p) {
					g.Members = append(g.Members, p)
				}
			}
			g.Members = sortedUnique(g.Members)
		}
		g.Private = i%6 == 5
		teamGroups = append(teamGroups, g)
	}
	return teamGroups
}

// sampleCouncils builds DevRev's councils, source of the councils flow, from its accounts
// (devrevPeople): each has two of the contractors.
func sampleCouncils(rng *rand.Rand, devrevPeople []int) []Group {
	contractors := devrevPeople[len(devrevPeople)-contractorCount:]
	var councilGroups []Group
	for i, name := range councils {
		members := pick(rng, devrevPeople[:len(devrevPeople)-contractorCount], 8+rng.IntN(8))
		members = sortedUnique(append(members, contractors[i*2], contractors[i*2+1]))
		councilGroups = append(councilGroups, Group{Name: name, Description: "Customer-facing council run from DevRev", Members: members})
	}
	return councilGroups
}

// sampleCommunities builds Socialcast's communities, source of the communities flow, from
// its accounts.
func sampleCommunities(rng *rand.Rand, accounts []int) []Group {
	var communityGroups []Group
	for i, name := range communities {
		communityGroups = append(communityGroups, Group{Name: name, Description: "A " + name + " community", Private: i%4 == 3,
			Members: pick(rng, accounts, 8+rng.IntN(20))})
	}
	return communityGroups
}

// engineeringInDevRev is the Engineering team (eng) under another case, created in DevRev
// by hand before groupsync: the teams flow adopts it instead of creating a second one,
// adds who is missing and removes the one member Airtable does not have.
func engineeringInDevRev(eng Group) Group {
	return Group{Name: strings.ToUpper(eng.Name), Description: "created by hand before groupsync",
		Members: append(slices.DeleteFunc(slices.Clone(eng.Members[2:]), noDevRev), outsider(eng.Members, staffCount, noDevRev))}
}

// councilInAirtable is the first council (pc) as Airtable already holds it, with one
// member DevRev dropped since.
func councilInAirtable(pc Group) Group {
	return Group{Name: pc.Name, Description: "copied by hand last year",
		Members: append(slices.DeleteFunc(slices.Clone(pc.Members[1:]), isContractor), outsider(pc.Members, staffCount, func(int) bool { return false }))}
}

// bookClubInSelfCommunity is the book club (bc), started in SelfCommunity by hand under a
// lower-case name.
func bookClubInSelfCommunity(bc Group) Group {
	return Group{Name: strings.ToLower(bc.Name), Description: "started here before the migration",
		Members: append(slices.DeleteFunc(slices.Clone(bc.Members[1:]), noSelfCommunity), outsider(bc.Members, staffCount, noSelfCommunity))}
}

// outsider returns the first staff member not in members and not excluded: someone added
// to a target by hand, whom a mirror flow removes.
func outsider(members []int, staff int, excluded func(int) bool) int {
	for p := range staff {
		if !slices.Contains(members, p) && !excluded(p) {
			return p
		}
	}
	panic("demo: every staff member is in the group")
}

func sortedUnique(s []int) []int {
	slices.Sort(s)
	return slices.Compact(s)
}

// Tenant returns what system holds before the demo, in simulator terms: its accounts (in
// DevRev, some spelled with capitals, as people typed them) and its groups.
func (o *Org) Tenant(system string) simkit.Tenant {
	var t simkit.Tenant
	pos := map[int]int32{}
	for _, p := range o.Accounts[system] {
		person := o.People[p]
		if system == SystemDevRev && p%7 == 3 {
			// Emails match across systems whatever their case.
			person.Email = capitalizeEmail(person.Email)
		}
		pos[p] = int32(len(t.People))
		t.People = append(t.People, person)
	}
	for _, g := range o.Groups[system] {
		tg := simkit.TenantGroup{Name: g.Name, Description: g.Description, Private: g.Private}
		for _, m := range g.Members {
			if i, ok := pos[m]; ok {
				tg.Members = append(tg.Members, i)
			}
		}
		if len(tg.Members) > 0 {
			tg.Managers = []int32{0}
		}
		t.Groups = append(t.Groups, tg)
	}
	return t
}

// capitalizeEmail turns ada.lovelace@x into Ada.Lovelace@x.
func capitalizeEmail(email string) string {
	local, domain, _ := strings.Cut(email, "@")
	parts := strings.Split(local, ".")
	for i, p := range parts {
		if p != "" {
			parts[i] = strings.ToUpper(p[:1]) + p[1:]
		}
	}
	return strings.Join(parts, ".") + "@" + domain
}

// Counts are the sizes of the sample organisation.
type Counts struct {
	People, Groups, Memberships int
}

// Counts sums the groups and memberships over every system.
func (o *Org) Counts() Counts {
	c := Counts{People: len(o.People)}
	for _, gs := range o.Groups {
		c.Groups += len(gs)
		for _, g := range gs {
			c.Memberships += len(g.Members)
		}
	}
	return c
}

// Kinds maps the demo's systems to their connector kinds.
var Kinds = map[string]connectors.Kind{
	SystemAirtable:      connectors.KindAirtable,
	SystemDevRev:        connectors.KindDevRev,
	SystemSelfCommunity: connectors.KindSelfCommunity,
	SystemSocialcast:    connectors.KindSocialcast,
}

// Start starts the four simulators on local ports and seeds each with its part of org.
// Close the returned Org to stop them.
func Start(org *Org) (*simorg.Org, error) {
	var specs []simorg.Spec
	for _, name := range []string{SystemAirtable, SystemDevRev, SystemSelfCommunity, SystemSocialcast} {
		specs = append(specs, simorg.Spec{Name: name, Kind: Kinds[name]})
	}
	sims, err := simorg.Start(specs...)
	if err != nil {
		return nil, fmt.Errorf("demo: start simulators: %w", err)
	}
	for name, s := range sims.Systems {
		s.Sim.Seed(org.Tenant(name))
	}
	return sims, nil
}
