package syncengine

import (
	"errors"
	"os"
	"strconv"
	"strings"
	"syscall"
)

// deadLocalHolder reports whether holder (host:pid, the default holder format) names a
// process on this host that no longer exists: a replica killed without releasing its lease.
// Its lease can be taken at once instead of after its expiry. Holders of other hosts, or in
// another format, are never judged dead.
func deadLocalHolder(holder string) bool {
	host, pidText, ok := strings.Cut(holder, ":")
	if !ok {
		return false
	}
	me, err := os.Hostname()
	if err != nil || host != me {
		return false
	}
	pid, err := strconv.Atoi(pidText)
	if err != nil || pid <= 0 || pid == os.Getpid() {
		return false
	}
	err = syscall.Kill(pid, 0)
	return errors.Is(err, syscall.ESRCH)
}
