// Command groupsync keeps groups and their memberships in step across SaaS systems through a
// Postgres mirror. See `groupsync --help`.
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"

	"github.com/mattn/go-isatty"
	"github.com/sethvargo/go-envconfig"
)

func main() {
	// SIGINT/SIGTERM cancel the context; commands stop cleanly through it.
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], environment{
		stdout:      os.Stdout,
		stderr:      os.Stderr,
		lookup:      envconfig.OsLookuper(),
		environ:     os.Environ(),
		stderrIsTTY: isatty.IsTerminal(os.Stderr.Fd()) || isatty.IsCygwinTerminal(os.Stderr.Fd()),
	})
	stop()
	os.Exit(code)
}
