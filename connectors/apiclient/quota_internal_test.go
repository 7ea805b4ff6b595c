package apiclient

import (
	"testing"
	"time"
)

// TestPacerIgnoresLateAnswersOfAnOldWindow: an answer still in flight when the window
// turned reports the old window spent; it must not hold the new window's requests back
// until the new reset.
func TestPacerIgnoresLateAnswersOfAnOldWindow(t *testing.T) {
	now := time.Unix(1_700_000_000, 0)
	p := &pacer{maxWait: 10 * time.Minute}
	p.reserve(now)
	p.reserve(now)
	p.done(Window{Limit: 100, Remaining: 99, Reset: now.Add(5 * time.Minute)}, true, now)
	p.done(Window{Limit: 100, Remaining: 0, Reset: now.Add(-time.Minute)}, true, now)
	if d := p.reserve(now); d != 0 {
		t.Fatalf("waits %s with 99 of 100 left: a late answer of the old window was read as this one", d)
	}
}

// TestPacerSpreadsTheSecondHalf: with half the budget or less left, requests are spread
// over the time to the reset; when spent, they wait for the reset and the guard.
func TestPacerSpreadsTheSecondHalf(t *testing.T) {
	now := time.Unix(1_700_000_000, 0)
	p := &pacer{maxWait: 10 * time.Minute}
	p.reserve(now)
	p.done(Window{Limit: 100, Remaining: 80, Reset: now.Add(100 * time.Second)}, true, now)
	if d := p.reserve(now); d != 0 {
		t.Fatalf("waits %s with 80 of 100 left", d)
	}
	p.done(Window{Limit: 100, Remaining: 10, Reset: now.Add(100 * time.Second)}, true, now)
	p.reserve(now) // the first of the spread goes now, the next 10 s later
	p.done(Window{}, false, now)
	if d := p.reserve(now); d < 9*time.Second || d > 11*time.Second {
		t.Fatalf("second spread request waits %s, want about 100 s / 10", d)
	}
	p.done(Window{Limit: 100, Remaining: 0, Reset: now.Add(100 * time.Second)}, true, now)
	if d := p.reserve(now); d != 100*time.Second+resetGuard {
		t.Fatalf("spent window: waits %s, want the reset and the guard", d)
	}
}
