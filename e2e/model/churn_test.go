package model

import (
	"fmt"
	"slices"
	"strings"

	"golang.org/x/text/unicode/norm"

	"github.com/groupsync/groupsync/connectors"
	"github.com/groupsync/groupsync/connectors/simkit"
)

// An op is one kind of churn. It returns a description for the log, or "" when it found
// nothing to act on (the generator then draws again).
type op struct {
	name   string
	weight int
	do     func(w *world, f *flowModel) string
}

var ops = []op{
	{"toggleMember", 30, (*world).toggleMember},
	{"renameFresh", 8, (*world).renameFresh},
	{"renameLookAlike", 5, (*world).renameLookAlike},
	{"swapNames", 6, (*world).swapNames},
	{"deleteGroup", 8, (*world).deleteGroup},
	{"recreateGroup", 7, (*world).recreateGroup},
	{"createGroup", 4, (*world).createGroup},
	{"collideAcrossFlows", 4, (*world).collideAcrossFlows},
	{"archiveTargetGroup", 5, (*world).archiveTargetGroup},
	{"sourceEmailForm", 5, (*world).sourceEmailForm},
	{"sourceDeactivate", 3, (*world).sourceDeactivate},
	{"sourceDelete", 3, (*world).sourceDelete},
	{"targetEmailForm", 5, (*world).targetEmailForm},
	{"targetDeactivate", 3, (*world).targetDeactivate},
	{"targetDelete", 3, (*world).targetDelete},
	{"targetMove", 3, (*world).targetMove},
}

// churn applies a few random changes through the sources' APIs and the simulators' knobs.
// A group is changed at most once per step, so no run sees half of a compound change.
func (w *world) churn(step int) {
	w.touched = map[*sgroup]bool{}
	enabled := slices.DeleteFunc(slices.Clone(ops), func(o op) bool { return slices.Contains(strings.Split(*without, ","), o.name) })
	total := 0
	for _, o := range enabled {
		total += o.weight
	}
	for n, tries := 1+w.rng.IntN(5), 0; n > 0 && tries < 50; tries++ {
		f := w.m.flows[w.rng.IntN(len(w.m.flows))]
		r := w.rng.IntN(total)
		for _, o := range enabled {
			if r -= o.weight; r < 0 {
				if d := o.do(w, f); d != "" {
					w.logf("step %d: %s: %s", step, f.name, d)
					n--
				}
				break
			}
		}
	}
}

func (w *world) writer(f *flowModel) connectors.Writer { return w.conns[f.source].(connectors.Writer) }

// pickGroup draws a live source group of f not changed yet in this step.
func (w *world) pickGroup(f *flowModel, ok func(*sgroup) bool) *sgroup {
	var c []*sgroup
	for _, g := range f.sortedGroups() {
		if g.live && !w.touched[g] && (ok == nil || ok(g)) {
			c = append(c, g)
		}
	}
	if len(c) == 0 {
		return nil
	}
	g := c[w.rng.IntN(len(c))]
	w.touched[g] = true
	return g
}

func (w *world) pickPerson() string { return w.m.keys[w.rng.IntN(len(w.m.keys))] }

func (w *world) must(err error, what string) {
	if err != nil {
		w.t.Fatalf("seed %d: churn: %s: %v", w.seed, what, err)
	}
}

func (w *world) toggleMember(f *flowModel) string {
	g, k := w.pickGroup(f, nil), w.pickPerson()
	if g == nil || w.m.accounts[f.source][k].state != acctLive {
		return ""
	}
	ctx, id := w.t.Context(), f.accountIDs[k]
	if g.members[k] {
		w.must(w.writer(f).RemoveMembers(ctx, g.id, []string{id}), "remove member")
		delete(g.members, k)
		return fmt.Sprintf("%s leaves %q", k, g.name)
	}
	w.must(w.writer(f).AddMembers(ctx, g.id, []string{id}), "add member")
	g.members[k] = true
	return fmt.Sprintf("%s joins %q", k, g.name)
}

func (w *world) rename(f *flowModel, g *sgroup, name string) {
	_, err := w.writer(f).UpdateGroup(w.t.Context(), g.id, connectors.GroupSpec{Name: name})
	w.must(err, "rename")
	g.name = name
}

func (w *world) renameFresh(f *flowModel) string {
	g := w.pickGroup(f, nil)
	if g == nil {
		return ""
	}
	old := g.name
	w.rename(f, g, w.m.freshName(w.rng, f))
	return fmt.Sprintf("rename %q to %q", old, g.name)
}

// lookAlike is another spelling of name with the same normalized key: a no-break space,
// another case, or another Unicode form.
func (w *world) lookAlike(name string) string {
	for range 4 {
		var n string
		switch w.rng.IntN(3) {
		case 0:
			n = strings.Replace(name, " ", "\u00a0", 1)
			if n == name {
				n = strings.Replace(name, "\u00a0", " ", 1)
			}
		case 1:
			n = strings.ToUpper(name)
			if n == name {
				n = strings.ToLower(name)
			}
		case 2:
			n = norm.NFD.String(name)
			if n == name {
				n = norm.NFC.String(name)
			}
		}
		if n != name {
			return n
		}
	}
	return strings.ToLower(name)
}

func (w *world) renameLookAlike(f *flowModel) string {
	g := w.pickGroup(f, nil)
	if g == nil {
		return ""
	}
	old := g.name
	w.rename(f, g, w.lookAlike(g.name))
	return fmt.Sprintf("rename %q to look-alike %+q", old, g.name)
}

// settled reports whether g has a target group with its name in every target of its flow.
func (w *world) settled(g *sgroup) bool {
	for _, t := range g.flow.targets {
		tg := w.m.targets[t].owned(g)
		if tg == nil || tg.name != g.name || tg.archived {
			return false
		}
	}
	return true
}

// swapNames exchanges the names of two settled groups (A↔B), through a temporary name at
// the source (which may refuse two groups of one name).
func (w *world) swapNames(f *flowModel) string {
	a := w.pickGroup(f, w.settled)
	b := w.pickGroup(f, w.settled)
	if a == nil || b == nil {
		return ""
	}
	na, nb := a.name, b.name
	w.rename(f, a, na+" (swap)")
	w.rename(f, b, na)
	w.rename(f, a, nb)
	return fmt.Sprintf("swap %q and %q", na, nb)
}

func (w *world) deleteGroup(f *flowModel) string {
	live := 0
	for _, g := range f.groups {
		if g.live {
			live++
		}
	}
	if live < 2 {
		return ""
	}
	g := w.pickGroup(f, nil)
	if g == nil {
		return ""
	}
	w.must(w.writer(f).DeleteGroup(w.t.Context(), g.id, connectors.DeleteHard), "delete group")
	g.live = false
	return fmt.Sprintf("delete %q", g.name)
}

// create makes a source group with a few random members.
func (w *world) create(f *flowModel, name string) *sgroup {
	ctx := w.t.Context()
	sg, err := w.writer(f).CreateGroup(ctx, connectors.GroupSpec{Name: name})
	w.must(err, "create group")
	g := &sgroup{flow: f, id: sg.ID, name: name, members: map[string]bool{}, live: true}
	f.groups[g.id] = g
	w.touched[g] = true
	for _, k := range w.m.keys {
		if w.rng.IntN(3) == 0 && w.m.accounts[f.source][k].state == acctLive {
			w.must(w.writer(f).AddMembers(ctx, g.id, []string{f.accountIDs[k]}), "add member")
			g.members[k] = true
		}
	}
	return g
}

func (w *world) createGroup(f *flowModel) string {
	g := w.create(f, w.m.freshName(w.rng, f))
	return fmt.Sprintf("create %q with %d members", g.name, len(g.members))
}

// recreateGroup creates a group under the name of a deleted one (sometimes deleting a live
// group first, so both happen before one run).
func (w *world) recreateGroup(f *flowModel) string {
	prefix := ""
	if w.rng.IntN(2) == 0 && w.deleteGroup(f) != "" {
		prefix = "delete and "
	}
	var names []string
	for _, g := range f.sortedGroups() {
		if !g.live && !slices.Contains(names, g.name) && !w.nameLive(f, g.name) {
			names = append(names, g.name)
		}
	}
	if len(names) == 0 {
		return ""
	}
	g := w.create(f, names[w.rng.IntN(len(names))])
	return fmt.Sprintf("%srecreate %q with %d members", prefix, g.name, len(g.members))
}

// nameLive reports whether a live group of f has that exact name (the source would refuse it).
func (w *world) nameLive(f *flowModel, name string) bool {
	for _, g := range f.groups {
		if g.live && key(g.name) == key(name) {
			return true
		}
	}
	return false
}

// collideAcrossFlows creates, in f's source, a group named like a live group of the other
// flow: in the target both flows share, the two would take one target group.
func (w *world) collideAcrossFlows(f *flowModel) string {
	other := w.m.flows[0]
	if other == f {
		other = w.m.flows[1]
	}
	g := w.pickGroup(other, nil)
	if g == nil || w.nameLive(f, g.name) {
		return ""
	}
	n := w.create(f, w.lookAlike(g.name))
	return fmt.Sprintf("create %+q, named like %s's %q", n.name, other.name, g.name)
}

// archiveTargetGroup archives a target group behind the engine's back (SelfCommunity's
// inactive groups), sometimes restoring it before any run sees it.
func (w *world) archiveTargetGroup(f *flowModel) string {
	t := w.m.targets["scm"]
	var c []*tgroup
	for _, tg := range t.groups {
		if tg.id != "" && tg.owner != nil && tg.owner.flow == f && tg.owner.live && !tg.archived && !w.touched[tg.owner] {
			c = append(c, tg)
		}
	}
	if len(c) == 0 {
		return ""
	}
	tg := c[w.rng.IntN(len(c))]
	w.touched[tg.owner] = true
	knobs := w.org.Systems["scm"].Sim.(simkit.ArchiveKnobs)
	if !knobs.SetGroupArchived(tg.id, true) {
		w.t.Fatalf("seed %d: churn: archive scm group %s: not found", w.seed, tg.id)
	}
	if w.rng.IntN(3) == 0 {
		knobs.SetGroupArchived(tg.id, false)
		return fmt.Sprintf("archive and restore scm group %q", tg.name)
	}
	tg.archived = true
	return fmt.Sprintf("archive scm group %q", tg.name)
}

// emailForm changes an account's email to the same address in another case or Unicode
// form: nothing should change.
func (w *world) emailForm(sys string) string {
	k := w.pickPerson()
	a := w.m.accounts[sys][k]
	if a.state == acctDeleted {
		return ""
	}
	n := strings.ToUpper(a.email)
	if w.rng.IntN(2) == 0 {
		if n = norm.NFD.String(a.email); n == a.email {
			n = norm.NFC.String(a.email)
		}
	}
	if n == a.email || !w.org.Systems[sys].Sim.(simkit.AccountKnobs).SetAccountEmail(a.email, n) {
		return ""
	}
	a.email = n
	return fmt.Sprintf("%s: email %+q becomes %+q", sys, k, n)
}

func (w *world) sourceEmailForm(f *flowModel) string { return w.emailForm(f.source) }

func (w *world) targetEmailForm(f *flowModel) string {
	return w.emailForm(f.targets[w.rng.IntN(len(f.targets))])
}

// setAccount applies an account knob in sys and records the new state.
func (w *world) setAccount(sys string, st acctState) string {
	k := w.pickPerson()
	a := w.m.accounts[sys][k]
	if a.state != acctLive {
		return ""
	}
	knobs := w.org.Systems[sys].Sim.(simkit.AccountKnobs)
	var ok bool
	switch st {
	case acctDeactivated:
		ok = knobs.DeactivateAccount(a.email)
	case acctDeleted:
		ok = knobs.DeleteAccount(a.email)
	case acctMoved:
		n := "moved." + a.email
		if ok = knobs.SetAccountEmail(a.email, n); ok {
			a.email = n
		}
	}
	if !ok {
		return ""
	}
	a.state = st
	if st == acctDeleted && (sys == "at" || sys == "at2") {
		// Deleting a source account takes it out of every group of that source.
		for _, g := range w.m.flowBySource(sys).groups {
			delete(g.members, k)
		}
	}
	return fmt.Sprintf("%s: account %s %s", sys, k, [...]string{"live", "deactivated", "deleted", "moved"}[st])
}

func (m *model) flowBySource(sys string) *flowModel {
	for _, f := range m.flows {
		if f.source == sys {
			return f
		}
	}
	panic("no flow from " + sys)
}

func (w *world) sourceDeactivate(f *flowModel) string { return w.setAccount(f.source, acctDeactivated) }
func (w *world) sourceDelete(f *flowModel) string     { return w.setAccount(f.source, acctDeleted) }

func (w *world) randomTarget(f *flowModel) string { return f.targets[w.rng.IntN(len(f.targets))] }

func (w *world) targetDeactivate(f *flowModel) string {
	return w.setAccount(w.randomTarget(f), acctDeactivated)
}
func (w *world) targetDelete(f *flowModel) string {
	return w.setAccount(w.randomTarget(f), acctDeleted)
}
func (w *world) targetMove(f *flowModel) string { return w.setAccount(w.randomTarget(f), acctMoved) }
