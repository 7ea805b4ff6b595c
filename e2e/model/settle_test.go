package model

import (
	"fmt"
	"slices"

	"github.com/jackc/pgx/v5"

	"github.com/groupsync/groupsync/connectors/simkit"
	"github.com/groupsync/groupsync/syncengine"
)

// maxSettleRuns bounds the fault-free rounds a step may need before it writes nothing.
const maxSettleRuns = 4

// settle runs every flow fault-free until a round writes nothing, stepping the model with
// each round, then checks the targets against the model. A round after the first may write
// only where the model says the previous round made room for it (a deleted target group's
// name for a recreated group), or for a target account the engine need not have re-read
// yet (lateFollow); any other write is a flow that does not converge in one run.
func (w *world) settle(step int) {
	for round := 0; ; round++ {
		before, lastRun := w.writes.Load(), w.lastRunID()
		modelWrote := w.runRound()
		n := w.writes.Load() - before
		switch {
		case round == 0:
		case modelWrote:
			w.logf("step %d: round %d still writes by the rules (a name freed by a deletion)", step, round+1)
		case n == 0:
			w.check(step)
			return
		default:
			applied := w.appliedSince(lastRun)
			if !w.lateFollow(applied) {
				w.errorf(step, "fault-free round %d wrote %d requests; the model had nothing left to write after round %d; the round applied: %v",
					round+1, n, round, applied)
			} else {
				w.logf("step %d: round %d follows target accounts re-read late: %v", step, round+1, applied)
			}
		}
		if round+1 >= maxSettleRuns {
			w.errorf(step, "still writing after %d fault-free rounds", maxSettleRuns)
			w.check(step)
			return
		}
	}
}

// lastRunID is the newest run's id, 0 before the first.
func (w *world) lastRunID() int64 {
	var id int64
	if err := w.store.Pool().QueryRow(w.t.Context(), `SELECT coalesce(max(id), 0) FROM runs`).Scan(&id); err != nil {
		w.t.Fatalf("seed %d: last run: %v", w.seed, err)
	}
	return id
}

// appliedChange is a change a round applied, for telling late writes apart.
type appliedChange struct {
	run                        int64
	flow, target, op, group    string
	email, targetGroup, detail string
}

func (c appliedChange) String() string {
	return fmt.Sprintf("run %d %s %s %s group %s/%s %s", c.run, c.flow, c.target, c.op, c.group, c.targetGroup, c.detail)
}

// appliedSince lists the changes applied by the runs after run id.
func (w *world) appliedSince(id int64) []appliedChange {
	rows, err := w.store.Pool().Query(w.t.Context(), `
		SELECT run_id, flow, target_system, operation, coalesce(source_group_id, ''), coalesce(account_email, ''),
		       coalesce(target_group_id, '-'), coalesce(account_email, payload::text, '')
		  FROM changes WHERE run_id > $1 AND status = 'applied' ORDER BY id`, id)
	if err != nil {
		w.t.Fatalf("seed %d: applied changes: %v", w.seed, err)
	}
	out, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (c appliedChange, err error) {
		err = r.Scan(&c.run, &c.flow, &c.target, &c.op, &c.group, &c.email, &c.targetGroup, &c.detail)
		return c, err
	})
	if err != nil {
		w.t.Fatalf("seed %d: applied changes: %v", w.seed, err)
	}
	return out
}

// lateFollow reports whether every change is a membership change for a person whose target
// account was moved or deleted and is not re-read every run: the engine follows such a change
// once it re-reads the account (older than max_age, contradicted, or after its own write
// ended a membership), which may be a round later. Anything else is not converging.
func (w *world) lateFollow(changes []appliedChange) bool {
	if w.m.rereadEveryRun || len(changes) == 0 {
		return false
	}
	for _, c := range changes {
		if c.op != "add_member" && c.op != "remove_member" {
			return false
		}
		k := w.m.person(c.target, c.email)
		if k == "" {
			return false
		}
		if st := w.m.accounts[c.target][k].state; st != acctMoved && st != acctDeleted {
			return false
		}
	}
	return true
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
