//go:build unix && !linux

package demo

import "syscall"

// serverProcAttr runs initdb and the server under cred (nil: this process's user), in a
// process group of their own so a Ctrl-C at the terminal reaches the demo, which then
// stops the server in order.
func serverProcAttr(cred *syscall.Credential) *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Credential: cred, Setpgid: true}
}
