// Package model is groupsync's model-based test: a seeded generator of churn applied to the
// simulators between runs, and of per-request faults, with every target checked against a
// small reference model after the runs settle.
//
// The world: two flows into one target system. Flow alpha pushes Airtable "at" to
// SelfCommunity "scm" and DevRev "dvt"; flow beta pushes a second Airtable "at2" to "scm".
// Each seed draws both flows' policies (delete_groups never/archive/delete, membership
// mirror/add_only). Churn: members added and removed; groups created, renamed (fresh
// names, look-alike names, swaps A↔B), deleted, recreated under the same name, a beta group
// named like an alpha group (a name conflict); target groups archived and restored behind
// the engine's back; emails changed in case and Unicode form, accounts deactivated and
// deleted on the sources and on the targets.
package model

import (
	"flag"
	"fmt"
	"math/rand/v2"
	"testing"
	"time"
)

var (
	seedFlag = flag.Uint64("seed", 0, "run only this seed")
	soak     = flag.Duration("soak", 0, "run random seeds until this much time has passed")
	steps    = flag.Int("steps", 4, "churn steps per seed")
	// strictArchived expects a new group beside a target group archived behind the
	// engine's back even where the target keeps the archived group's name: SelfCommunity
	// refuses that create until a person reactivates the group (README, links and name
	// conflicts; TestArchivedByHandOnATargetThatCannotRestore), so this fails there by design.
	strictArchived = flag.Bool("strict-archived", false, "expect a new group beside an archived one even where the target refuses its name")
	without        = flag.String("without", "", "churn ops to leave out, comma-separated (e.g. targetDelete,targetMove)")
)

// fixedSeeds run in make test (about 8 s each under -race on the 2-core CI machine). They
// were picked to cover the model's cases: 11 a cross-flow name conflict, an archived
// target group and a recreate that converges in two rounds; 13 delete_groups: delete on
// both flows with a recreate, a swap and an archive; 14 an email stored decomposed (NFD)
// in DevRev (skipped no_account before the look-ups sent both forms) and cross-flow
// conflicts; 18 swaps and account churn on both sides. Seeds 1-50 all pass; heavier
// variety runs behind -soak.
var fixedSeeds = []uint64{11, 13, 14, 18}

func TestModel(t *testing.T) {
	switch {
	case *seedFlag != 0:
		runSeed(t, *seedFlag)
	case *soak > 0:
		n, failed := 0, 0
		for end := time.Now().Add(*soak); time.Now().Before(end); n++ {
			if !runSeed(t, rand.Uint64()) {
				failed++
			}
		}
		t.Logf("soak: %d seeds, %d failed", n, failed)
	default:
		for _, s := range fixedSeeds {
			runSeed(t, s)
		}
	}
}

// runSeed runs one seed as a subtest and reports whether it passed.
func runSeed(t *testing.T, seed uint64) bool {
	return t.Run(fmt.Sprintf("seed=%d", seed), func(t *testing.T) {
		w := newWorld(t, seed)
		w.logf("policies: %s", w.policies())
		w.settle(-1)
		for step := 0; step < *steps && !t.Failed(); step++ {
			w.churn(step)
			if w.rng.IntN(2) == 0 {
				w.faultyRun(step)
			}
			w.settle(step)
		}
	})
}
