package main

import (
	"bytes"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/groupsync/groupsync/logctx"
)

// fakeNow is a clock the test moves by hand.
type fakeNow struct{ t time.Time }

func (f *fakeNow) now() time.Time { return f.t }

func TestTermProgressRedrawsAndKeepsLogLinesAbove(t *testing.T) {
	clock := &fakeNow{t: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)}
	var out bytes.Buffer
	p := newTermProgress(&out, clock.now)

	p.Pulled(t.Context(), "devrev", "groups", 1, 50)
	first := out.String()
	if !strings.Contains(first, "devrev") || !strings.Contains(first, "1 pages  50 groups") {
		t.Fatalf("first frame = %q", first)
	}
	// Within the throttle interval nothing is drawn.
	p.Pulled(t.Context(), "devrev", "groups", 1, 50)
	p.Pushed(t.Context(), "airtable", 3)
	if out.String() != first {
		t.Fatalf("redrawn inside the throttle interval: %q", out.String())
	}
	// After it, the frame is redrawn in place: cursor up over the one line drawn before.
	clock.t = clock.t.Add(time.Second)
	p.Pulled(t.Context(), "devrev", "members", 1, 7)
	frame := strings.TrimPrefix(out.String(), first)
	if !strings.HasPrefix(frame, "\x1b[1A") || !strings.Contains(frame, "3 pages") {
		t.Fatalf("second frame = %q", frame)
	}
	if !strings.Contains(frame, "100 groups, 7 members") || !strings.Contains(frame, "airtable") || !strings.Contains(frame, "3 changes pushed") {
		t.Fatalf("second frame lacks the counts: %q", frame)
	}

	// A log line erases the frame (2 lines now), lands where it stood, and the frame follows.
	out.Reset()
	if _, err := p.Write([]byte("level=INFO msg=pulled\n")); err != nil {
		t.Fatal(err)
	}
	got := out.String()
	if !strings.HasPrefix(got, "\x1b[2A\r\x1b[J"+"level=INFO msg=pulled\n") || !strings.Contains(got, "3 changes pushed") {
		t.Fatalf("log line through the frame = %q", got)
	}

	// Finish draws the last counts even inside the throttle interval.
	p.Pushed(t.Context(), "airtable", 2)
	out.Reset()
	p.Finish()
	if !strings.Contains(out.String(), "5 changes pushed") {
		t.Fatalf("final frame = %q", out.String())
	}
}

func TestLogProgressLogsAtMostOncePerInterval(t *testing.T) {
	clock := &fakeNow{t: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)}
	var out bytes.Buffer
	p := newLogProgress(slog.New(logctx.ContextHandler(slog.NewTextHandler(&out, nil))), clock.now)
	run1 := logctx.WithLogAttrs(t.Context(), "run_id", 1, "flow", "hr")
	run2 := logctx.WithLogAttrs(t.Context(), "run_id", 2, "flow", "it")
	p.Pulled(run1, "devrev", "groups", 1, 50)
	if out.Len() != 0 {
		t.Fatalf("logged before the interval: %s", out.String())
	}
	clock.t = clock.t.Add(11 * time.Second)
	p.Pulled(run1, "devrev", "members", 2, 9)
	p.Pushed(run1, "airtable", 4)
	lines := strings.Split(strings.TrimSpace(out.String()), "\n")
	if len(lines) != 1 || !strings.Contains(lines[0], "msg=progress system=devrev pages=3 groups=50 members=9 accounts=0 pushed=0 run_id=1 flow=hr") {
		t.Fatalf("progress lines = %q", lines)
	}
	// Another run has its own counts and interval, and its lines name it.
	out.Reset()
	p.Pulled(run2, "devrev", "groups", 1, 7)
	lines = strings.Split(strings.TrimSpace(out.String()), "\n")
	if len(lines) != 1 || !strings.Contains(lines[0], "msg=progress system=devrev pages=1 groups=7 members=0 accounts=0 pushed=0 run_id=2 flow=it") {
		t.Fatalf("second run's progress lines = %q", lines)
	}
}
