package syncengine

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"syscall"
)

// A default holder names one process start: "host:pid:random", the random part drawn from
// crypto/rand when the engine is built, so two containers with one hostname that both run
// as PID 1 are two holders and never re-enter each other's lease. Where the kernel lets it
// tell, the holder also carries the facts that identify the process beyond its PID:
//
//	host:pid:random;boot=<boot id>;pidns=<PID namespace inode>;start=<start time in ticks>
//
// A replica can judge such a holder dead only when it runs under the same boot and in the
// same PID namespace (then the PID means the same process to both), and the PID is gone,
// a zombie, or now belongs to a process that started at another time.

// newHolder returns this process's holder.
func newHolder() string {
	host, _ := os.Hostname()
	var b [4]byte
	_, _ = rand.Read(b[:]) // crypto/rand.Read never fails on Linux
	h := fmt.Sprintf("%s:%d:%s", host, os.Getpid(), hex.EncodeToString(b[:]))
	if id, err := identityOf(os.Getpid()); err == nil {
		h += id.String()
	}
	return h
}

// procIdentity is what tells one process apart from any other that has or had its PID.
type procIdentity struct {
	boot  string // /proc/sys/kernel/random/boot_id
	pidNS string // inode of /proc/self/ns/pid
	start uint64 // field 22 of /proc/PID/stat: start time in clock ticks since boot
}

func (p procIdentity) String() string {
	return fmt.Sprintf(";boot=%s;pidns=%s;start=%d", p.boot, p.pidNS, p.start)
}

// namespace reads this process's boot id and PID namespace.
func namespace() (boot, pidNS string, err error) {
	b, err := os.ReadFile("/proc/sys/kernel/random/boot_id")
	if err != nil {
		return "", "", err
	}
	ns, err := os.Readlink("/proc/self/ns/pid") // "pid:[4026531836]"
	if err != nil {
		return "", "", err
	}
	ns = strings.TrimSuffix(strings.TrimPrefix(ns, "pid:["), "]")
	return strings.TrimSpace(string(b)), ns, nil
}

// identityOf reads the identity of pid as seen from this process's PID namespace.
func identityOf(pid int) (procIdentity, error) {
	boot, ns, err := namespace()
	if err != nil {
		return procIdentity{}, err
	}
	_, start, err := procStat(pid)
	if err != nil {
		return procIdentity{}, err
	}
	return procIdentity{boot: boot, pidNS: ns, start: start}, nil
}

// procStat reads a process's state letter and start time from /proc/PID/stat.
func procStat(pid int) (state byte, start uint64, err error) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0, 0, err
	}
	// The command name (field 2) may hold spaces and parentheses: fields count from the
	// last ')'. After it come field 3 (state) ... field 22 (starttime).
	i := strings.LastIndexByte(string(b), ')')
	if i < 0 {
		return 0, 0, errors.New("malformed /proc stat")
	}
	f := strings.Fields(string(b[i+1:]))
	if len(f) < 20 || len(f[0]) != 1 {
		return 0, 0, errors.New("malformed /proc stat")
	}
	start, err = strconv.ParseUint(f[19], 10, 64)
	return f[0][0], start, err
}

// parseHolder splits a default holder into its PID and identity; ok is false for holders
// without an identity (another format, or a kernel that did not tell).
func parseHolder(holder string) (pid int, id procIdentity, ok bool) {
	head, facts, found := strings.Cut(holder, ";")
	if !found {
		return 0, id, false
	}
	parts := strings.Split(head, ":")
	if len(parts) < 3 {
		return 0, id, false
	}
	pid, err := strconv.Atoi(parts[len(parts)-2])
	if err != nil || pid <= 0 {
		return 0, id, false
	}
	for _, kv := range strings.Split(facts, ";") {
		k, v, _ := strings.Cut(kv, "=")
		switch k {
		case "boot":
			id.boot = v
		case "pidns":
			id.pidNS = v
		case "start":
			id.start, err = strconv.ParseUint(v, 10, 64)
			if err != nil {
				return 0, id, false
			}
		}
	}
	return pid, id, id.boot != "" && id.pidNS != "" && id.start != 0
}

// deadLocalHolder reports whether holder provably names a process that no longer exists: a
// replica killed without releasing its lease (kill -9), whose lease can then be taken at
// once instead of after its expiry. Proof needs the same boot and PID namespace as this
// process; any doubt (another host or container, another holder format, a process this
// user may not inspect) answers false, and the lease is left to expire.
func deadLocalHolder(holder string) bool {
	pid, id, ok := parseHolder(holder)
	if !ok {
		return false
	}
	boot, ns, err := namespace()
	if err != nil || boot != id.boot || ns != id.pidNS {
		return false
	}
	if err := syscall.Kill(pid, 0); errors.Is(err, syscall.ESRCH) {
		return true
	}
	state, start, err := procStat(pid)
	if err != nil {
		return false // it exists (kill said so) but cannot be inspected: not provably dead
	}
	// A zombie can write nothing more; another start time means the PID was reused.
	return state == 'Z' || state == 'X' || start != id.start
}
