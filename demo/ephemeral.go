package demo

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
)

// EphemeralOptions configure a private Postgres.
type EphemeralOptions struct {
	// BinDir holds initdb and postgres. Default: the newest /usr/lib/postgresql/*/bin,
	// else the directory of initdb on PATH.
	BinDir string
	// User runs initdb and the server when this process is root (Postgres refuses to run
	// as root). Default: postgres if that account exists, else nobody.
	User string
	// StartTimeout bounds initdb plus the server's start. Default 60s.
	StartTimeout time.Duration
	Logger       *slog.Logger
}

// Ephemeral is a private Postgres server in a temporary directory: trust authentication,
// user postgres, listening on 127.0.0.1 only, no durability (fsync off). Stop removes it.
type Ephemeral struct {
	// Dir holds the data directory, the socket and the server log.
	Dir  string
	Port int
	// BinDir is where initdb and postgres were found.
	BinDir string
	// User is the account the server runs as; "" when it runs as this process's user.
	User string

	cmd     *exec.Cmd
	exited  chan struct{}
	waitErr error
	logger  *slog.Logger
}

// URL connects to the server's postgres database as the postgres user.
func (e *Ephemeral) URL() string {
	return fmt.Sprintf("postgres://postgres@127.0.0.1:%d/postgres?sslmode=disable", e.Port)
}

// StartEphemeral initialises a data directory in a new temporary directory and starts a
// Postgres server on a free local port, returning once it accepts connections. When this
// process is root, initdb and the server run as an unprivileged account.
func StartEphemeral(ctx context.Context, o EphemeralOptions) (*Ephemeral, error) {
	if err := o.setDefaults(); err != nil {
		return nil, err
	}
	cred, account, err := serverAccount(o.User)
	if err != nil {
		return nil, err
	}
	removeAbandoned(o.Logger)
	dir, err := os.MkdirTemp("", ephemeralDirPrefix)
	if err != nil {
		return nil, fmt.Errorf("demo: private postgres: temp dir: %w", err)
	}
	e := &Ephemeral{Dir: dir, BinDir: o.BinDir, User: account, exited: make(chan struct{}), logger: o.Logger}
	ok := false
	defer func() {
		if !ok {
			_ = e.Stop()
		}
	}()
	if cred != nil {
		// The server's account must own the directory it creates the cluster and socket in.
		if err := os.Chown(dir, int(cred.Uid), int(cred.Gid)); err != nil {
			return nil, fmt.Errorf("demo: private postgres: hand %s to %s: %w", dir, account, err)
		}
	}
	sctx, cancel := context.WithTimeout(ctx, o.StartTimeout)
	defer cancel()

	data := filepath.Join(dir, "data")
	if err := e.initCluster(sctx, data, cred); err != nil {
		return nil, err
	}
	logPath, err := e.startServer(data, cred)
	if err != nil {
		return nil, err
	}
	if err := e.waitReady(sctx, logPath); err != nil {
		return nil, err
	}
	ok = true
	o.Logger.Info("private postgres started", "port", e.Port, "dir", dir, "account", accountName(account))
	return e, nil
}

// setDefaults fills in the options left zero, finding the PostgreSQL binaries if need be.
func (o *EphemeralOptions) setDefaults() error {
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.StartTimeout <= 0 {
		o.StartTimeout = 60 * time.Second
	}
	if o.BinDir == "" {
		binDir, err := FindPostgresBinaries()
		if err != nil {
			return err
		}
		o.BinDir = binDir
	}
	return nil
}

// initCluster runs initdb to create the cluster in data, as cred's account when not nil.
func (e *Ephemeral) initCluster(ctx context.Context, data string, cred *syscall.Credential) error {
	initdb := exec.CommandContext(ctx, filepath.Join(e.BinDir, "initdb"),
		"-D", data, "-U", "postgres", "-A", "trust", "-E", "UTF8", "--locale=C", "--no-sync")
	initdb.Dir = e.Dir // the caller's directory may be closed to the server's account
	initdb.Env = serverEnv()
	initdb.SysProcAttr = serverProcAttr(cred)
	if out, err := initdb.CombinedOutput(); err != nil {
		return fmt.Errorf("demo: private postgres: initdb (%s, as %s): %w: %s", e.BinDir, accountName(e.User), err, tail(out))
	}
	return nil
}

// startServer starts the server on the cluster in data, on a free port, as cred's account
// when not nil, and returns the path of its log. It does not wait for it to be ready; the
// server's exit closes e.exited.
func (e *Ephemeral) startServer(data string, cred *syscall.Credential) (logPath string, err error) {
	port, err := freePort()
	if err != nil {
		return "", fmt.Errorf("demo: private postgres: %w", err)
	}
	e.Port = port
	logPath = filepath.Join(e.Dir, "postgres.log")
	logFile, err := os.Create(logPath)
	if err != nil {
		return "", fmt.Errorf("demo: private postgres: server log: %w", err)
	}
	defer logFile.Close() // the server holds its own copy of the descriptor
	e.cmd = exec.Command(filepath.Join(e.BinDir, "postgres"), "-D", data, "-p", strconv.Itoa(port), "-k", e.Dir,
		"-c", "listen_addresses=127.0.0.1",
		// A demo mirror is thrown away on exit: durability would only cost time.
		"-c", "fsync=off", "-c", "synchronous_commit=off", "-c", "full_page_writes=off")
	e.cmd.Dir = e.Dir
	e.cmd.Env = serverEnv()
	e.cmd.Stdout, e.cmd.Stderr = logFile, logFile
	e.cmd.SysProcAttr = serverProcAttr(cred)
	if err := e.cmd.Start(); err != nil {
		return "", fmt.Errorf("demo: private postgres: start server: %w", err)
	}
	go func() {
		e.waitErr = e.cmd.Wait()
		close(e.exited)
	}()
	return logPath, nil
}

// ephemeralDirPrefix names the temporary directories of private servers.
const ephemeralDirPrefix = "groupsync-demo-pg-"

// removeAbandoned removes the directories of private servers whose demo was killed
// before it could stop them (the server dies with the demo, its directory stays): no
// postmaster.pid, or one naming a process that is gone, and untouched for ten minutes, so
// a directory another demo is initialising right now is left alone.
func removeAbandoned(logger *slog.Logger) {
	dirs, _ := filepath.Glob(filepath.Join(os.TempDir(), ephemeralDirPrefix+"*"))
	for _, d := range dirs {
		fi, err := os.Stat(d)
		if err != nil || !fi.IsDir() || time.Since(fi.ModTime()) < 10*time.Minute {
			continue
		}
		if pidFile, err := os.ReadFile(filepath.Join(d, "data", "postmaster.pid")); err == nil {
			first, _, _ := strings.Cut(string(pidFile), "\n")
			if pid, err := strconv.Atoi(strings.TrimSpace(first)); err == nil && processExists(pid) {
				continue
			}
		}
		if err := os.RemoveAll(d); err != nil {
			logger.Warn("removing an abandoned private postgres directory", "dir", d, "error", err)
		} else {
			logger.Info("removed an abandoned private postgres directory", "dir", d)
		}
	}
}

// processExists reports whether a process with this pid exists (signal 0 checks without
// sending anything; EPERM means it exists under another user).
func processExists(pid int) bool {
	err := syscall.Kill(pid, 0)
	return err == nil || errors.Is(err, syscall.EPERM)
}

// waitReady polls until the server accepts a connection, it exits, or ctx ends.
func (e *Ephemeral) waitReady(ctx context.Context, logPath string) error {
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for {
		cctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		conn, err := pgconn.Connect(cctx, e.URL())
		cancel()
		if err == nil {
			return conn.Close(ctx)
		}
		select {
		case <-e.exited:
			log, _ := os.ReadFile(logPath)
			return fmt.Errorf("demo: private postgres: server exited during start (%v): %s", e.waitErr, tail(log))
		case <-ctx.Done():
			log, _ := os.ReadFile(logPath)
			return fmt.Errorf("demo: private postgres: not accepting connections on port %d: %w (last error: %v): %s", e.Port, ctx.Err(), err, tail(log))
		case <-tick.C:
		}
	}
}

// Stop shuts the server down (fast shutdown: sessions are ended) and removes its directory.
func (e *Ephemeral) Stop() error {
	var errs []error
	if e.cmd != nil && e.cmd.Process != nil {
		select {
		case <-e.exited:
		default:
			if err := e.cmd.Process.Signal(os.Interrupt); err != nil {
				_ = e.cmd.Process.Kill()
			}
			timer := time.NewTimer(15 * time.Second)
			select {
			case <-e.exited:
			case <-timer.C:
				e.logger.Warn("private postgres ignored the shutdown request; killing it", "pid", e.cmd.Process.Pid)
				_ = e.cmd.Process.Kill()
				<-e.exited
			}
			timer.Stop()
		}
	}
	if e.Dir != "" {
		if err := os.RemoveAll(e.Dir); err != nil {
			errs = append(errs, fmt.Errorf("demo: private postgres: remove %s: %w", e.Dir, err))
		}
	}
	return errors.Join(errs...)
}

// Exited reports whether the server process has ended.
func (e *Ephemeral) Exited() bool {
	select {
	case <-e.exited:
		return true
	default:
		return false
	}
}

// FindPostgresBinaries returns a directory holding initdb and postgres: the newest
// /usr/lib/postgresql/<version>/bin (Debian and Ubuntu), else initdb's directory on PATH.
func FindPostgresBinaries() (string, error) {
	dirs, _ := filepath.Glob("/usr/lib/postgresql/*/bin")
	version := func(d string) float64 {
		v, _ := strconv.ParseFloat(filepath.Base(filepath.Dir(d)), 64)
		return v
	}
	slices.SortFunc(dirs, func(a, b string) int {
		switch va, vb := version(a), version(b); {
		case va > vb:
			return -1
		case va < vb:
			return 1
		}
		return 0
	})
	if p, err := exec.LookPath("initdb"); err == nil {
		if real, err := filepath.EvalSymlinks(p); err == nil {
			p = real
		}
		dirs = append(dirs, filepath.Dir(p))
	}
	for _, d := range dirs {
		if isExecutable(filepath.Join(d, "initdb")) && isExecutable(filepath.Join(d, "postgres")) {
			return d, nil
		}
	}
	return "", errors.New("demo: no PostgreSQL binaries (initdb, postgres) in /usr/lib/postgresql/*/bin or on PATH: install PostgreSQL, start one on 127.0.0.1:5432, or set GROUPSYNC_DATABASE_URL")
}

func isExecutable(path string) bool {
	fi, err := os.Stat(path)
	return err == nil && fi.Mode().IsRegular() && fi.Mode()&0o111 != 0
}

// serverAccount returns the credential to run Postgres with: nil when this process is not
// root, else the named account (default postgres, else nobody).
func serverAccount(name string) (*syscall.Credential, string, error) {
	if os.Geteuid() != 0 {
		return nil, "", nil
	}
	candidates := []string{"postgres", "nobody"}
	if name != "" {
		candidates = []string{name}
	}
	var lookupErrs []error
	for _, c := range candidates {
		u, err := user.Lookup(c)
		if err != nil {
			lookupErrs = append(lookupErrs, err)
			continue
		}
		uid, err1 := strconv.ParseUint(u.Uid, 10, 32)
		gid, err2 := strconv.ParseUint(u.Gid, 10, 32)
		if err1 != nil || err2 != nil || uid == 0 {
			lookupErrs = append(lookupErrs, fmt.Errorf("account %s (uid %s, gid %s) cannot run postgres", c, u.Uid, u.Gid))
			continue
		}
		return &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}, c, nil
	}
	return nil, "", fmt.Errorf("demo: private postgres: running as root, and no unprivileged account to run postgres as: %w", errors.Join(lookupErrs...))
}

// serverEnv is the environment of initdb and the server: this process's, less the libpq
// variables that could point them elsewhere, in the C locale.
func serverEnv() []string {
	env := slices.DeleteFunc(os.Environ(), func(kv string) bool {
		return strings.HasPrefix(kv, "PG") || strings.HasPrefix(kv, "LC_") || strings.HasPrefix(kv, "LANG=")
	})
	return append(env, "LC_ALL=C")
}

func accountName(account string) string {
	if account == "" {
		return "the current user"
	}
	return account
}

// freePort asks the kernel for a free local TCP port. Another process could take it before
// the server binds it; the server then fails to start with a clear log line.
func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("find a free port: %w", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// tail returns the last lines of a command's output, for an error message.
func tail(out []byte) string {
	lines := strings.Split(strings.TrimSpace(string(bytes.ToValidUTF8(out, nil))), "\n")
	if len(lines) > 8 {
		lines = lines[len(lines)-8:]
	}
	return strings.Join(lines, " | ")
}
