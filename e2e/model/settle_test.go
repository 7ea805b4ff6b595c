package model

import (
	"slices"

	"github.com/groupsync/groupsync/connectors/simkit"
	"github.com/groupsync/groupsync/syncengine"
)

// maxSettleRuns bounds the fault-free rounds a step may need before it writes nothing.
const maxSettleRuns = 4

// settle runs every flow fault-free until a round writes nothing, stepping the model with
// each round, then checks the targets against the model. A round after the first may write
// only where the model says the previous round made room for it (a deleted target group's
// name for a recreated group); any other write is a flow that does not converge in one run.
func (w *world) settle(step int) {
	for round := 0; ; round++ {
		before := w.writes.Load()
		modelWrote := w.runRound()
		n := w.writes.Load() - before
		if round > 0 && n > 0 && !modelWrote {
			w.errorf(step, "fault-free round %d wrote %d requests; the model had nothing left to write after round %d", round+1, n, round)
		}
		if round > 0 && modelWrote {
			w.logf("step %d: round %d still writes by the rules (a name freed by a deletion)", step, round+1)
		}
		if round > 0 && n == 0 && !modelWrote {
			break
		}
		if round+1 >= maxSettleRuns {
			w.errorf(step, "still writing after %d fault-free rounds", maxSettleRuns)
			break
		}
	}
	w.check(step)
}

// runRound runs every flow once without faults and steps the model with each; it reports
// whether the model's round writes a group.
func (w *world) runRound() bool {
	wrote := false
	for _, name := range w.order {
		w.run(name)
		if w.m.step(w.m.flow(name)) {
			wrote = true
		}
	}
	return wrote
}

func (w *world) run(name string) *syncengine.Result {
	res, err := w.eng.RunFlow(w.t.Context(), name, syncengine.RunOptions{Trigger: syncengine.TriggerOnce})
	if err != nil {
		w.t.Fatalf("seed %d: run %s: %v", w.seed, name, err)
	}
	w.m.ran(name)
	return res
}

// faultyRun arms per-request faults (target writes and listings, a source's users API, one
// exact member write), runs every flow, and checks that nobody the model keeps was removed.
func (w *world) faultyRun(step int) {
	before := w.memberSnapshot()
	tgt := targetNames[w.rng.IntN(len(targetNames))]
	// Looked up before any fault is armed: the look-up must not spend one.
	exact := ""
	if k := w.pickPerson(); w.rng.IntN(2) == 0 {
		exact = w.targetAccountID(tgt, k)
	}
	f := w.org.Systems[tgt].Sim.Faults()
	f.Inject(simkit.Rule{Method: "POST", Status: 503, Times: 1 + w.rng.IntN(3)})
	if w.rng.IntN(2) == 0 {
		f.Inject(simkit.Rule{Method: "GET", Status: 500, Times: 1})
	}
	if exact != "" {
		// One exact write: whatever request names this person's target account.
		f.Inject(simkit.Rule{Body: exact, Status: 500, Times: 2})
	}
	src := w.m.flows[w.rng.IntN(len(w.m.flows))].source
	sf := w.org.Systems[src].Sim.Faults()
	if w.rng.IntN(2) == 0 {
		sf.Inject(simkit.Rule{Method: "GET", Path: "/users", Status: 500, Times: 2})
	}
	w.logf("step %d: a round with faults on %s and %s", step, tgt, src)
	for _, name := range w.order {
		w.stepObserved(w.m.flow(name))
	}
	f.Clear()
	sf.Clear()
	w.checkKept(step, before)
}

// stepObserved runs a flow with faults armed and steps the model with it. The plan-time
// decisions (releases, adoptions, conflicts) do not depend on the faults, but which writes
// landed does, and the next runs' decisions depend on that (a group created claims its
// name): so the model takes the writes' outcome from the targets.
func (w *world) stepObserved(f *flowModel) {
	before := map[string][]*tgroup{}
	for _, tn := range f.targets {
		before[tn] = slices.Clone(w.m.targets[tn].groups)
	}
	w.run(f.name)
	w.m.step(f)
	for _, tn := range f.targets {
		w.observe(w.m.targets[tn], before[tn])
	}
}

// observe makes the model's groups of t what the target holds after a run with faults: a
// create that failed did not happen, a delete that failed left the group, a rename that
// failed left the old name.
func (w *world) observe(t *targetModel, before []*tgroup) {
	snap := w.snapshotByID(t.name)
	known := map[string]bool{}
	for _, tg := range before {
		if tg.id != "" {
			known[tg.id] = true
		}
	}
	for _, tg := range before {
		if _, there := snap[tg.id]; tg.id != "" && there && !slices.Contains(t.groups, tg) {
			t.groups = append(t.groups, tg) // the delete failed
		}
	}
	t.groups = slices.DeleteFunc(t.groups, func(tg *tgroup) bool {
		if tg.id != "" {
			tg.name = snap[tg.id].Name
			return false
		}
		for id, g := range snap {
			if !known[id] && !g.Archived && key(g.Name) == key(tg.name) {
				tg.id, known[id] = id, true
				return false
			}
		}
		return true // the create failed
	})
}
