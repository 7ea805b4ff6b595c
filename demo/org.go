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
	emailDomain     = "acme.example"
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
	o := &Org{Accounts: map[string][]int{}, Groups: map[string][]Group{}}
	for i := range peopleCount {
		first, last := firstNames[i%len(firstNames)], lastNames[(i/len(firstNames))%len(lastNames)]
		local := emailFold.Replace(strings.ToLower(first + "." + last))
		o.People = append(o.People, simkit.Person{Email: local + "@" + emailDomain, First: first, Last: last})
	}
	staff := peopleCount - contractorCount
	isContractor := func(i int) bool { return i >= staff }
	// A few people never got a DevRev or a SelfCommunity account: their memberships there
	// are reported no_account instead of failing the run.
	noDevRev := func(i int) bool { return i < staff && i%50 == 7 }
	noSelfCommunity := func(i int) bool { return i < staff && i%60 == 13 }
	// Socialcast is the older community tool: a part of the staff ever signed up.
	onSocialcast := func(i int) bool { return i < staff && (i < 100 || i%2 == 0) }
	for i := range peopleCount {
		if !isContractor(i) {
			o.Accounts[SystemAirtable] = append(o.Accounts[SystemAirtable], i)
		}
		if !noDevRev(i) {
			o.Accounts[SystemDevRev] = append(o.Accounts[SystemDevRev], i)
		}
		if !isContractor(i) && !noSelfCommunity(i) {
			o.Accounts[SystemSelfCommunity] = append(o.Accounts[SystemSelfCommunity], i)
		}
		if onSocialcast(i) {
			o.Accounts[SystemSocialcast] = append(o.Accounts[SystemSocialcast], i)
		}
	}
	pick := func(from []int, n int) []int {
		out := make([]int, 0, n)
		for _, k := range rng.Perm(len(from))[:n] {
			out = append(out, from[k])
		}
		slices.Sort(out)
		return out
	}

	// Airtable: the teams, source of the teams flow.
	var teamGroups []Group
	for i, name := range teams {
		g := Group{Name: name, Description: fmt.Sprintf("The %s team", name),
			Members: pick(o.Accounts[SystemAirtable], 6+rng.IntN(25))}
		if name == "Onboarding 2026" {
			// Everyone without a DevRev or SelfCommunity account starts here, so the run
			// shows no_account for sure.
			for p := range staff {
				if noDevRev(p) || noSelfCommunity(p) {
					g.Members = append(g.Members, p)
				}
			}
			g.Members = sortedUnique(g.Members)
		}
		g.Private = i%6 == 5
		teamGroups = append(teamGroups, g)
	}
	o.Groups[SystemAirtable] = teamGroups

	// DevRev: the councils (source of the councils flow, contractors included), and the
	// Engineering team under another case, created by hand before groupsync: the teams
	// flow adopts it instead of creating a second one, adds who is missing and removes
	// the one member Airtable does not have.
	devrevPeople := o.Accounts[SystemDevRev]
	contractors := devrevPeople[len(devrevPeople)-contractorCount:]
	var councilGroups []Group
	for i, name := range councils {
		members := pick(devrevPeople[:len(devrevPeople)-contractorCount], 8+rng.IntN(8))
		members = sortedUnique(append(members, contractors[i*2], contractors[i*2+1]))
		councilGroups = append(councilGroups, Group{Name: name, Description: "Customer-facing council run from DevRev", Members: members})
	}
	eng := teamGroups[0]
	engInDevRev := Group{Name: strings.ToUpper(eng.Name), Description: "created by hand before groupsync",
		Members: append(slices.DeleteFunc(slices.Clone(eng.Members[2:]), noDevRev), outsider(eng.Members, staff, noDevRev))}
	o.Groups[SystemDevRev] = append(slices.Clone(councilGroups), engInDevRev)

	// Airtable already holds the first council, with one member DevRev dropped since.
	pc := councilGroups[0]
	pcInAirtable := Group{Name: pc.Name, Description: "copied by hand last year",
		Members: append(slices.DeleteFunc(slices.Clone(pc.Members[1:]), isContractor), outsider(pc.Members, staff, func(int) bool { return false }))}
	o.Groups[SystemAirtable] = append(o.Groups[SystemAirtable], pcInAirtable)

	// Socialcast: the communities, source of the communities flow.
	var communityGroups []Group
	for i, name := range communities {
		communityGroups = append(communityGroups, Group{Name: name, Description: "A " + name + " community", Private: i%4 == 3,
			Members: pick(o.Accounts[SystemSocialcast], 8+rng.IntN(20))})
	}
	o.Groups[SystemSocialcast] = communityGroups

	// SelfCommunity: the book club, started there by hand under a lower-case name.
	bc := communityGroups[0]
	bcInSelfCommunity := Group{Name: strings.ToLower(bc.Name), Description: "started here before the migration",
		Members: append(slices.DeleteFunc(slices.Clone(bc.Members[1:]), noSelfCommunity), outsider(bc.Members, staff, noSelfCommunity))}
	o.Groups[SystemSelfCommunity] = []Group{bcInSelfCommunity}

	o.Notes = []string{
		fmt.Sprintf("DevRev already has %q: the %s flow adopts it as %q (no duplicate) and removes its one extra member.", engInDevRev.Name, FlowTeams, eng.Name),
		fmt.Sprintf("SelfCommunity already has %q: the %s flow adopts it as %q.", bcInSelfCommunity.Name, FlowCommunities, bc.Name),
		fmt.Sprintf("Airtable already has %q: the %s flow adopts it and mirrors DevRev's members.", pcInAirtable.Name, FlowCouncils),
		"People without an account in a target are skipped as no_account (never invented).",
		fmt.Sprintf("The %s flow leaves out %q groups: they flow DevRev → Airtable only, never both ways.", FlowTeams, CouncilPrefix+"*"),
	}
	return o
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
