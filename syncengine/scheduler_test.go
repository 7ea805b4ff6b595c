package syncengine_test

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/groupsync/groupsync/config"
	"github.com/groupsync/groupsync/state"
	"github.com/groupsync/groupsync/syncengine"
)

// fakeClock is a clock the test advances; After registers a timer that fires on Advance.
type fakeClock struct {
	mu      sync.Mutex
	now     time.Time
	timers  []fakeTimer
	created []time.Duration
}

type fakeTimer struct {
	at time.Time
	ch chan time.Time
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) After(d time.Duration) <-chan time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	ch := make(chan time.Time, 1)
	c.created = append(c.created, d)
	if d <= 0 {
		ch <- c.now
		return ch
	}
	c.timers = append(c.timers, fakeTimer{at: c.now.Add(d), ch: ch})
	return ch
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
	kept := c.timers[:0]
	for _, t := range c.timers {
		if !t.at.After(c.now) {
			t.ch <- c.now
			continue
		}
		kept = append(kept, t)
	}
	c.timers = kept
}

// timerCount returns how many timers of duration d were created so far.
func (c *fakeClock) timerCount(d time.Duration) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	n := 0
	for _, x := range c.created {
		if x == d {
			n++
		}
	}
	return n
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestSchedulerSkipsLateTicksAndNeverOverlaps(t *testing.T) {
	t.Parallel()
	e, _, _ := pairEnv(t, defaultFlow("airtable", "devrev"), 10, 2, 3)
	clock := &fakeClock{now: time.Date(2026, 3, 1, 9, 0, 0, 0, time.UTC)}
	eng, err := syncengine.New(syncengine.Options{Store: e.store, Config: e.cfg, Connectors: e.conns, Clock: clock, Holder: "sched"})
	if err != nil {
		t.Fatal(err)
	}
	every, err := config.ParseSchedule("@every 1m")
	if err != nil {
		t.Fatal(err)
	}
	sched := eng.NewScheduler(map[string]syncengine.Schedule{"f": every})
	var mu sync.Mutex
	var results []*syncengine.Result
	sched.OnResult = func(_ string, res *syncengine.Result, err error) {
		if err != nil {
			t.Errorf("scheduled run: %v", err)
		}
		mu.Lock()
		results = append(results, res)
		first := len(results) == 1
		mu.Unlock()
		if first {
			// The first run outlasted five intervals.
			clock.Advance(5 * time.Minute)
		}
	}
	count := func() int { mu.Lock(); defer mu.Unlock(); return len(results) }
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- sched.Run(ctx) }()
	waitFor(t, "the scheduler to wait for its first tick", func() bool { return clock.timerCount(time.Minute) == 1 })
	if !sched.Running() {
		t.Fatal("scheduler does not report running")
	}
	clock.Advance(time.Minute)
	waitFor(t, "the first run", func() bool { return count() == 1 })
	// After the long run the scheduler waits a whole interval again: no burst of catch-up runs.
	waitFor(t, "the scheduler to wait for the next tick", func() bool { return clock.timerCount(time.Minute) == 2 })
	if count() != 1 {
		t.Fatalf("late ticks were run: %d runs", count())
	}
	clock.Advance(time.Minute)
	waitFor(t, "the second run", func() bool { return count() == 2 })
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if sched.Running() {
		t.Fatal("scheduler still reports running after stop")
	}
	for _, r := range results {
		if r.Status != state.RunSucceeded {
			t.Fatalf("run %d: %s (%v)", r.RunID, r.Status, r.Err)
		}
	}
}
