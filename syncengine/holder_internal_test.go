package syncengine

import (
	"fmt"
	"os"
	"os/exec"
	"strings"
	"testing"
)

// startedSleeper runs a process that lives until the test kills it, and returns it with the
// holder it would have.
func startedSleeper(t *testing.T) (*exec.Cmd, string) {
	t.Helper()
	cmd := exec.Command("sleep", "60")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	h, err := HolderOfProcess(cmd.Process.Pid)
	if err != nil {
		t.Fatalf("reading the identity of a live process: %v", err)
	}
	return cmd, h
}

func TestHolderNamesOneProcessStart(t *testing.T) {
	a, b := newHolder(), newHolder()
	if a == b {
		t.Fatalf("two engines of one process got the same holder %q: they would re-enter each other's lease", a)
	}
	host, _ := os.Hostname()
	if !strings.HasPrefix(a, fmt.Sprintf("%s:%d:", host, os.Getpid())) {
		t.Fatalf("holder %q does not start with host:pid:", a)
	}
	pid, id, ok := parseHolder(a)
	if !ok || pid != os.Getpid() || id.boot == "" || id.pidNS == "" || id.start == 0 {
		t.Fatalf("holder %q does not carry this process's identity: pid %d %+v %v", a, pid, id, ok)
	}
	if deadLocalHolder(a) {
		t.Fatalf("this very process was judged dead: %q", a)
	}
}

func TestHolderIsJudgedDeadOnlyWithProof(t *testing.T) {
	cmd, live := startedSleeper(t)
	if deadLocalHolder(live) {
		t.Fatalf("a live process was judged dead: %q", live)
	}
	// The same PID with another start time: the PID was reused, the holder is gone.
	pid, id, _ := parseHolder(live)
	reused := fmt.Sprintf("h:%d:aaaa%s", pid, procIdentity{boot: id.boot, pidNS: id.pidNS, start: id.start + 1})
	if !deadLocalHolder(reused) {
		t.Fatalf("a holder whose PID now names a later process was not judged dead: %q", reused)
	}
	_ = cmd.Process.Kill()
	_ = cmd.Wait()
	if !deadLocalHolder(live) {
		t.Fatalf("a killed process was not judged dead: %q", live)
	}
	// Without proof of the same PID namespace, a missing PID proves nothing: the holder
	// may live in another container on this host, or on another host.
	for name, h := range map[string]string{
		"other boot":         fmt.Sprintf("h:%d:aaaa%s", pid, procIdentity{boot: "0000", pidNS: id.pidNS, start: id.start}),
		"other pid ns":       fmt.Sprintf("h:%d:aaaa%s", pid, procIdentity{boot: id.boot, pidNS: "1", start: id.start}),
		"no identity":        fmt.Sprintf("h:%d:aaaa", pid),
		"old host:pid":       fmt.Sprintf("h:%d", pid),
		"a replica's name":   "replica-a",
		"malformed identity": fmt.Sprintf("h:%d:aaaa;boot=%s;pidns=%s;start=x", pid, id.boot, id.pidNS),
	} {
		if deadLocalHolder(h) {
			t.Errorf("%s: %q judged dead without proof", name, h)
		}
	}
}
