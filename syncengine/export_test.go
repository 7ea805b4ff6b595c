package syncengine

import (
	"fmt"
	"os"
)

// HolderOfProcess is the default holder that process pid would have, identity included, so
// tests can stand for a replica process that held a lease and died.
func HolderOfProcess(pid int) (string, error) {
	id, err := identityOf(pid)
	if err != nil {
		return "", err
	}
	host, _ := os.Hostname()
	return fmt.Sprintf("%s:%d:0badc0de%s", host, pid, id), nil
}

// Holder is the engine's holder.
func (e *Engine) Holder() string { return e.o.Holder }
