package syncengine_test

import (
	"context"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/groupsync/groupsync/connectors"
	"github.com/groupsync/groupsync/connectors/simkit"
	"github.com/groupsync/groupsync/state"
	"github.com/groupsync/groupsync/syncengine"
)

// writeEvent is one write call a target received: when it started and returned.
type writeEvent struct {
	op         string // "create", "add", "remove"
	group      string // the group written to (for a create: the one it returned)
	start, end time.Time
}

// recordingWriter stands in front of a target's connector and notes every write.
type recordingWriter struct {
	connectors.Connector
	w      connectors.Writer
	mu     sync.Mutex
	events []writeEvent
}

func (r *recordingWriter) note(op, group string, start time.Time) {
	r.mu.Lock()
	r.events = append(r.events, writeEvent{op: op, group: group, start: start, end: time.Now()})
	r.mu.Unlock()
}

func (r *recordingWriter) CreateGroup(ctx context.Context, spec connectors.GroupSpec) (connectors.Group, error) {
	start := time.Now()
	g, err := r.w.CreateGroup(ctx, spec)
	if err == nil {
		r.note("create", g.ID, start)
	}
	return g, err
}

func (r *recordingWriter) UpdateGroup(ctx context.Context, id string, spec connectors.GroupSpec) (connectors.Group, error) {
	return r.w.UpdateGroup(ctx, id, spec)
}

func (r *recordingWriter) DeleteGroup(ctx context.Context, id string, mode connectors.DeleteMode) error {
	return r.w.DeleteGroup(ctx, id, mode)
}

func (r *recordingWriter) AddMembers(ctx context.Context, id string, accounts []string) error {
	start := time.Now()
	err := r.w.AddMembers(ctx, id, accounts)
	r.note("add", id, start)
	return err
}

func (r *recordingWriter) RemoveMembers(ctx context.Context, id string, accounts []string) error {
	start := time.Now()
	err := r.w.RemoveMembers(ctx, id, accounts)
	r.note("remove", id, start)
	return err
}

// The order rules hold without a barrier between operations: a group's members are added
// only once its create returned, every removal starts after every addition ended, and yet
// additions to the groups created first (and to a group the target already had) go out
// while later creates are still under way.
func TestPushKeepsTheOrderRulesWithoutBarriers(t *testing.T) {
	t.Parallel()
	const groups, members = 40, 10
	e, ps, tn := pairEnv(t, defaultFlow("airtable", "selfcommunity"), 60, groups, members)
	// The target already has the first group, with half its members and one it should not.
	g0 := tn.Groups[0]
	outsider := int32(0)
	for slices.Contains(g0.Members, outsider) {
		outsider++
	}
	e.sim("selfcommunity").Seed(simkit.Tenant{People: ps, Groups: []simkit.TenantGroup{
		{Name: g0.Name, Members: append(slices.Clone(g0.Members[:members/2]), outsider)}}})
	e.sim("selfcommunity").Faults().Latency(20 * time.Millisecond)
	// The order is under test, not the pace: no client limit to wait for.
	conns, err := e.org.Open(nil, nil, func(c *connectors.SystemConfig) { c.MaxAttempts, c.RateLimit, c.Burst = 2, 1e6, 1000 })
	if err != nil {
		t.Fatal(err)
	}
	e.conns = conns
	rec := &recordingWriter{Connector: e.conns["selfcommunity"], w: e.conns["selfcommunity"].(connectors.Writer)}
	e.conns["selfcommunity"] = rec
	e.eng = e.newEngine("replica-a")

	e.mustStatus(e.run("f", syncengine.RunOptions{}), state.RunSucceeded)
	e.assertMirrored("airtable", "selfcommunity")

	created := map[string]time.Time{}
	var lastCreate, firstAdd, lastAdd, firstRemove time.Time
	for _, ev := range rec.events {
		switch ev.op {
		case "create":
			created[ev.group] = ev.end
			lastCreate = latest(lastCreate, ev.end)
		case "add":
			if firstAdd.IsZero() || ev.start.Before(firstAdd) {
				firstAdd = ev.start
			}
			lastAdd = latest(lastAdd, ev.end)
		case "remove":
			if firstRemove.IsZero() || ev.start.Before(firstRemove) {
				firstRemove = ev.start
			}
		}
	}
	for _, ev := range rec.events {
		if at, ok := created[ev.group]; ok && ev.op == "add" && ev.start.Before(at) {
			t.Fatalf("members added to group %s at %s, before its create returned at %s", ev.group, ev.start, at)
		}
	}
	if len(created) != groups-1 || firstRemove.IsZero() {
		t.Fatalf("%d creates and a removal at %v, want %d and one", len(created), firstRemove, groups-1)
	}
	if firstRemove.Before(lastAdd) {
		t.Fatalf("a removal started at %s, before the last addition ended at %s", firstRemove, lastAdd)
	}
	if !firstAdd.Before(lastCreate) {
		t.Fatalf("the first addition started at %s, after the last create ended at %s: the creates were a barrier",
			firstAdd, lastCreate)
	}
}

func latest(a, b time.Time) time.Time {
	if b.After(a) {
		return b
	}
	return a
}
