package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/groupsync/groupsync/logctx"
)

// systemProgress is what `sync --once` shows for one system.
type systemProgress struct {
	pages   int
	records map[string]int // by kind: groups, members, accounts
	pushed  int
}

func (p *systemProgress) line(name string) string {
	var kinds []string
	for _, k := range []string{"groups", "members", "accounts"} {
		if n, ok := p.records[k]; ok {
			kinds = append(kinds, fmt.Sprintf("%d %s", n, k))
		}
	}
	records := "-"
	if len(kinds) > 0 {
		records = strings.Join(kinds, ", ")
	}
	return fmt.Sprintf("%-20s %5d pages  %s  %d changes pushed", name, p.pages, records, p.pushed)
}

// progressCounts is the shared bookkeeping of both displays (syncengine.Progress).
type progressCounts struct {
	mu      sync.Mutex
	systems map[string]*systemProgress
}

func (c *progressCounts) system(name string) *systemProgress {
	if c.systems == nil {
		c.systems = map[string]*systemProgress{}
	}
	s := c.systems[name]
	if s == nil {
		s = &systemProgress{records: map[string]int{}}
		c.systems[name] = s
	}
	return s
}

// lines renders one line per system, sorted by name; the caller holds mu.
func (c *progressCounts) lines() []string {
	out := make([]string, 0, len(c.systems))
	for _, name := range slices.Sorted(maps.Keys(c.systems)) {
		out = append(out, c.systems[name].line(name))
	}
	return out
}

// termProgress redraws a few lines on a terminal as a run advances: per system the pages
// read, the records listed and the changes pushed. Redraws are throttled so a fast pull
// does not spend its time painting.
type termProgress struct {
	progressCounts
	w        io.Writer
	now      func() time.Time
	every    time.Duration
	drawn    int // lines drawn last time, to move the cursor back over them
	lastDraw time.Time
}

func newTermProgress(w io.Writer, now func() time.Time) *termProgress {
	return &termProgress{w: w, now: now, every: 100 * time.Millisecond}
}

func (p *termProgress) Pulled(_ context.Context, system, kind string, pages, items int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	s := p.system(system)
	s.pages += pages
	s.records[kind] += items
	p.maybeDraw()
}

func (p *termProgress) Pushed(_ context.Context, system string, n int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.system(system).pushed += n
	p.maybeDraw()
}

func (p *termProgress) maybeDraw() {
	if now := p.now(); now.Sub(p.lastDraw) >= p.every {
		p.lastDraw = now
		p.draw()
	}
}

// draw moves the cursor up over the previous frame and rewrites it line by line (ANSI
// cursor-up and erase-line: every terminal groupsync meets understands them).
func (p *termProgress) draw() {
	var b strings.Builder
	if p.drawn > 0 {
		fmt.Fprintf(&b, "\x1b[%dA", p.drawn)
	}
	lines := p.lines()
	for _, l := range lines {
		b.WriteString("\r\x1b[2K")
		b.WriteString(l)
		b.WriteByte('\n')
	}
	p.drawn = len(lines)
	_, _ = io.WriteString(p.w, b.String())
}

// Write lets the process logger share the terminal with the frame: the frame is erased,
// the log line written where it stood, and the frame drawn again below it. Without this a
// redraw would move the cursor up over log lines and overwrite them.
func (p *termProgress) Write(b []byte) (int, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.drawn > 0 {
		// Cursor up over the frame, erase from there to the end of the screen.
		if _, err := fmt.Fprintf(p.w, "\x1b[%dA\r\x1b[J", p.drawn); err != nil {
			return 0, err
		}
		p.drawn = 0
	}
	n, err := p.w.Write(b)
	if err == nil && len(p.systems) > 0 {
		p.draw()
	}
	return n, err
}

// Finish draws the final counts, so the last frame is never a stale throttled one.
func (p *termProgress) Finish() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if len(p.systems) > 0 {
		p.draw()
	}
}

// logProgress is the display when stderr is not a terminal: a plain log line with the
// counts of each system of a run at most once per interval, so a long pull in a CI log or a
// container shows it is moving without a line per page. Lines are logged with the run's
// context, so they carry its run_id and flow, and counts are kept per run.
type logProgress struct {
	mu     sync.Mutex
	logger *slog.Logger
	now    func() time.Time
	every  time.Duration
	start  time.Time
	// runs are keyed by the run's log attributes (run_id, flow).
	runs map[string]*loggedRun
}

// loggedRun is one run's progress: its systems' counts and when they were last logged.
type loggedRun struct {
	progressCounts
	lastLog time.Time
}

// logProgressEvery is how often logProgress logs; a variable so a test can see every line.
var logProgressEvery = 10 * time.Second

func newLogProgress(logger *slog.Logger, now func() time.Time) *logProgress {
	return &logProgress{logger: logger, now: now, every: logProgressEvery, start: now(), runs: map[string]*loggedRun{}}
}

// run returns the bookkeeping of ctx's run; the caller holds mu.
func (p *logProgress) run(ctx context.Context) *loggedRun {
	key := fmt.Sprint(logctx.Attrs(ctx))
	r := p.runs[key]
	if r == nil {
		// The first line of a run comes an interval after the command started, not at once.
		r = &loggedRun{lastLog: p.start}
		p.runs[key] = r
	}
	return r
}

func (p *logProgress) Pulled(ctx context.Context, system, kind string, pages, items int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	r := p.run(ctx)
	s := r.system(system)
	s.pages += pages
	s.records[kind] += items
	p.maybeLog(ctx, r)
}

func (p *logProgress) Pushed(ctx context.Context, system string, n int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	r := p.run(ctx)
	r.system(system).pushed += n
	p.maybeLog(ctx, r)
}

func (p *logProgress) maybeLog(ctx context.Context, r *loggedRun) {
	now := p.now()
	if now.Sub(r.lastLog) < p.every {
		return
	}
	r.lastLog = now
	for _, name := range slices.Sorted(maps.Keys(r.systems)) {
		s := r.systems[name]
		p.logger.InfoContext(ctx, "progress", "system", name, "pages", s.pages, "groups", s.records["groups"],
			"members", s.records["members"], "accounts", s.records["accounts"], "pushed", s.pushed)
	}
}

// Finish implements the same end-of-run hook as termProgress; the engine's own log lines
// already close each pull and push, so nothing more is said.
func (p *logProgress) Finish() {}
