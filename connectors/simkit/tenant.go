package simkit

import (
	"fmt"
	"math/rand/v2"
)

// Person is someone who may hold an account in any of the simulated systems; the email is
// what links their accounts across systems.
type Person struct {
	Email string
	First string
	Last  string
	// ExtID is the person's id at a single sign-on provider, for systems that record one
	// (SelfCommunity's ext_id); "" for none. Simulators that have no such field ignore it.
	ExtID string
}

// TenantGroup is a group to seed, with members given as indexes into Tenant.People.
type TenantGroup struct {
	Name        string
	Description string
	Private     bool
	Members     []int32
	// Managers are indexes into Members whose holder manages the group (role manager/admin).
	Managers []int32
}

// Tenant is an organisation to seed a simulator with. It holds indexes, not JSON, so a
// million memberships cost a few megabytes.
type Tenant struct {
	People []Person
	Groups []TenantGroup
}

// Memberships returns the number of memberships in the tenant.
func (t Tenant) Memberships() int {
	n := 0
	for _, g := range t.Groups {
		n += len(g.Members)
	}
	return n
}

// GenOptions sizes a generated tenant.
type GenOptions struct {
	Groups          int
	People          int
	MembersPerGroup int
	Seed            uint64
	// EmailDomain defaults to example.com.
	EmailDomain string
	// NamePrefix is put before every group name ("" for none).
	NamePrefix string
}

var firstNames = []string{"Ada", "Grace", "Alan", "Edsger", "Barbara", "Ken", "Frances", "Donald", "Margaret", "Dennis",
	"Radia", "Linus", "Sophie", "Tim", "Hedy", "John", "Anita", "Guido", "Karen", "Niklaus", "Zoë", "José", "Łukasz", "Aïcha"}
var lastNames = []string{"Lovelace", "Hopper", "Turing", "Dijkstra", "Liskov", "Thompson", "Allen", "Knuth", "Hamilton",
	"Ritchie", "Perlman", "Torvalds", "Wilson", "Berners-Lee", "Lamarr", "McCarthy", "Borg", "van Rossum", "Spärck Jones", "Wirth"}
var teams = []string{"Engineering", "Design", "Sales", "Support", "Finance", "Legal", "People", "Marketing", "Security",
	"Platform", "Data", "Research", "Operations", "Facilities", "Partners"}

// Generate builds a deterministic tenant: the same options give the same tenant.
func Generate(o GenOptions) Tenant {
	if o.EmailDomain == "" {
		o.EmailDomain = "example.com"
	}
	rng := rand.New(rand.NewPCG(o.Seed, o.Seed+1))
	t := Tenant{People: make([]Person, o.People), Groups: make([]TenantGroup, o.Groups)}
	for i := range t.People {
		f, l := firstNames[i%len(firstNames)], lastNames[(i/len(firstNames))%len(lastNames)]
		t.People[i] = Person{Email: fmt.Sprintf("user%06d@%s", i, o.EmailDomain), First: f, Last: l}
	}
	for i := range t.Groups {
		g := TenantGroup{
			Name:        fmt.Sprintf("%s%s %04d", o.NamePrefix, teams[i%len(teams)], i),
			Description: fmt.Sprintf("The %s team, unit %d", teams[i%len(teams)], i),
			Private:     i%5 == 4,
		}
		n := o.MembersPerGroup
		if n > o.People {
			n = o.People
		}
		if n > 0 {
			// A random window of people keeps members distinct without a set per group.
			start := rng.IntN(o.People)
			step := 1 + rng.IntN(7)
			for step > 1 && gcd(step, o.People) != 1 {
				step--
			}
			g.Members = make([]int32, n)
			for j := 0; j < n; j++ {
				g.Members[j] = int32((start + j*step) % o.People)
			}
			g.Managers = []int32{0}
		}
		t.Groups[i] = g
	}
	return t
}

func gcd(a, b int) int {
	for b != 0 {
		a, b = b, a%b
	}
	return a
}
