package state_test

import (
	"slices"
	"sync"
	"testing"
)

// TestRunRequestsAreClaimedOnce: replicas polling at once never claim one request twice;
// one claim takes every pending request of the flow (one run serves them); a released
// claim is claimed again; a served request is not.
func TestRunRequestsAreClaimedOnce(t *testing.T) {
	f := newFactory(t)
	var ids []int64
	for _, flow := range []string{"a", "a", "b"} {
		id, err := f.s.RequestRun(f.ctx, flow, "alice")
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, id)
	}
	var mu sync.Mutex
	claimed := map[string][]int64{}
	var wg sync.WaitGroup
	for r := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			flow, got, ok, err := f.s.ClaimRunRequest(f.ctx, []string{"a", "b"}, "replica-"+string(rune('0'+r)))
			if err != nil {
				t.Error(err)
				return
			}
			if ok {
				mu.Lock()
				claimed[flow] = append(claimed[flow], got...)
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	slices.Sort(claimed["a"])
	if !slices.Equal(claimed["a"], ids[:2]) || !slices.Equal(claimed["b"], ids[2:]) {
		t.Fatalf("claims = %v, want a: %v and b: %v, each once", claimed, ids[:2], ids[2:])
	}
	if err := f.s.ReleaseRunRequests(f.ctx, claimed["b"]); err != nil {
		t.Fatal(err)
	}
	run := f.run("a", "manual", "succeeded")
	if err := f.s.ServeRunRequests(f.ctx, claimed["a"], run); err != nil {
		t.Fatal(err)
	}
	flow, again, ok, err := f.s.ClaimRunRequest(f.ctx, []string{"a", "b"}, "replica-9")
	if err != nil || !ok || flow != "b" || !slices.Equal(again, ids[2:]) {
		t.Fatalf("after release: claimed %q %v %v (%v), want b's request again", flow, again, ok, err)
	}
	r, err := f.s.GetRunRequest(f.ctx, ids[0])
	if err != nil || r.RunID != run || r.RequestedBy != "alice" || r.ClaimedBy == "" {
		t.Fatalf("served request = %+v (%v)", r, err)
	}
}
