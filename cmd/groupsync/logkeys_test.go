package main

import (
	"encoding/json"
	"fmt"
	"maps"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/groupsync/groupsync/connectors/simkit"
)

// snakeKey is the shape of every log key: lower-case words joined by underscores.
var snakeKey = regexp.MustCompile(`^[a-z][a-z0-9]*(_[a-z0-9]+)*$`)

// goStructDump finds a Go value printed with its field names (%+v of a struct or a
// pointer to one, or a map), which a log shipper cannot index.
var goStructDump = regexp.MustCompile(`\{[A-Z][A-Za-z0-9]*:|&\{|map\[[a-z]`)

// durationKey finds keys that hold a duration by name.
var durationKey = regexp.MustCompile(`(^|_)(duration|elapsed|took|wait|timeout|ttl|deadline|in|after|age|interval|delay|backoff)(_|$)`)

// checkLogShape asserts one decoded JSON log record: every key (nested ones too) is
// snake_case, no value is a Go struct dump, and durations are seconds under a key ending
// in _s (a float), never bare nanoseconds.
func checkLogShape(problems map[string]string, line string, rec map[string]any, prefix string) {
	msg, _ := rec["msg"].(string)
	report := func(key, problem string) {
		// One report per message and key: a run logs the same line many times.
		if _, seen := problems[msg+"\x00"+key]; !seen {
			problems[msg+"\x00"+key] = problem + ": " + line
		}
	}
	for k, v := range rec {
		if prefix == "" && (k == "time" || k == "level" || k == "msg") {
			continue
		}
		key := prefix + k
		if !snakeKey.MatchString(k) {
			report(key, fmt.Sprintf("log key %q is not snake_case", key))
		}
		switch v := v.(type) {
		case map[string]any:
			checkLogShape(problems, line, v, key+".")
		case string:
			if goStructDump.MatchString(v) {
				report(key, fmt.Sprintf("log value of %q is a Go struct dump", key))
			}
		case float64:
			if durationKey.MatchString(k) && !strings.HasSuffix(k, "_s") {
				report(key, fmt.Sprintf("log key %q holds a duration not in seconds", key))
			}
		}
	}
}

// TestRunLogShape runs sync --once at debug level (JSON) through a failing target, then a
// guard block and its approval, and checks every line: snake_case keys, durations in
// seconds, and every line logged while a run was in progress, progress lines included,
// names its run and flow.
func TestRunLogShape(t *testing.T) {
	e := newOpsEnv(t, "@every 1h", "")
	e.airtable.Faults().StatusNext("PATCH /scim/v2/Groups/{groupId}", -1, 400)
	// A progress line on every event, not every 10 s.
	every := logProgressEvery
	logProgressEvery = 0
	t.Cleanup(func() { logProgressEvery = every })
	first := e.exec("sync", "--once", "--log-level", "debug")
	first.want(t, 1, "people", "")
	e.airtable.Faults().Clear()
	e.devrev.Seed(simkit.Generate(simkit.GenOptions{Groups: 1, People: 12, MembersPerGroup: 4, Seed: 11}))
	blocked := e.exec("sync", "--once", "--log-level", "debug")
	blocked.want(t, 3, "BLOCKED", "")
	var rep statusReport
	if err := json.Unmarshal([]byte(e.exec("status", "-o", "json").stdout), &rep); err != nil || len(rep.PendingApprovals) == 0 {
		t.Fatalf("no pending approval after the block (%v)", err)
	}
	applied := e.exec("apply", itoa(rep.PendingApprovals[0].RunID), "--allow-deletes", "--log-level", "debug")

	problems := map[string]string{}
	var n logCounts
	for _, out := range []string{first.stderr, blocked.stderr, applied.stderr} {
		n.add(scanRunLog(out, problems))
	}
	for _, k := range slices.Sorted(maps.Keys(problems)) {
		t.Error(problems[k])
	}
	if n.lines < 10 || n.progress == 0 || n.ends < 4 {
		t.Fatalf("%+v: want debug runs with progress lines and each run's end line:\n%s", n, first.stderr)
	}
}

type logCounts struct{ lines, progress, ends int }

func (c *logCounts) add(o logCounts) {
	c.lines, c.progress, c.ends = c.lines+o.lines, c.progress+o.progress, c.ends+o.ends
}

// scanRunLog checks each JSON log line of out into problems (one per message and key).
func scanRunLog(out string, problems map[string]string) logCounts {
	var n logCounts
	inRun := false
	for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
		var rec map[string]any
		if err := json.Unmarshal([]byte(line), &rec); err != nil {
			continue // the CLI's closing error line is not a log record
		}
		n.lines++
		checkLogShape(problems, line, rec, "")
		msg, _ := rec["msg"].(string)
		inRun = inRun || msg == "run started" || msg == "applying stored plan"
		if inRun {
			for _, k := range []string{"run_id", "flow"} {
				if _, ok := rec[k]; !ok {
					problems[msg+"\x00"+k] = "a line of a run lacks " + k + ": " + line
				}
			}
		}
		if msg == "progress" {
			n.progress++
		}
		if (strings.HasPrefix(msg, "run ") && msg != "run started") || msg == "stored plan applied" {
			n.ends++
			if _, ok := rec["duration_s"].(float64); !ok {
				problems[msg+"\x00duration_s"] = "a run's end line lacks duration_s in seconds: " + line
			}
			inRun = false
		}
	}
	return n
}
